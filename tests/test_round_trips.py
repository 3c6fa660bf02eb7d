"""AWS round trips per call, counted with botocore's before-call events."""

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import botocore.session
import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.domain.records import format_timestamp
from app.storage.clients import AwsClients
from tests.conftest import Uploader
from tests.imagefiles import tiff


def test_create_is_one_transaction(
    client: TestClient, alice: dict[str, str], create: Uploader, aws_calls: Counter[str]
) -> None:
    create(alice)

    # Record, quota check and upload counter are written in one TransactWriteItems.
    assert aws_calls == Counter({"dynamodb.TransactWriteItems": 1})


def test_get_is_one_get_item(
    client: TestClient, alice: dict[str, str], upload: Uploader, aws_calls: Counter[str]
) -> None:
    image = upload(alice)
    aws_calls.clear()

    response = client.get(f"/images/{image['id']}", headers=alice)

    assert response.status_code == 200
    assert aws_calls == Counter({"dynamodb.GetItem": 1})


def test_download_is_one_get_item(
    client: TestClient, alice: dict[str, str], upload: Uploader, aws_calls: Counter[str]
) -> None:
    image = upload(alice)
    aws_calls.clear()

    response = client.get(f"/images/{image['id']}/download", headers=alice)

    assert response.status_code == 200
    assert aws_calls == Counter({"dynamodb.GetItem": 1})


def test_confirm_is_four_calls(
    client: TestClient,
    alice: dict[str, str],
    pending: Uploader,
    aws_calls: Counter[str],
) -> None:
    image = pending(alice)
    aws_calls.clear()

    response = client.post(f"/images/{image['id']}/confirm", headers=alice)

    assert response.status_code == 200
    assert aws_calls == Counter(
        {
            "dynamodb.GetItem": 1,
            "s3.GetObject": 1,
            "s3.PutObjectTagging": 1,
            "dynamodb.TransactWriteItems": 1,
        }
    )


def test_confirm_of_a_tiff_whose_directory_is_at_the_end_reads_it_with_one_ranged_get(
    client: TestClient,
    alice: dict[str, str],
    pending: Uploader,
    aws_calls: Counter[str],
) -> None:
    data = tiff(400, 300, directory_last=True)  # 360 kB of pixels, then the directory
    image = pending(alice, "image/tiff", data)
    aws_calls.clear()

    response = client.post(f"/images/{image['id']}/confirm", headers=alice)

    assert (response.status_code, response.json()["width"]) == (200, 400)
    assert aws_calls["s3.GetObject"] == 2  # the first bytes, then the directory's window


def test_repeated_confirm_is_one_get_item(
    client: TestClient, alice: dict[str, str], upload: Uploader, aws_calls: Counter[str]
) -> None:
    image = upload(alice)
    aws_calls.clear()

    response = client.post(f"/images/{image['id']}/confirm", headers=alice)

    assert response.status_code == 200
    assert aws_calls == Counter({"dynamodb.GetItem": 1})


def test_delete_is_three_calls(
    client: TestClient, alice: dict[str, str], upload: Uploader, aws_calls: Counter[str]
) -> None:
    image = upload(alice)
    aws_calls.clear()

    response = client.delete(f"/images/{image['id']}", headers=alice)

    assert response.status_code == 204
    assert aws_calls == Counter(
        {"dynamodb.UpdateItem": 1, "s3.DeleteObjects": 1, "dynamodb.TransactWriteItems": 1}
    )


def test_delete_of_missing_image_is_one_call(
    client: TestClient, alice: dict[str, str], aws_calls: Counter[str]
) -> None:
    response = client.delete("/images/0123456789abcdef0123456789abcdef", headers=alice)

    assert response.status_code == 204
    assert aws_calls == Counter({"dynamodb.UpdateItem": 1})


def test_list_page_is_one_query(
    client: TestClient, alice: dict[str, str], upload: Uploader, aws_calls: Counter[str]
) -> None:
    for _ in range(5):
        upload(alice)
    aws_calls.clear()

    response = client.get("/images", params={"limit": 2}, headers=alice)

    assert response.status_code == 200
    assert aws_calls == Counter({"dynamodb.Query": 1})


@pytest.fixture
def client_builds() -> Iterator[Counter[str]]:
    """Counts every boto3/botocore Session and client constructed while active."""
    built: Counter[str] = Counter()
    original_session = boto3.session.Session.__init__
    original_client = botocore.session.Session.create_client

    def session_init(self: Any, *args: Any, **kwargs: Any) -> None:
        built["Session"] += 1
        original_session(self, *args, **kwargs)

    def create_client(self: Any, *args: Any, **kwargs: Any) -> Any:
        built["client"] += 1
        return original_client(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(boto3.session.Session, "__init__", session_init)
        patch.setattr(botocore.session.Session, "create_client", create_client)
        yield built


def test_requests_build_no_session_or_client(
    client: TestClient, alice: dict[str, str], upload: Uploader, client_builds: Counter[str]
) -> None:
    for _ in range(3):
        image = upload(alice)
        client.get(f"/images/{image['id']}/download", headers=alice)
        client.get("/images", headers=alice)
        client.delete(f"/images/{image['id']}", headers=alice)

    assert client_builds == Counter()


def _seed(clients: AwsClients, settings: Settings, count: int, users: int) -> None:
    """Write `count` ready images spread over `users` users; alice owns every
    `users`-th one and one in five of hers is a GIF."""
    epoch = datetime(2026, 1, 1, tzinfo=UTC)
    rows: list[Any] = []
    for n in range(count):
        owner, nth = n % users, n // users
        item = {
            "image_id": {"S": f"seed{n:06d}"},
            "user_id": {"S": "alice" if owner == 0 else f"user{owner}"},
            "created_at": {"S": format_timestamp(epoch + timedelta(seconds=n))},
            "filename": {"S": "x.png"},
            "content_type": {"S": "image/gif" if nth % 5 == 0 else "image/png"},
            "size": {"N": "100"},
            "status": {"S": "ready"},
            "tags": {"L": []},
        }
        rows.append({"PutRequest": {"Item": item}})
    for start in range(0, len(rows), 25):
        clients.dynamodb.batch_write_item(RequestItems={settings.table: rows[start : start + 25]})


# Filtered, the first Query reads 4x(limit+1) items, finds 5 GIFs of the 6 it needs to
# know whether a next page exists, and a second Query finds the 6th: 2, at any size.
@pytest.mark.parametrize(("params", "queries"), [({}, 1), ({"content_type": "image/gif"}, 2)])
def test_list_page_cost_is_independent_of_table_size(
    client: TestClient,
    alice: dict[str, str],
    clients: AwsClients,
    settings: Settings,
    aws_calls: Counter[str],
    params: dict[str, str],
    queries: int,
) -> None:
    costs = []
    for total in (50, 5000):
        _seed(clients, settings, total, users=2)
        aws_calls.clear()
        response = client.get("/images", params={"limit": 5, **params}, headers=alice)
        assert response.status_code == 200
        assert len(response.json()["items"]) == 5
        costs.append(aws_calls["dynamodb.Query"])

    assert costs == [queries, queries]
    assert sum(aws_calls.values()) == aws_calls["dynamodb.Query"]
