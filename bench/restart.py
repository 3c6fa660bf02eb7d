"""`make run` keeps its gallery: how long a restart takes with N images kept (each with
its thumb and preview), against the same start with nothing kept (the floor); and how
long moto's own recorder would take to replay the same session instead (the other way
to keep it, measured on the very same uploads)."""

import base64
import http.client
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2 as httpx

from app.local.server import free_port
from tests.load import upload_batch
from tests.servers import BASE_ENV, make_run_server, running


def _listed(url: str, token: str) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"}
    images: list[dict[str, Any]] = []
    query = {"limit": "100"}
    with httpx.Client(base_url=url, timeout=60) as api:
        while True:
            page = api.get("/images", headers=headers, params=query).json()
            images += page["items"]
            if not page["next_cursor"]:
                return images
            query["cursor"] = page["next_cursor"]


def _populate(data: Path, count: int, recording: Path) -> float:
    """`count` uploads through `make run`, until every thumb is made; moto's recorder on."""
    env = {"MOTO_ENABLE_RECORDING": "true", "MOTO_RECORDER_FILEPATH": str(recording)}
    started = time.perf_counter()
    with make_run_server(data, env=env) as run:
        batch = upload_batch(run.url, run.token, count=count, concurrency=8)
        assert len(batch.ready) == count, batch.failures[:3]
        while True:
            images = _listed(run.url, run.token)
            if all(image["variants"]["thumb"]["status"] == "ready" for image in images):
                break
            time.sleep(0.5)
    return time.perf_counter() - started


def _start(data: Path, count: int) -> dict[str, float]:
    """Seconds from starting `make run` to its health answer, and to a listing of all
    `count` images with their thumbs; and how many came back with them."""
    started = time.perf_counter()
    with make_run_server(data) as run:
        healthy = time.perf_counter() - started
        images = _listed(run.url, run.token)
        listed = time.perf_counter() - started
    ready = sum(1 for image in images if image["variants"]["thumb"]["status"] == "ready")
    assert ready == count, f"{ready} of {count} images came back with their thumbs"
    return {"healthy_s": healthy, "listed_s": listed, "with_thumbs": ready}


def _replay(recording: Path) -> dict[str, float]:
    """What moto's recorder does to restore: every recorded request again, in order, into
    a fresh emulator (its long polls made short)."""
    lines = recording.read_text().splitlines()
    port = free_port()
    argv = [sys.executable, "-m", "app.local", "--port", str(port)]
    with running(argv, BASE_ENV, f"http://127.0.0.1:{port}/moto-api/"):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        started = time.perf_counter()
        for line in lines:
            entry = json.loads(line)
            body = entry.get("body") or ""
            data = base64.b64decode(body) if entry.get("body_encoded") else body.encode()
            headers = {
                name: value
                for name, value in entry["headers"].items()
                if name.lower() not in ("host", "content-length", "transfer-encoding")
            }
            if headers.get("X-Amz-Target", "").endswith("ReceiveMessage"):
                data = json.dumps({**json.loads(data or b"{}"), "WaitTimeSeconds": 0}).encode()
            url = urlsplit(entry["url"])
            path = url.path + (f"?{url.query}" if url.query else "")
            connection.request(entry["method"], path, body=data, headers=headers)
            connection.getresponse().read()
        seconds = time.perf_counter() - started
    return {
        "requests": len(lines),
        "megabytes": recording.stat().st_size / 1e6,
        "seconds": seconds,
    }


def run(quick: bool = False) -> dict[str, Any]:
    count = 8 if quick else 1000
    with tempfile.TemporaryDirectory() as scratch:
        data, empty = Path(scratch) / "data", Path(scratch) / "empty"
        recording = Path(scratch) / "recording.jsonl"
        populate_s = _populate(data, count, recording)
        kept_bytes = sum(path.stat().st_size for path in data.rglob("*") if path.is_file())
        floor = _start(empty, 0)
        kept = _start(data, count)
        replay = _replay(recording)
    return {
        "images": count,
        "populate_s": populate_s,
        "kept_megabytes": kept_bytes / 1e6,
        "floor": floor,
        "kept": kept,
        "restore_s": kept["healthy_s"] - floor["healthy_s"],
        "recorder": replay,
    }


if __name__ == "__main__":
    print(json.dumps(run(quick=True), indent=2))
