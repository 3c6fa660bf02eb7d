"""Fail each AWS step of confirm and delete, retry the request, check the end state.

Two kinds of failure per step: the call never happens (AWS unavailable), and the call
happens but its answer is lost (a read timeout after the write landed), the nastier.
"""

from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from fastapi.testclient import TestClient

from app.config import Settings
from app.storage.clients import AwsClients
from app.storage.items import object_key
from tests.conftest import Uploader
from tests.stores import has_object, record, usage

CONFIRM_STEPS = [
    ("dynamodb", "get_item"),
    ("s3", "get_object"),
    ("s3", "put_object_tagging"),
    ("dynamodb", "transact_write_items"),
]
DELETE_STEPS = [
    ("dynamodb", "update_item"),
    ("s3", "delete_object"),
    ("dynamodb", "transact_write_items"),
]


# The call never happens (AWS unavailable), or it lands and only its answer is lost.
FAILURE_MODES = pytest.mark.parametrize("after", [False, True], ids=["before-call", "answer-lost"])


def _unavailable() -> Exception:
    return ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "down"}}, "op")


@pytest.fixture
def fail_once(
    clients: AwsClients, monkeypatch: pytest.MonkeyPatch
) -> Callable[[str, str, bool], None]:
    """fail_once(service, method, after): the next call of that method fails; with
    `after`, the call reaches AWS first and only its answer is lost."""

    def arm(service: str, method: str, after: bool) -> None:
        client = getattr(clients, service)
        real = getattr(client, method)

        def failing(*args: Any, **kwargs: Any) -> Any:
            monkeypatch.setattr(client, method, real)  # once only
            if after:
                real(*args, **kwargs)
                raise ReadTimeoutError(endpoint_url="http://aws")
            raise _unavailable()

        monkeypatch.setattr(client, method, failing)

    return arm


def _every_listed_image_downloads(
    client: TestClient, headers: dict[str, str], clients: AwsClients, settings: Settings
) -> bool:
    items = client.get("/images", headers=headers).json()["items"]
    return all(has_object(clients, settings, item["id"]) for item in items)


@FAILURE_MODES
@pytest.mark.parametrize(("service", "method"), CONFIRM_STEPS)
def test_confirm_fault_then_retry_ends_ready_and_counted_once(
    client: TestClient,
    alice: dict[str, str],
    pending: Uploader,
    clients: AwsClients,
    settings: Settings,
    fail_once: Any,
    service: str,
    method: str,
    after: bool,
) -> None:
    image = pending(alice)
    fail_once(service, method, after)

    failed = client.post(f"/images/{image['id']}/confirm", headers=alice)
    consistent_meanwhile = _every_listed_image_downloads(client, alice, clients, settings)
    retried = client.post(f"/images/{image['id']}/confirm", headers=alice)

    assert failed.status_code == 503
    assert failed.headers["retry-after"] == "1"
    assert "detail" in failed.json()
    assert consistent_meanwhile
    assert retried.status_code == 200
    assert retried.json()["status"] == "ready"
    assert has_object(clients, settings, image["id"])
    tags = clients.s3.get_object_tagging(Bucket=settings.bucket, Key=object_key(image["id"]))
    assert tags["TagSet"] == [{"Key": "state", "Value": "ready"}]
    assert usage(clients, settings, "alice") == (1, image["size"])


@FAILURE_MODES
@pytest.mark.parametrize(("service", "method"), DELETE_STEPS)
def test_delete_fault_then_retry_leaves_nothing(
    client: TestClient,
    alice: dict[str, str],
    upload: Uploader,
    clients: AwsClients,
    settings: Settings,
    fail_once: Any,
    service: str,
    method: str,
    after: bool,
) -> None:
    image = upload(alice)
    fail_once(service, method, after)

    failed = client.delete(f"/images/{image['id']}", headers=alice)
    consistent_meanwhile = _every_listed_image_downloads(client, alice, clients, settings)
    retried = client.delete(f"/images/{image['id']}", headers=alice)

    assert failed.status_code == 503
    assert consistent_meanwhile
    assert retried.status_code == 204
    assert record(clients, settings, image["id"]) is None
    assert not has_object(clients, settings, image["id"])
    assert usage(clients, settings, "alice") == (0, 0)


@FAILURE_MODES
def test_create_fault_then_retry_creates_one_usable_image(
    client: TestClient, alice: dict[str, str], fail_once: Any, after: bool
) -> None:
    body = {"filename": "a.png", "content_type": "image/png", "size": 10}
    fail_once("dynamodb", "transact_write_items", after)

    failed = client.post("/images", json=body, headers=alice)
    retried = client.post("/images", json=body, headers=alice)

    assert failed.status_code == 503
    assert retried.status_code == 201
    assert client.get(f"/images/{retried.json()['image']['id']}", headers=alice).status_code == 200


def test_transaction_conflict_is_retried(
    client: TestClient,
    alice: dict[str, str],
    clients: AwsClients,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = clients.dynamodb.transact_write_items
    conflicts = [2]

    def conflicting(**kwargs: Any) -> Any:
        if conflicts[0]:
            conflicts[0] -= 1
            raise ClientError(
                {
                    "Error": {"Code": "TransactionCanceledException", "Message": "x"},
                    "CancellationReasons": [
                        {"Code": "None"},
                        {"Code": "TransactionConflict"},
                        {"Code": "None"},
                    ],
                },  # type: ignore[typeddict-unknown-key]
                "TransactWriteItems",
            )
        return real(**kwargs)

    monkeypatch.setattr(clients.dynamodb, "transact_write_items", conflicting)

    response = client.post(
        "/images",
        headers=alice,
        json={"filename": "a.png", "content_type": "image/png", "size": 10},
    )

    assert response.status_code == 201
    assert conflicts == [0]
