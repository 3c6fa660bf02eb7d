"""Dockerfile, Dockerfile.lambda, docker-compose.yml and create_resource.sh, without a
Docker engine: their facts parsed, and the commands they run run here on the host."""

import json
import re
import shlex
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import boto3
import httpx2 as httpx
import pytest
import yaml

from app.config import KEEP_ALIVE_SECONDS, Settings
from app.http.auth import issue_token
from app.local.server import free_port
from tests.imagefiles import make_image
from tests.servers import BASE_ENV, running, wait_for

ROOT = Path(__file__).resolve().parent.parent


def _dockerfile(name: str) -> dict[str, list[str]]:
    """Instruction -> its arguments, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / name).read_text())
    found: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            instruction, _, rest = line.partition(" ")
            found.setdefault(instruction.upper(), []).append(rest.strip())
    return found


def _exec_form(value: str) -> list[str]:
    parsed: list[str] = json.loads(value)
    return parsed


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def test_dockerfile_is_slim_python_311_runtime_only() -> None:
    docker = _dockerfile("Dockerfile")

    assert docker["FROM"] == ["python:3.11-slim"]
    installs = [run for run in docker["RUN"] if "pip install" in run]
    assert installs
    assert all("[" not in run for run in installs)  # no extras: no moto, no pytest


def test_dockerfile_runs_as_non_root() -> None:
    docker = _dockerfile("Dockerfile")

    assert docker["USER"] == ["images"]
    assert any("useradd" in run and "images" in run for run in docker["RUN"])


def test_dockerfile_serves_the_factory_on_8080() -> None:
    command = _exec_form(_dockerfile("Dockerfile")["CMD"][0])

    assert command[:3] == ["uvicorn", "app.http.app:create_app", "--factory"]
    assert command[command.index("--host") + 1] == "0.0.0.0"  # noqa: S104 - in a container
    assert command[command.index("--port") + 1] == "8080"
    assert command[command.index("--timeout-keep-alive") + 1] == str(KEEP_ALIVE_SECONDS)


def test_dockerfile_has_a_healthcheck_on_health() -> None:
    (healthcheck,) = _dockerfile("Dockerfile")["HEALTHCHECK"]

    assert "http://127.0.0.1:8080/health" in healthcheck


def test_lambda_dockerfile_uses_lambda_base_and_handler() -> None:
    docker = _dockerfile("Dockerfile.lambda")

    assert docker["FROM"] == ["public.ecr.aws/lambda/python:3.11"]
    assert _exec_form(docker["CMD"][0]) == ["app.http.lambda_handler.handler"]
    assert all("[" not in run for run in docker["RUN"] if "pip install" in run)


def test_compose_runs_localstack_with_s3_dynamodb_sqs_and_a_healthcheck() -> None:
    localstack = _compose()["services"]["localstack"]

    assert localstack["image"].startswith("localstack/localstack:")
    assert set(localstack["environment"]["SERVICES"].split(",")) == {"s3", "dynamodb", "sqs"}
    assert localstack["ports"] == ["127.0.0.1:4566:4566"]
    assert "_localstack/health" in " ".join(localstack["healthcheck"]["test"])


def test_compose_publishes_ports_on_loopback_only() -> None:
    """A known development secret and an unauthenticated LocalStack: never on every
    interface by default."""
    published = [
        port for service in _compose()["services"].values() for port in service.get("ports", [])
    ]

    assert published
    assert all(port.startswith("127.0.0.1:") for port in published)


def test_compose_service_waits_for_localstack_and_names_endpoints() -> None:
    service = _compose()["services"]["image-service"]

    assert service["build"]["dockerfile"] == "Dockerfile"
    assert service["ports"] == ["127.0.0.1:8080:8080"]
    assert service["depends_on"] == {"localstack": {"condition": "service_healthy"}}
    assert service["environment"]["AWS_ENDPOINT_URL"] == "http://localstack:4566"
    assert service["environment"]["IMAGES_S3_PUBLIC_ENDPOINT_URL"] == "http://localhost:4566"


def test_compose_command_creates_resources_then_runs_the_image_command() -> None:
    service = _compose()["services"]["image-service"]
    image_command = _exec_form(_dockerfile("Dockerfile")["CMD"][0])

    first, _, then = service["command"][2].partition(" && exec ")
    assert service["command"][:2] == ["sh", "-c"]
    assert first == "./create_resource.sh"
    assert shlex.split(then) == image_command


def test_compose_worker_is_the_same_image_running_the_worker() -> None:
    services = _compose()["services"]
    worker, service = services["worker"], services["image-service"]

    assert worker["build"] == service["build"]
    assert worker["environment"] == service["environment"]
    assert worker["command"] == ["python", "-m", "app", "worker"]
    assert worker["depends_on"] == {
        "localstack": {"condition": "service_healthy"},
        "clamav": {"condition": "service_healthy"},
    }
    assert "ports" not in worker


def test_compose_scans_with_the_official_clamav_image() -> None:
    services = _compose()["services"]
    clamav, environment = services["clamav"], services["worker"]["environment"]

    assert clamav["image"].startswith("clamav/clamav:")
    assert clamav["healthcheck"]["test"] == ["CMD", "clamdcheck.sh"]
    assert "ports" not in clamav  # only the worker talks to it
    assert (environment["IMAGES_SCAN"], environment["IMAGES_CLAMD"]) == (
        "clamav",
        "tcp://clamav:3310",
    )
    assert Settings(scan=environment["IMAGES_SCAN"], clamd=environment["IMAGES_CLAMD"]).clamd


def test_lambda_image_bakes_clamav_and_its_definitions_where_the_worker_reads_them() -> None:
    docker = _dockerfile("Dockerfile.lambda")
    (install,) = [run for run in docker["RUN"] if "freshclam" in run]
    (version,) = [arg for arg in docker["ARG"] if arg.startswith("CLAMAV_VERSION=")]
    environment = dict(env.split("=", 1) for env in docker["ENV"])

    assert re.fullmatch(r"CLAMAV_VERSION=\d+\.\d+\.\d+", version)
    assert "clamav.net/downloads/production/clamav-${CLAMAV_VERSION}" in install
    assert f"DatabaseDirectory {environment['IMAGES_CLAMAV_DATABASE']}" in install
    assert not environment["IMAGES_CLAMAV_DATABASE"].startswith("/tmp")  # noqa: S108 - a check


def _compose_env(endpoint: str, suffix: str) -> dict[str, str]:
    env = {k: str(v) for k, v in _compose()["services"]["image-service"]["environment"].items()}
    env["IMAGES_JWT_SECRET"] = re.sub(r"\$\{[^:]+:-(.*)\}", r"\1", env["IMAGES_JWT_SECRET"])
    return {
        **BASE_ENV,
        **env,
        "AWS_ENDPOINT_URL": endpoint,
        "IMAGES_BUCKET": f"c-{suffix}",
        "IMAGES_TABLE": f"c-{suffix}",
        "IMAGES_QUEUE": f"c-{suffix}",
    }


@pytest.mark.http
def test_compose_command_serves_health_on_the_host(aws_endpoint: str) -> None:
    """The container's start-up, run here: create_resource.sh, then the image's uvicorn
    command line, with only the port changed so it cannot clash with anything."""
    suffix = uuid.uuid4().hex[:8]
    env = _compose_env(aws_endpoint, suffix)
    port = free_port()
    script = _compose()["services"]["image-service"]["command"][2]
    argv = ["sh", "-c", script.replace("--port 8080", f"--port {port}")]
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"  # uvicorn of this venv
    program, flag, code = _exec_form(_dockerfile("Dockerfile")["HEALTHCHECK"][0].split("CMD ")[1])

    with running(
        argv,
        {**env, "IMAGES_S3_PUBLIC_ENDPOINT_URL": aws_endpoint},
        f"http://127.0.0.1:{port}/health",
    ):
        health = httpx.get(f"http://127.0.0.1:{port}/health")
        # The image's HEALTHCHECK, with this venv's python for the image's.
        probe = subprocess.run([sys.executable, flag, code.replace("8080", str(port))], check=False)

    assert program == "python"
    assert health.status_code == 200
    assert probe.returncode == 0


@pytest.mark.http
def test_create_resource_script_is_idempotent_against_an_endpoint(aws_endpoint: str) -> None:
    suffix = uuid.uuid4().hex[:8]
    env = _compose_env(aws_endpoint, suffix)

    for _ in range(2):
        subprocess.run([str(ROOT / "create_resource.sh")], env=env, check=True, capture_output=True)

    s3 = boto3.client("s3", endpoint_url=aws_endpoint, region_name="us-east-1")
    ddb = boto3.client("dynamodb", endpoint_url=aws_endpoint, region_name="us-east-1")
    table = ddb.describe_table(TableName=f"c-{suffix}")["Table"]
    assert table["TableStatus"] == "ACTIVE"
    assert len(table["GlobalSecondaryIndexes"]) == 2
    assert s3.get_bucket_encryption(Bucket=f"c-{suffix}")["ServerSideEncryptionConfiguration"]
    assert s3.get_bucket_lifecycle_configuration(Bucket=f"c-{suffix}")["Rules"]
    assert all(
        s3.get_public_access_block(Bucket=f"c-{suffix}")["PublicAccessBlockConfiguration"].values()
    )
    s3.close()
    ddb.close()


@pytest.mark.http
def test_compose_worker_command_scans_and_makes_variants_on_the_host(
    aws_endpoint: str, clamd_address: str
) -> None:
    """The compose file's service and worker commands, run here side by side against an
    emulator with the bucket's notifications and a real clamd (for the clamav service):
    an upload is scanned and gets its thumb."""
    suffix = uuid.uuid4().hex[:8]
    env = {
        **_compose_env(aws_endpoint, suffix),
        "IMAGES_S3_PUBLIC_ENDPOINT_URL": aws_endpoint,
        "IMAGES_CLAMD": clamd_address,
    }
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    port = free_port()
    services = _compose()["services"]
    script = services["image-service"]["command"][2].replace("--port 8080", f"--port {port}")
    program, *arguments = services["worker"]["command"]
    base = f"http://127.0.0.1:{port}"
    token = issue_token(Settings(jwt_secret=env["IMAGES_JWT_SECRET"]), "compose", 600)
    headers = {"Authorization": f"Bearer {token}"}
    data = make_image("image/png", width=500, height=250)

    with (
        running(["sh", "-c", script], env, f"{base}/health"),
        running([sys.executable if program == "python" else program, *arguments], env, None),
    ):
        created = httpx.post(
            f"{base}/images",
            headers=headers,
            json={"filename": "c.png", "content_type": "image/png", "size": len(data)},
        ).json()
        httpx.put(created["upload"]["url"], headers=created["upload"]["headers"], content=data)
        image = wait_for(
            lambda: httpx.get(f"{base}/images/{created['image']['id']}", headers=headers).json(),
            lambda got: got["variants"]["thumb"]["status"] != "pending",
        )

    assert image["status"] == "ready"  # confirmed by the worker: nobody called confirm
    assert image["scan"]["status"] == "clean"
    assert (image["variants"]["thumb"]["width"], image["variants"]["thumb"]["height"]) == (320, 160)
    assert httpx.get(image["variants"]["thumb"]["url"]).status_code == 200
