"""Load: many users creating, uploading, confirming, listing, downloading and deleting at
once against uvicorn + a moto server on loopback. Bounded in time and in requests.

Afterwards every user's listing is walked and checked against what the workers know:
every confirmed image is listed and downloads with its own bytes, every deleted one is
gone from the API, the bucket and the table, and each user's usage counters equal the
sum of their ready images (with nothing left pending).

    python -m tests.load --seconds 35 --users 16      # what `make loadtest` runs
"""

import argparse
import io
import os
import statistics
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import boto3
import httpx2 as httpx
from botocore.config import Config
from botocore.exceptions import ClientError
from PIL import Image

from app.config import Settings
from app.http.auth import issue_token
from app.storage.items import object_key, usage_key


@dataclass
class Report:
    seconds: float = 0.0
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    server_errors: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    confirmed: int = 0
    deleted: int = 0

    @property
    def requests(self) -> int:
        return sum(len(values) for values in self.latencies.values())

    def percentile(self, q: float, name: str | None = None) -> float:
        values = sorted(
            self.latencies[name] if name else [v for vs in self.latencies.values() for v in vs]
        )
        if not values:
            return 0.0
        return values[min(len(values) - 1, int(q * len(values)))] * 1000

    def summary(self) -> str:
        lines = [
            f"{self.requests} API requests in {self.seconds:.1f} s: "
            f"{self.requests / self.seconds:.0f} req/s, p50 {self.percentile(0.5):.1f} ms, "
            f"p99 {self.percentile(0.99):.1f} ms",
            f"{self.confirmed} images confirmed, {self.deleted} deleted; "
            f"5xx: {len(self.server_errors)}, unexpected: {len(self.unexpected)}, "
            f"lost: {len(self.lost)}",
        ]
        for name in sorted(self.latencies):
            values = self.latencies[name]
            lines.append(
                f"  {name:<10} n={len(values):<6} p50 {self.percentile(0.5, name):6.1f} ms  "
                f"p99 {self.percentile(0.99, name):6.1f} ms  "
                f"mean {statistics.fmean(values) * 1000:6.1f} ms"
            )
        return "\n".join(lines)


def _png(seed: int) -> bytes:
    buffer = io.BytesIO()
    color = (seed * 37 % 256, seed * 91 % 256, seed * 53 % 256)
    Image.new("RGB", (8 + seed % 24, 8 + seed % 17), color).save(buffer, "PNG")
    return buffer.getvalue()


class _Worker:
    def __init__(
        self, base_url: str, settings: Settings, user: str, report: Report, lock: threading.Lock
    ) -> None:
        self.api = httpx.Client(
            base_url=base_url,
            timeout=30,
            headers={"Authorization": "Bearer " + issue_token(settings, user, 3600)},
        )
        self.s3 = httpx.Client(timeout=30)
        self.user = user
        self.report = report
        self.lock = lock
        self.kept: dict[str, bytes] = {}
        self.deleted: set[str] = set()

    def call(self, name: str, method: str, url: str, expect: int, **kwargs: Any) -> Any:
        started = time.perf_counter()
        response = self.api.request(method, url, **kwargs)
        elapsed = time.perf_counter() - started
        with self.lock:
            self.report.latencies[name].append(elapsed)
            line = f"{self.user} {method} {url} -> {response.status_code} {response.text[:200]}"
            if response.status_code >= 500:
                self.report.server_errors.append(line)
            elif response.status_code != expect:
                self.report.unexpected.append(line)
        return response

    def cycle(self, n: int) -> None:
        data = _png(n)
        created = self.call(
            "create",
            "POST",
            "/images",
            201,
            json={
                "filename": f"load-{n}.png",
                "content_type": "image/png",
                "size": len(data),
                "tags": ["load", f"n{n % 3}"],
            },
        )
        if created.status_code != 201:
            return
        image_id, upload = created.json()["image"]["id"], created.json()["upload"]
        put = self.s3.put(upload["url"], headers=upload["headers"], content=data)
        if put.status_code != 200:
            with self.lock:
                self.report.unexpected.append(f"{self.user} PUT -> {put.status_code}")
            return
        if self.call("confirm", "POST", f"/images/{image_id}/confirm", 200).status_code != 200:
            return
        self.kept[image_id] = data
        self.call("list", "GET", "/images", 200, params={"limit": 10})
        link = self.call("download", "GET", f"/images/{image_id}/download", 200)
        if link.status_code == 200 and self.s3.get(link.json()["url"]).content != data:
            with self.lock:
                self.report.lost.append(f"{image_id}: downloaded bytes differ")
        if n % 2 == 0:
            self.call("delete", "DELETE", f"/images/{image_id}", 204)
            self.kept.pop(image_id)
            self.deleted.add(image_id)

    def run(self, deadline: float, max_cycles: int) -> None:
        n = 0
        while time.monotonic() < deadline and n < max_cycles:
            self.cycle(n)
            n += 1

    def close(self) -> None:
        self.api.close()
        self.s3.close()

    def listed(self) -> set[str]:
        ids: set[str] = set()
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 100, **({"cursor": cursor} if cursor else {})}
            page = self.api.get("/images", params=params).json()
            ids |= {item["id"] for item in page["items"]}
            cursor = page["next_cursor"]
            if not cursor:
                return ids


