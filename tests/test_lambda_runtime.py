"""Both functions as the Lambda image runs them: awslambdaric (the image's entry point)
in an isolated interpreter whose only third-party code is what Dockerfile.lambda
installs, fed events through a Runtime API served by the test."""

import json
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from app.config import Settings
from app.storage.items import object_key
from tests.conftest import SECRET, bearer
from tests.imagefiles import make_image
from tests.lambda_events import http_api_event, rest_api_event, s3_created_event, sqs_event
from tests.lambda_runtime import ROOT, dependencies, running_handler, task_root
from tests.over_http import auth, create, put

pytestmark = pytest.mark.http

JWT_SETTINGS = Settings(jwt_secret=SECRET)
IMAGING = ("_imaging.cpython", "pillow_heif", "libwebp")


@pytest.fixture(scope="session")
def lambda_task() -> Iterator[Path]:
    with task_root(dependencies(ROOT / ".lambda-deps")) as root:
        yield root


def _function_env(service_env: dict[str, str]) -> dict[str, str]:
    names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    return {
        **{name: service_env[name] for name in names},
        **{name: value for name, value in service_env.items() if name.startswith("IMAGES_")},
        "AWS_ENDPOINT_URL": service_env["AWS_ENDPOINT_URL"],
    }


def _loaded(pid: int) -> str:
    """The shared objects the process has mapped: what it imported, C side included."""
    return Path(f"/proc/{pid}/maps").read_text()


def test_api_function_serves_http_events_as_the_image_runs_it(
    lambda_task: Path, service_env: dict[str, str]
) -> None:
    with running_handler(
        lambda_task, "app.http.lambda_handler.handler", _function_env(service_env)
    ) as (
        runtime,
        process,
    ):
        health = runtime.invoke(http_api_event("GET", "/health"))
        listed = runtime.invoke(
            http_api_event("GET", "/images", headers=bearer(JWT_SETTINGS, "lambda-user"))
        )
        rest = runtime.invoke(rest_api_event("GET", "/health"))
        mapped = _loaded(process.pid)

    assert health[0] == "response"
    assert (health[1]["statusCode"], json.loads(health[1]["body"])) == (200, {"status": "ok"})
    assert listed[1]["statusCode"] == 200
    assert json.loads(listed[1]["body"]) == {"items": [], "next_cursor": None}
    assert rest[1]["statusCode"] == 200
    assert [library for library in IMAGING if library in mapped] == []


def test_worker_function_processes_an_sqs_batch_as_the_image_runs_it(
    lambda_task: Path, service_env: dict[str, str], api: httpx.Client
) -> None:
    data = make_image("image/jpeg", width=800, height=600)
    created = create(api, "lambda-worker", data, "image/jpeg")
    put(created["upload"], data)
    image_id = created["image"]["id"]
    # The bucket's notification, as S3 writes it (the LocalStack tier runs real ones).
    notification = s3_created_event(service_env["IMAGES_BUCKET"], object_key(image_id), data)
    message = {"MessageId": "m-1", "ReceiptHandle": "r-1", "Body": notification, "MD5OfBody": ""}

    with running_handler(
        lambda_task, "app.pipeline.lambda_handler.handler", _function_env(service_env)
    ) as (
        runtime,
        process,
    ):
        queue_arn = f"arn:aws:sqs:us-east-1:123456789012:{service_env['IMAGES_QUEUE']}"
        result = runtime.invoke(sqs_event([message], queue_arn), timeout=120)
        mapped = _loaded(process.pid)
    image = api.get(f"/images/{image_id}", headers=auth("lambda-worker")).json()

    assert result == ("response", {"batchItemFailures": []})
    assert (image["status"], image["variants"]["preview"]["width"]) == ("ready", 800)
    assert image["variants"]["thumb"]["status"] == "ready"
    assert "_imaging.cpython" in mapped  # the worker does decode


# Wraps the worker's handler in the image's own interpreter, to report what it imported.
_IMPORTS_PROBE = """
import sys

from app.pipeline.lambda_handler import handler as worker
from app.storage.items import object_key


def handler(event, context):
    result = worker(event, context)
    web = ("fastapi", "starlette", "mangum", "jwt")
    return {"result": result, "web": sorted(m for m in sys.modules if m.startswith(web))}
"""


def test_worker_function_never_imports_the_http_framework(
    lambda_task: Path, service_env: dict[str, str], api: httpx.Client
) -> None:
    data = make_image("image/png", width=300, height=200)
    created = create(api, "lambda-imports", data, "image/png")
    put(created["upload"], data)
    image_id = created["image"]["id"]
    notification = s3_created_event(service_env["IMAGES_BUCKET"], object_key(image_id), data)
    message = {"MessageId": "m-2", "ReceiptHandle": "r-2", "Body": notification, "MD5OfBody": ""}
    (lambda_task / "imports_probe.py").write_text(_IMPORTS_PROBE)

    with running_handler(lambda_task, "imports_probe.handler", _function_env(service_env)) as (
        runtime,
        _,
    ):
        queue_arn = f"arn:aws:sqs:us-east-1:123456789012:{service_env['IMAGES_QUEUE']}"
        result = runtime.invoke(sqs_event([message], queue_arn), timeout=120)
    image = api.get(f"/images/{image_id}", headers=auth("lambda-imports")).json()

    assert result == ("response", {"result": {"batchItemFailures": []}, "web": []})
    assert image["variants"]["thumb"]["status"] == "ready"  # it did the whole job
