"""End to end under `make run` (`python -m app serve`: the embedded emulator, the API and
the worker thread in one process): how long after its upload a photo's thumb is there,
and 200 uploads at once through it (zero 5xx is the promise)."""

import re
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx2 as httpx

from app.config import DEV_JWT_SECRET, Settings
from app.http.auth import issue_token
from app.local.server import free_port
from bench.photos import encoded
from tests.load import upload_batch
from tests.servers import BASE_ENV, running


def _thumb_latency(base: str, token: str, count: int, size: tuple[int, int]) -> list[float]:
    """Seconds from the end of each PUT to the thumb being ready, one photo at a time
    (as a user watching the gallery would see it)."""
    headers = {"Authorization": f"Bearer {token}"}
    data, content_type = encoded("jpeg", *size)
    latencies = []
    with httpx.Client(base_url=base, timeout=30) as api, httpx.Client(timeout=30) as s3:
        for n in range(count):
            created = api.post(
                "/images",
                headers=headers,
                json={"filename": f"e2e-{n}.jpg", "content_type": content_type, "size": len(data)},
            ).json()
            upload = created["upload"]
            s3.put(upload["url"], headers=upload["headers"], content=data).raise_for_status()
            uploaded = time.perf_counter()
            while True:
                image = api.get(f"/images/{created['image']['id']}", headers=headers).json()
                if image["variants"]["thumb"]["status"] != "pending":
                    break
                time.sleep(0.02)
            latencies.append(time.perf_counter() - uploaded)
    return latencies


@contextmanager
def make_run(extra_env: dict[str, str] | None = None) -> Iterator[tuple[str, str]]:
    """`python -m app serve` on a free port, in a data directory of its own (never the
    checkout's .data/, a newcomer's gallery): its URL and the demo token it printed."""
    port = free_port()
    env = {k: v for k, v in BASE_ENV.items() if not k.startswith("AWS_")}
    env |= {"IMAGES_PORT": str(port), "IMAGES_LOG_LEVEL": "WARNING", **(extra_env or {})}
    base = f"http://127.0.0.1:{port}"
    with (
        tempfile.TemporaryDirectory() as data,
        running(
            [sys.executable, "-m", "app", "serve"],
            {**env, "IMAGES_DATA_DIR": data},
            f"{base}/health",
            timeout=120,
        ) as server,
    ):
        token = re.search(r"export TOKEN=(\S+)", server.wait_for_output("export TOKEN="))
        assert token is not None
        yield base, token.group(1)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run(quick: bool = False) -> dict[str, Any]:
    count, size = (5, (800, 600)) if quick else (50, (3000, 2000))
    batch_size = 20 if quick else 200
    with make_run() as (base, token):
        latencies = sorted(_thumb_latency(base, token, count, size))
        concurrent = issue_token(Settings(jwt_secret=DEV_JWT_SECRET), "bench-batch", 3600)
        batch = upload_batch(base, concurrent, count=batch_size, concurrency=batch_size)
    return {
        "photos": count,
        "photo_pixels": size[0] * size[1],
        "thumb_p50_s": statistics.median(latencies),
        "thumb_p95_s": percentile(latencies, 0.95),
        "batch": {
            "uploads": batch_size,
            "seconds": batch.seconds,
            "statuses": {str(code): n for code, n in sorted(batch.statuses.items())},
            "server_errors": sum(n for code, n in batch.statuses.items() if code >= 500),
            "ready": len(batch.ready),
        },
    }


if __name__ == "__main__":
    print(run(quick=True))