def _verify(workers: list[_Worker], report: Report, settings: Settings) -> None:
    config = Config(s3={"addressing_style": "path"}, retries={"mode": "standard"})
    s3 = boto3.client(
        "s3", endpoint_url=settings.s3_endpoint, config=config, region_name=settings.region
    )
    ddb = boto3.client(
        "dynamodb", endpoint_url=settings.dynamodb_endpoint, region_name=settings.region
    )
    for worker in workers:
        listed = worker.listed()
        report.confirmed += len(worker.kept) + len(worker.deleted)
        report.deleted += len(worker.deleted)
        report.lost += [f"{i}: confirmed but not listed" for i in set(worker.kept) - listed]
        report.lost += [f"{i}: deleted but still listed" for i in worker.deleted & listed]
        for image_id, data in worker.kept.items():
            link = worker.api.get(f"/images/{image_id}/download")
            if link.status_code != 200 or worker.s3.get(link.json()["url"]).content != data:
                report.lost.append(f"{image_id}: not downloadable with its bytes")
        usage = ddb.get_item(
            TableName=settings.table, Key=usage_key(worker.user), ConsistentRead=True
        ).get("Item", {})
        counted = [int(usage.get(name, {"N": "0"})["N"]) for name in ("images", "bytes", "pending")]
        expected = [len(worker.kept), sum(len(data) for data in worker.kept.values()), 0]
        if counted != expected:
            report.lost.append(f"{worker.user}: usage says {counted}, ready images {expected}")
        for image_id in worker.deleted:
            if worker.api.get(f"/images/{image_id}").status_code != 404:
                report.lost.append(f"{image_id}: deleted but still served")
            if "Item" in ddb.get_item(TableName=settings.table, Key={"image_id": {"S": image_id}}):
                report.lost.append(f"{image_id}: deleted but its record remains")
            try:
                s3.head_object(Bucket=settings.bucket, Key=object_key(image_id))
                report.lost.append(f"{image_id}: deleted but its bytes remain")
            except ClientError:
                pass
    s3.close()
    ddb.close()


def run_load(
    base_url: str, settings: Settings, users: int, seconds: float, max_cycles_per_user: int = 10_000
) -> Report:
    report, lock = Report(), threading.Lock()
    workers = [_Worker(base_url, settings, f"load-user-{i}", report, lock) for i in range(users)]
    deadline = time.monotonic() + seconds
    threads = [
        threading.Thread(target=w.run, args=(deadline, max_cycles_per_user)) for w in workers
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 60)
    report.seconds = time.perf_counter() - started
    try:
        _verify(workers, report, settings)
    finally:
        for worker in workers:
            worker.close()
    return report


def main() -> None:
    from tests.conftest import SECRET  # noqa: PLC0415
    from tests.servers import BASE_ENV, moto_server, running, uvicorn_command  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=35)
    parser.add_argument("--users", type=int, default=16)
    args = parser.parse_args()

    from app.local.server import free_port  # noqa: PLC0415

    for name, value in BASE_ENV.items():  # the verifier's boto3 clients need credentials too
        if name.startswith("AWS_"):
            os.environ.setdefault(name, value)

    with moto_server() as endpoint:
        env = {
            **BASE_ENV,
            "AWS_ENDPOINT_URL": endpoint,
            "IMAGES_JWT_SECRET": SECRET,
            "IMAGES_MAX_UPLOADS_PER_WINDOW": "100000",
        }
        import subprocess  # noqa: PLC0415

        subprocess.run(
            [sys.executable, "-m", "app", "create-resources"],
            env=env,
            check=True,
            capture_output=True,
        )
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with running(uvicorn_command(port), env, f"{base}/health"):
            settings = Settings(jwt_secret=SECRET, aws_endpoint_url=endpoint)
            report = run_load(base, settings, args.users, args.seconds)
    print(report.summary())
    for problem in (report.server_errors + report.unexpected + report.lost)[:20]:
        print("  !", problem)
    sys.exit(1 if report.server_errors or report.unexpected or report.lost else 0)


if __name__ == "__main__":
    main()


@dataclass
class Batch:
    """What happened to a batch of uploads driven like the gallery or the CLI drives them."""

    seconds: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    ready: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def upload_batch(base_url: str, token: str, count: int, concurrency: int) -> Batch:
    """`count` uploads (create with an Idempotency-Key, PUT with the returned headers,
    confirm), `concurrency` at a time, each a fresh small PNG."""
    batch, lock = Batch(), threading.Lock()
    headers = {"Authorization": f"Bearer {token}"}
    work = iter(range(count))

    def one(api: httpx.Client, s3: httpx.Client, n: int) -> None:
        data = _png(n)
        created = api.post(
            "/images",
            headers={**headers, "Idempotency-Key": f"batch-{base_url}-{n}-{time.time_ns()}"},
            json={"filename": f"b{n}.png", "content_type": "image/png", "size": len(data)},
        )
        with lock:
            batch.statuses[created.status_code] += 1
        if created.status_code != 201:
            batch.failures.append(f"create {created.status_code} {created.text[:200]}")
            return
        upload = created.json()["upload"]
        put = s3.put(upload["url"], headers=upload["headers"], content=data)
        if put.status_code != 200:
            batch.failures.append(f"PUT {put.status_code}")
            return
        image_id = created.json()["image"]["id"]
        confirmed = api.post(f"/images/{image_id}/confirm", headers=headers)
        with lock:
            batch.statuses[confirmed.status_code] += 1
            if confirmed.status_code == 200:
                batch.ready.append(image_id)
            else:
                batch.failures.append(f"confirm {confirmed.status_code} {confirmed.text[:200]}")

    def worker() -> None:
        with httpx.Client(base_url=base_url, timeout=60) as api, httpx.Client(timeout=60) as s3:
            while True:
                with lock:
                    n = next(work, None)
                if n is None:
                    return
                one(api, s3, n)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    batch.seconds = time.perf_counter() - started
    return batch
