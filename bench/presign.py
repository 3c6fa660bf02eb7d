"""Microseconds per presigned URL with the service's shared client, and proof that no
client or Session is built for it."""

import os
import statistics
import time
from collections import Counter
from typing import Any

import boto3
import botocore.session

from app.config import Settings
from app.storage.clients import AwsClients
from app.storage.objects import ImageObjects

OWNER = "0" * 20  # the key prefix every id ends with (app/domain/owners.py)
WARM = "f" * 24 + OWNER


def run(n: int = 2000) -> dict[str, Any]:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    settings = Settings(jwt_secret="bench-secret-" + "0" * 32)
    store = ImageObjects(AwsClients(settings), settings)
    store.original_url(WARM, "image/png", "attachment", 300)  # first use builds the shared client
    built: Counter[str] = Counter()
    session_init, create_client = (
        boto3.session.Session.__init__,
        botocore.session.Session.create_client,
    )

    def counting_session(self: Any, *args: Any, **kwargs: Any) -> None:
        built["sessions"] += 1
        session_init(self, *args, **kwargs)

    def counting_client(self: Any, *args: Any, **kwargs: Any) -> Any:
        built["clients"] += 1
        return create_client(self, *args, **kwargs)

    boto3.session.Session.__init__ = counting_session  # type: ignore[method-assign]
    botocore.session.Session.create_client = counting_client  # type: ignore[method-assign]
    try:
        timings: dict[str, list[float]] = {"put": [], "get": []}
        for i in range(n):
            started = time.perf_counter()
            store.presign_put(f"{i:024x}{OWNER}", "image/png", 1234, 900)
            timings["put"].append(time.perf_counter() - started)
            started = time.perf_counter()
            store.original_url(f"{i:024x}{OWNER}", "image/png", 'attachment; filename="a.png"', 300)
            timings["get"].append(time.perf_counter() - started)
    finally:
        boto3.session.Session.__init__ = session_init  # type: ignore[method-assign]
        botocore.session.Session.create_client = create_client  # type: ignore[method-assign]
    return {
        "urls": 2 * n,
        "put_us_p50": statistics.median(timings["put"]) * 1e6,
        "get_us_p50": statistics.median(timings["get"]) * 1e6,
        "sessions_built": built["sessions"],
        "clients_built": built["clients"],
    }
