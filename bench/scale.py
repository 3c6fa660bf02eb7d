"""DynamoDB calls and items read per list page as the table grows (several users), with
no filter and with a filter matching 1 in 5 of the caller's images. Exact counts, read
from botocore's events, on in-process moto."""

import os
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from moto import mock_aws

from app.config import Settings
from app.domain.records import format_timestamp
from app.http.app import create_app
from app.http.auth import issue_token
from app.storage.resources import ensure_resources
from bench.warm import SECRET

USERS = 5


def _seed(ddb: Any, table: str, start: int, stop: int) -> None:
    epoch = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    for n in range(start, stop):
        owner, nth = n % USERS, n // USERS
        rows.append(
            {
                "PutRequest": {
                    "Item": {
                        "image_id": {"S": f"{n:024x}" + "0" * 20},
                        "user_id": {"S": f"user{owner}"},
                        "created_at": {"S": format_timestamp(epoch + timedelta(seconds=n))},
                        "filename": {"S": "x.png"},
                        "size": {"N": "100"},
                        "status": {"S": "ready"},
                        "content_type": {"S": "image/gif" if nth % 5 == 0 else "image/png"},
                        "tags": {"L": []},
                    }
                }
            }
        )
    for offset in range(0, len(rows), 25):
        ddb.batch_write_item(RequestItems={table: rows[offset : offset + 25]})


def run(sizes: tuple[int, ...] = (100, 1000, 10_000), pages: int = 3) -> dict[str, Any]:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    results: dict[str, Any] = {"users": USERS, "pages": pages, "limit": 20, "sizes": {}}
    with mock_aws():
        settings = Settings(jwt_secret=SECRET, log_level="WARNING")
        app = create_app(settings)
        ensure_resources(app.state.services.clients, settings)
        client = TestClient(app)
        headers = {"Authorization": f"Bearer {issue_token(settings, 'user0', 3600)}"}
        calls: Counter[str] = Counter()

        def count(parsed: dict[str, Any], **_: Any) -> None:
            calls["queries"] += 1
            calls["items_read"] += parsed.get("ScannedCount", 0)

        app.state.services.clients.dynamodb.meta.events.register("after-call.dynamodb.Query", count)
        seeded = 0
        for size in sizes:
            _seed(app.state.services.clients.dynamodb, settings.table, seeded, size)
            seeded = size
            row: dict[str, Any] = {}
            for name, params in (("unfiltered", {}), ("filtered", {"content_type": "image/gif"})):
                calls.clear()
                cursor, items = None, 0
                for _ in range(pages):
                    query = {"limit": 20, **params, **({"cursor": cursor} if cursor else {})}
                    page = client.get("/images", params=query, headers=headers).json()
                    items += len(page["items"])
                    cursor = page["next_cursor"]
                row[name] = {
                    "queries_per_page": calls["queries"] / pages,
                    "items_read_per_page": calls["items_read"] / pages,
                    "items_per_page": items / pages,
                }
            results["sizes"][size] = row
    return results
