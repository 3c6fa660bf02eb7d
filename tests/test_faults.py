"""Fail each AWS step of confirm, delete and create, retry, and check that everything
converges: after the grace period, DynamoDB's TTL firing and one sweep, nothing is left
half-done and every user's usage equals what their records say (reconcile finds no drift).

Two kinds of failure per step: the call never happens (AWS unavailable), and the call
happens but its answer is lost (a read timeout after the write landed), the nastier.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.config import Settings
from app.storage.clients import AwsClients
from tests.conftest import Clock, Uploader
from tests.imagefiles import make_image
from tests.stores import Stores

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
def converge(app: FastAPI, settings: Settings, clock: Clock, stores: Stores) -> Callable[[], None]:
    """Let everything that can happen later happen at its worst: the grace period and
    every deadline pass, DynamoDB's TTL deletes whatever it may, then the sweep runs."""

    def run() -> None:
        clock.advance(settings.upload_deadline_seconds + settings.idempotency_ttl_seconds + 1)
        stores.fire_ttl(int(clock.now.timestamp()))
        report = app.state.services.maintenance.sweep()
        assert (report.failed, report.complete) == (0, True)

    return run


@dataclass(frozen=True)
class Faults:
    """What a fault test drives (the API, a failure armed once, everything that happens
    later) and what it inspects (the stores, the quota's drift)."""

    client: TestClient
    stores: Stores
    fail_once: Callable[[str, str, bool], None]
    converge: Callable[[], None]
    app: FastAPI

    def no_drift(self, user: str) -> bool:
        return not self.app.state.services.maintenance.reconcile(user).drift

    def every_listed_image_downloads(self, headers: dict[str, str]) -> bool:
        items = self.client.get("/images", headers=headers).json()["items"]
        return all(self.stores.has_object(item["id"]) for item in items)

    def assert_gone(self, image_id: str, user: str) -> None:
        """Record, bytes and quota all given back, and the counters agree."""
        assert self.stores.record(image_id) is None
        assert not self.stores.has_object(image_id)
        assert self.stores.usage(user) == (0, 0)
        assert self.no_drift(user)


@pytest.fixture
def faults(
    app: FastAPI,
    client: TestClient,
    stores: Stores,
    fail_once: Callable[[str, str, bool], None],
    converge: Callable[[], None],
) -> Faults:
    return Faults(client, stores, fail_once, converge, app)


@FAILURE_MODES
@pytest.mark.parametrize(("service", "method"), CONFIRM_STEPS)
def test_confirm_fault_then_retry_ends_ready_tagged_and_counted_once(
    faults: Faults, alice: dict[str, str], pending: Uploader, service: str, method: str, after: bool
) -> None:
    client, stores = faults.client, faults.stores
    image = pending(alice)
    faults.fail_once(service, method, after)

    first = client.post(f"/images/{image['id']}/confirm", headers=alice)
    consistent_meanwhile = faults.every_listed_image_downloads(alice)
    retried = client.post(f"/images/{image['id']}/confirm", headers=alice)
    faults.converge()

    expected = 200 if (service, method) in CONFIRM_SUCCEEDS_DESPITE else 503
    assert first.status_code == expected
    if expected == 503:
        assert first.headers["retry-after"] == "1"
        assert "detail" in first.json()
    assert consistent_meanwhile
    assert retried.status_code == 200
    assert retried.json()["status"] == "ready"
    assert stores.has_object(image["id"])
    assert stores.tags(image["id"]) == [{"Key": "state", "Value": "ready"}]
    assert stores.usage("alice") == (1, image["size"])
    assert stores.sweep_index() == []
    assert faults.no_drift("alice")


@FAILURE_MODES
@pytest.mark.parametrize(("service", "method"), DELETE_STEPS)
def test_delete_fault_then_retry_leaves_nothing(
    faults: Faults, alice: dict[str, str], upload: Uploader, service: str, method: str, after: bool
) -> None:
    image = upload(alice)
    faults.fail_once(service, method, after)

    failed = faults.client.delete(f"/images/{image['id']}", headers=alice)
    consistent_meanwhile = faults.every_listed_image_downloads(alice)
    retried = faults.client.delete(f"/images/{image['id']}", headers=alice)
    faults.converge()

    assert failed.status_code == 503
    assert consistent_meanwhile
    assert retried.status_code == 204
    faults.assert_gone(image["id"], "alice")


@FAILURE_MODES
@pytest.mark.parametrize(("service", "method"), DELETE_STEPS[1:])
def test_delete_fault_never_retried_is_finished_by_the_sweep_even_after_ttl(
    faults: Faults, alice: dict[str, str], upload: Uploader, service: str, method: str, after: bool
) -> None:
    """The client gives up after the record is hidden: nothing may rely on the TTL (it
    would drop the marker and strand the bytes and the quota)."""
    image = upload(alice)
    faults.fail_once(service, method, after)

    failed = faults.client.delete(f"/images/{image['id']}", headers=alice)
    faults.converge()

    assert failed.status_code == 503
    faults.assert_gone(image["id"], "alice")


