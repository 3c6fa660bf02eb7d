"""Cold start: wall time of fresh processes (interleaved) that import a handler and serve
one API Gateway v2 event with DynamoDB stubbed: the service's Lambda handler against
bare FastAPI + Mangum + boto3 S3 and DynamoDB clients. The worker function's the same
way (bench/cold.py), before and after it stopped importing FastAPI, against boto3 and
Pillow. Also the runtime footprint."""

import os
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement

from app.config import Settings
from app.http.auth import issue_token
from bench.warm import SECRET


def _one(kind: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "bench.cold", kind], env=env, check=True)
    return time.perf_counter() - started


def run(runs: int = 15) -> dict[str, Any]:
    token = issue_token(Settings(jwt_secret=SECRET), "bench", 3600)
    env = {
        **os.environ,
        "IMAGES_JWT_SECRET": SECRET,
        "BENCH_TOKEN": token,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "IMAGES_LOG_LEVEL": "WARNING",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    xray_env = {**env, "IMAGES_XRAY": "true"}  # what the template's Tracing=Active sets
    times: dict[str, list[float]] = {"service": [], "floor": [], "xray": []}
    _one("app", env), _one("floor", env)
    for _ in range(runs):
        times["service"].append(_one("app", env))
        times["floor"].append(_one("floor", env))
        times["xray"].append(_one("app", xray_env))
    service, floor = statistics.median(times["service"]), statistics.median(times["floor"])
    xray = statistics.median(times["xray"])
    workers: dict[str, list[float]] = {"worker": [], "worker-with-fastapi": [], "worker-floor": []}
    for _ in range(runs):
        for kind, measured in workers.items():
            measured.append(_one(kind, env))
    worker = {kind: statistics.median(measured) * 1000 for kind, measured in workers.items()}
    return {
        "runs": runs,
        "service_ms": service * 1000,
        "floor_ms": floor * 1000,
        "ratio": service / floor,
        "xray_ms": xray * 1000,
        "xray_extra_ms": (xray - service) * 1000,
        "footprint": footprint(),
        "worker_ms": worker["worker"],
        "worker_with_fastapi_ms": worker["worker-with-fastapi"],
        "worker_floor_ms": worker["worker-floor"],
        "worker_ratio": worker["worker"] / worker["worker-floor"],
    }


def footprint() -> dict[str, Any]:
    """Installed size of the runtime dependency closure (what Dockerfile.lambda installs,
    besides the Lambda base image's own boto3)."""
    seen: dict[str, int] = {}

    def visit(name: str) -> None:
        key = name.lower().replace("_", "-")
        if key in seen:
            return
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            return
        size = 0
        for file in dist.files or []:
            path = Path(str(dist.locate_file(file)))
            if path.is_file():
                size += path.stat().st_size
        seen[key] = size
        for requirement in dist.requires or []:
            parsed = Requirement(requirement)
            if parsed.marker is None or parsed.marker.evaluate({"extra": ""}):
                visit(parsed.name)

    visit("image-service")
    seen.pop("image-service", None)
    aws = sum(
        size
        for name, size in seen.items()
        if name in ("boto3", "botocore", "s3transfer", "jmespath")
    )
    return {
        "packages": len(seen),
        "total_mb": sum(seen.values()) / 1e6,
        "aws_sdk_mb": aws / 1e6,
        "largest": sorted(seen.items(), key=lambda kv: -kv[1])[:5],
    }
