"""Requests per second under uvicorn with N concurrent clients on loopback, against the
embedded emulator (a moto server), for the service and for the floor app making the
same single DynamoDB call. One run, alternating, so both see the same machine."""

import json
import os
import subprocess
import sys
from typing import Any

import httpx2 as httpx

from app.config import Settings
from app.http.auth import issue_token
from app.local.server import free_port
from app.storage.clients import AwsClients
from app.storage.resources import ensure_resources
from bench.warm import PNG, SECRET
from tests.servers import BASE_ENV, moto_server, running, uvicorn_command

SCENARIOS = {
    # name: (service method, service path, floor method, floor path)
    "create-upload": ("POST", "/images", "POST", "/put"),
    "download-url": ("GET", "/images/{image_id}/download", "GET", "/get"),
    "list": ("GET", "/images", "GET", "/query"),
}


def _load(
    url: str,
    method: str,
    headers: dict[str, str],
    body: str | None,
    concurrency: int,
    seconds: float,
) -> dict[str, Any]:
    argv = [
        sys.executable,
        "-m",
        "bench.loadgen",
        url,
        "--method",
        method,
        "--concurrency",
        str(concurrency),
        "--seconds",
        str(seconds),
    ]
    for name, value in headers.items():
        argv += ["--header", f"{name}:{value}"]
    if body:
        argv += ["--body", body]
    result = subprocess.run(
        argv, capture_output=True, text=True, check=True, env={**os.environ, **BASE_ENV}
    )
    loaded: dict[str, Any] = json.loads(result.stdout)
    return loaded


def run(concurrency: int = 16, seconds: float = 5, rounds: int = 2) -> dict[str, Any]:
    with moto_server() as endpoint:
        env = {
            **BASE_ENV,
            "AWS_ENDPOINT_URL": endpoint,
            "IMAGES_JWT_SECRET": SECRET,
            # The create scenario starts thousands of uploads it never confirms.
            "IMAGES_MAX_PENDING_UPLOADS": str(10**9),
            "IMAGES_MAX_IMAGES_PER_USER": str(10**9),
            "IMAGES_LOG_LEVEL": "WARNING",
            "BENCH_LIST_USER": "reader",
        }
        settings = Settings(jwt_secret=SECRET, aws_endpoint_url=endpoint)
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
            os.environ.setdefault(name, BASE_ENV[name])
        ensure_resources(AwsClients(settings), settings)
        ours, floor = free_port(), free_port()
        floor_argv = [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.floor:from_env",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(floor),
            "--no-access-log",
        ]
        with (
            running(uvicorn_command(ours), env, f"http://127.0.0.1:{ours}/health"),
            running(floor_argv, env, f"http://127.0.0.1:{floor}/image"),
        ):
            reader = {"Authorization": f"Bearer {issue_token(settings, 'reader', 3600)}"}
            creator = {
                "Authorization": f"Bearer {issue_token(settings, 'creator', 3600)}",
                "Content-Type": "application/json",
            }
            image_id = ""
            for _ in range(25):  # a full first page of ready images for the reader
                created = httpx.post(
                    f"http://127.0.0.1:{ours}/images/direct",
                    headers=reader,
                    files={"file": ("p.png", PNG, "image/png")},
                )
                created.raise_for_status()
                image_id = created.json()["id"]
            body = json.dumps({"filename": "p.png", "content_type": "image/png", "size": 10})
            results: dict[str, Any] = {
                "concurrency": concurrency,
                "seconds": seconds,
                "scenarios": {},
            }
            for name, (method, path, floor_method, floor_path) in SCENARIOS.items():
                headers = creator if name == "create-upload" else reader
                runs: dict[str, list[dict[str, Any]]] = {"service": [], "floor": []}
                for _ in range(rounds):
                    runs["service"].append(
                        _load(
                            f"http://127.0.0.1:{ours}{path.format(image_id=image_id)}",
                            method,
                            headers,
                            body if method == "POST" else None,
                            concurrency,
                            seconds,
                        )
                    )
                    runs["floor"].append(
                        _load(
                            f"http://127.0.0.1:{floor}{floor_path}",
                            floor_method,
                            {},
                            None,
                            concurrency,
                            seconds,
                        )
                    )
                service_rps = sum(r["rps"] for r in runs["service"]) / rounds
                floor_rps = sum(r["rps"] for r in runs["floor"]) / rounds
                results["scenarios"][name] = {
                    "service_rps": service_rps,
                    "floor_rps": floor_rps,
                    "ratio": service_rps / floor_rps,
                    "service_errors": sum(r["errors"] for r in runs["service"]),
                    "floor_errors": sum(r["errors"] for r in runs["floor"]),
                    "service_p50_ms": runs["service"][-1]["p50_ms"],
                    "service_p99_ms": runs["service"][-1]["p99_ms"],
                    "floor_p50_ms": runs["floor"][-1]["p50_ms"],
                }
    return results


if __name__ == "__main__":
    print(json.dumps(run(seconds=3, rounds=1), indent=2))