def test_abandoned_upload_is_swept_with_its_quota_even_after_ttl(
    faults: Faults, alice: dict[str, str], create: Uploader
) -> None:
    image = create(alice)

    faults.converge()

    faults.assert_gone(image["id"], "alice")


def test_upload_nobody_confirmed_is_ready_once_everything_has_passed(
    faults: Faults, alice: dict[str, str], pending: Uploader
) -> None:
    """Bytes PUT in time, and then neither confirm nor the worker (its message in the
    dead-letter queue): the sweep confirms them, counted once."""
    image = pending(alice)

    faults.converge()
    got = faults.client.get(f"/images/{image['id']}", headers=alice).json()

    assert got["status"] == "ready"
    assert faults.stores.usage("alice") == (1, image["size"])
    assert faults.no_drift("alice")


@FAILURE_MODES
def test_create_fault_then_retry_creates_one_usable_image(
    faults: Faults, alice: dict[str, str], after: bool
) -> None:
    body = {"filename": "a.png", "content_type": "image/png", "size": 10}
    faults.fail_once("dynamodb", "transact_write_items", after)

    failed = faults.client.post("/images", json=body, headers=alice)
    retried = faults.client.post("/images", json=body, headers=alice)
    fetched = faults.client.get(f"/images/{retried.json()['image']['id']}", headers=alice)
    faults.converge()

    assert failed.status_code == 503
    assert retried.status_code == 201
    assert fetched.status_code == 200
    assert faults.no_drift("alice")


@FAILURE_MODES
def test_create_fault_retried_with_idempotency_key_makes_exactly_one_image(
    faults: Faults, alice: dict[str, str], after: bool
) -> None:
    client = faults.client
    body = {"filename": "a.png", "content_type": "image/png", "size": 10}
    headers = {**alice, "Idempotency-Key": "retry-me"}
    faults.fail_once("dynamodb", "transact_write_items", after)

    failed = client.post("/images", json=body, headers=headers)
    retried = client.post("/images", json=body, headers=headers)
    listed = client.get("/images", params={"status": "pending"}, headers=alice).json()["items"]

    assert failed.status_code == 503
    assert retried.status_code == 201
    assert [item["id"] for item in listed] == [retried.json()["image"]["id"]]
    assert faults.no_drift("alice")


@pytest.mark.parametrize(
    ("service", "method"),
    [("dynamodb", "transact_write_items"), ("s3", "put_object"), ("s3", "put_object_tagging")],
)
@FAILURE_MODES
def test_direct_upload_fault_retried_with_idempotency_key_ends_ready_once(
    faults: Faults, alice: dict[str, str], service: str, method: str, after: bool
) -> None:
    client, stores = faults.client, faults.stores
    data = make_image("image/png", width=9, height=7)
    headers = {**alice, "Idempotency-Key": "direct-1"}
    files = {"file": ("d.png", data, "image/png")}
    faults.fail_once(service, method, after)

    client.post("/images/direct", files=files, headers=headers)
    retried = client.post("/images/direct", files=files, headers=headers)
    listed = client.get("/images", headers=alice).json()["items"]
    faults.converge()

    assert retried.status_code == 201
    assert retried.json()["status"] == "ready"
    assert [item["id"] for item in listed] == [retried.json()["id"]]
    assert stores.tags(retried.json()["id"]) == [{"Key": "state", "Value": "ready"}]
    assert stores.usage("alice") == (1, len(data))
    assert faults.no_drift("alice")


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


def test_create_whose_answer_botocore_lost_and_sent_again_is_created_once(
    client: TestClient,
    alice: dict[str, str],
    clients: AwsClients,
    stores: Stores,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A read timeout after DynamoDB committed the create: botocore itself sends the same
    transaction again, whose conditions now find our own writes."""
    endpoint = type(clients.dynamodb._endpoint)
    real = endpoint._do_get_response
    tokens: list[str] = []

    def lose_first_answer(self: Any, request: Any, operation: Any, context: Any) -> Any:
        answer = real(self, request, operation, context)
        if operation.name == "TransactWriteItems":
            tokens.append(json.loads(request.body)["ClientRequestToken"])
            if len(tokens) == 1:
                return None, ReadTimeoutError(endpoint_url=request.url)
        return answer

    monkeypatch.setattr(endpoint, "_do_get_response", lose_first_answer)

    response = client.post(
        "/images",
        json={"filename": "a.png", "content_type": "image/png", "size": 10},
        headers=alice,
    )

    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response.headers
    assert len(tokens) == 2
    assert tokens[0] == tokens[1]  # what makes the repeat a success on DynamoDB itself
    assert stores.usage("alice") == (1, 10)
