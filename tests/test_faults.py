"""Fail each AWS step of confirm, delete and create, retry, and check that everything
converges: after the grace period, DynamoDB's TTL firing and one sweep, nothing is left
half-done and every user's usage equals what their records say (reconcile finds no drift).

Two kinds of failure per step: the call never happens (AWS unavailable), and the call
happens but its answer is lost (a read timeout after the write landed), the nastier.
"""

from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.config import Settings
from app.storage.clients import AwsClients
from tests.conftest import Clock, Uploader
from tests.imagefiles import make_image
from tests.stores import fire_ttl, has_object, record, sweep_index, tags, usage

CONFIRM_STEPS = [
    ("dynamodb", "get_item"),
    ("s3", "get_object"),
    ("dynamodb", "transact_write_items"),
    ("s3", "put_object_tagging"),
]
# Tagging comes after the record is ready: a failure there no longer fails the confirm.
CONFIRM_SUCCEEDS_DESPITE = {("s3", "put_object_tagging")}
DELETE_STEPS = [
    ("dynamodb", "update_item"),
    ("s3", "delete_objects"),
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


@pytest.fixture
def converge(
    app: FastAPI, clients: AwsClients, settings: Settings, clock: Clock
) -> Callable[[], None]:
    """Let everything that can happen later happen at its worst: the grace period and
    every deadline pass, DynamoDB's TTL deletes whatever it may, then the sweep runs."""

    def run() -> None:
        clock.advance(settings.upload_deadline_seconds + settings.idempotency_ttl_seconds + 1)
        fire_ttl(clients, settings, int(clock.now.timestamp()))
        report = app.state.maintenance.sweep()
        assert (report.failed, report.complete) == (0, True)

    return run


def _no_drift(app: FastAPI, user: str) -> bool:
    result = app.state.maintenance.reconcile(user)
    return not result.drift


def _every_listed_image_downloads(
    client: TestClient, headers: dict[str, str], clients: AwsClients, settings: Settings
) -> bool:
    items = client.get("/images", headers=headers).json()["items"]
    return all(has_object(clients, settings, item["id"]) for item in items)


@FAILURE_MODES
@pytest.mark.parametrize(("service", "method"), CONFIRM_STEPS)
def test_confirm_fault_then_retry_ends_ready_tagged_and_counted_once(
    app: FastAPI,
    client: TestClient,
    alice: dict[str, str],
    pending: Uploader,
    clients: AwsClients,
    settings: Settings,
    fail_once: Any,
    converge: Callable[[], None],
    service: str,
    method: str,
    after: bool,
) -> None:
    image = pending(alice)
    fail_once(service, method, after)

    first = client.post(f"/images/{image['id']}/confirm", headers=alice)
    consistent_meanwhile = _every_listed_image_downloads(client, alice, clients, settings)
    retried = client.post(f"/images/{image['id']}/confirm", headers=alice)
    converge()

    expected = 200 if (service, method) in CONFIRM_SUCCEEDS_DESPITE else 503
    assert first.status_code == expected
    if expected == 503:
        assert first.headers["retry-after"] == "1"
        assert "detail" in first.json()
    assert consistent_meanwhile
    assert retried.status_code == 200
    assert retried.json()["status"] == "ready"
    assert has_object(clients, settings, image["id"])
    assert tags(clients, settings, image["id"]) == [{"Key": "state", "Value": "ready"}]
    assert usage(clients, settings, "alice") == (1, image["size"])
    assert sweep_index(clients, settings) == []
    assert _no_drift(app, "alice")


@FAILURE_MODES
@pytest.mark.parametrize(("service", "method"), DELETE_STEPS)
def test_delete_fault_then_retry_leaves_nothing(
    app: FastAPI,
    client: TestClient,
    alice: dict[str, str],
    upload: Uploader,
    clients: AwsClients,
    settings: Settings,
    fail_once: Any,
    converge: Callable[[], None],
    service: str,
    method: str,
    after: bool,
) -> None:
    image = upload(alice)
    fail_once(service, method, after)

    failed = client.delete(f"/images/{image['id']}", headers=alice)
    consistent_meanwhile = _every_listed_image_downloads(client, alice, clients, settings)
    retried = client.delete(f"/images/{image['id']}", headers=alice)
    converge()

    assert failed.status_code == 503
    assert consistent_meanwhile
    assert retried.status_code == 204
    assert record(clients, settings, image["id"]) is None
    assert not has_object(clients, settings, image["id"])
    assert usage(clients, settings, "alice") == (0, 0)
    assert _no_drift(app, "alice")


@FAILURE_MODES
@pytest.mark.parametrize(("service", "method"), DELETE_STEPS[1:])
def test_delete_fault_never_retried_is_finished_by_the_sweep_even_after_ttl(
    app: FastAPI,
    client: TestClient,
    alice: dict[str, str],
    upload: Uploader,
    clients: AwsClients,
    settings: Settings,
    fail_once: Any,
    converge: Callable[[], None],
    service: str,
    method: str,
    after: bool,
) -> None:
    """The client gives up after the record is hidden: nothing may rely on the TTL (it
    would drop the marker and strand the bytes and the quota)."""
    image = upload(alice)
    fail_once(service, method, after)

    failed = client.delete(f"/images/{image['id']}", headers=alice)
    converge()

    assert failed.status_code == 503
    assert record(clients, settings, image["id"]) is None
    assert not has_object(clients, settings, image["id"])
    assert usage(clients, settings, "alice") == (0, 0)
    assert _no_drift(app, "alice")


def test_abandoned_upload_is_swept_with_its_quota_even_after_ttl(
    app: FastAPI,
    alice: dict[str, str],
    pending: Uploader,
    clients: AwsClients,
    settings: Settings,
    converge: Callable[[], None],
) -> None:
    image = pending(alice)

    converge()

    assert record(clients, settings, image["id"]) is None
    assert not has_object(clients, settings, image["id"])
    assert usage(clients, settings, "alice") == (0, 0)
    assert _no_drift(app, "alice")


@FAILURE_MODES
def test_create_fault_then_retry_creates_one_usable_image(
    app: FastAPI,
    client: TestClient,
    alice: dict[str, str],
    fail_once: Any,
    converge: Callable[[], None],
    after: bool,
) -> None:
    body = {"filename": "a.png", "content_type": "image/png", "size": 10}
    fail_once("dynamodb", "transact_write_items", after)

    failed = client.post("/images", json=body, headers=alice)
    retried = client.post("/images", json=body, headers=alice)
    fetched = client.get(f"/images/{retried.json()['image']['id']}", headers=alice)
    converge()

    assert failed.status_code == 503
    assert retried.status_code == 201
    assert fetched.status_code == 200
    assert _no_drift(app, "alice")


@FAILURE_MODES
def test_create_fault_retried_with_idempotency_key_makes_exactly_one_image(
    app: FastAPI,
    client: TestClient,
    alice: dict[str, str],
    clients: AwsClients,
    settings: Settings,
    fail_once: Any,
    after: bool,
) -> None:
    body = {"filename": "a.png", "content_type": "image/png", "size": 10}
    headers = {**alice, "Idempotency-Key": "retry-me"}
    fail_once("dynamodb", "transact_write_items", after)

    failed = client.post("/images", json=body, headers=headers)
    retried = client.post("/images", json=body, headers=headers)
    listed = client.get("/images", params={"status": "pending"}, headers=alice).json()["items"]

    assert failed.status_code == 503
    assert retried.status_code == 201
    assert [item["id"] for item in listed] == [retried.json()["image"]["id"]]
    assert _no_drift(app, "alice")


@pytest.mark.parametrize(
    ("service", "method"),
    [("dynamodb", "transact_write_items"), ("s3", "put_object"), ("s3", "put_object_tagging")],
)
@FAILURE_MODES
def test_direct_upload_fault_retried_with_idempotency_key_ends_ready_once(
    app: FastAPI,
    client: TestClient,
    alice: dict[str, str],
    clients: AwsClients,
    settings: Settings,
    fail_once: Any,
    converge: Callable[[], None],
    service: str,
    method: str,
    after: bool,
) -> None:
    data = make_image("image/png", width=9, height=7)
    headers = {**alice, "Idempotency-Key": "direct-1"}
    files = {"file": ("d.png", data, "image/png")}
    fail_once(service, method, after)

    client.post("/images/direct", files=files, headers=headers)
    retried = client.post("/images/direct", files=files, headers=headers)
    listed = client.get("/images", headers=alice).json()["items"]
    converge()

    assert retried.status_code == 201
    assert retried.json()["status"] == "ready"
    assert [item["id"] for item in listed] == [retried.json()["id"]]
    assert tags(clients, settings, retried.json()["id"]) == [{"Key": "state", "Value": "ready"}]
    assert usage(clients, settings, "alice") == (1, len(data))
    assert _no_drift(app, "alice")


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
                    "CancellationReasons": [{"Code": "None"}, {"Code": "TransactionConflict"}],
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
