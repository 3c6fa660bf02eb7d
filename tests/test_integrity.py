"""A confirmed image never changes or goes missing, and nothing drifts: write-once bytes,
tagging only after the record is ready, a resumable and fair sweep, and reconcile."""

import itertools
import json
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.__main__ import main
from app.config import Settings
from app.domain.errors import Unavailable
from app.domain.records import ImageRecord, Status, format_timestamp
from app.images.maintenance import Maintenance
from app.storage.clients import AwsClients
from app.storage.items import object_key, usage_key
from app.storage.resources import SWEEP_SHARDS
from tests.conftest import SECRET, AppFactory, Clock, Drain, Uploader, bearer
from tests.imagefiles import make_image, not_a_png
from tests.stores import Stores

PutBytes = Callable[[str, bytes, str], None]

OWNER = "0" * 20  # the key prefix ending the ids of records made by hand


# --- Verified bytes are immutable -------------------------------------------------------


def test_put_after_confirm_is_refused_and_the_verified_bytes_stay(
    client: TestClient,
    alice: dict[str, str],
    upload: Uploader,
    put_bytes: PutBytes,
    clients: AwsClients,
    settings: Settings,
    stores: Stores,
) -> None:
    first = make_image("image/png", color="red")
    other = first[::-1]  # other bytes, the same size: what a stale retry would send
    image = upload(alice, data=first)

    with pytest.raises(ClientError) as refused:
        put_bytes(image["id"], other, "image/png")  # exactly what the signed PUT sends
    link = client.get(f"/images/{image['id']}/download", headers=alice).json()["url"]
    stored = clients.s3.get_object(Bucket=settings.bucket, Key=object_key(image["id"]))

    assert refused.value.response["Error"]["Code"] == "PreconditionFailed"
    assert link
    assert stored["Body"].read() == first
    assert stores.tags(image["id"]) == [{"Key": "state", "Value": "ready"}]


def test_confirm_after_the_deadline_of_bytes_put_in_time_is_ready(
    client: TestClient,
    alice: dict[str, str],
    pending: Uploader,
    settings: Settings,
    clock: Clock,
    stores: Stores,
) -> None:
    """Bytes there at all were PUT while the URL lived, which ends by the deadline: the
    deadline only decides when an upload with no bytes is abandoned."""
    image = pending(alice)
    clock.advance(settings.upload_deadline_seconds + 1)

    response = client.post(f"/images/{image['id']}/confirm", headers=alice)

    assert response.status_code == 200
    assert response.json()["status"] == "ready"
    assert stores.tags(image["id"]) == [{"Key": "state", "Value": "ready"}]


def test_confirmed_image_stays_in_sweep_index_until_finished(
    app: FastAPI,
    alice: dict[str, str],
    upload: Uploader,
    settings: Settings,
    clock: Clock,
    stores: Stores,
) -> None:
    image = upload(alice)
    before_grace = app.state.services.maintenance.sweep()
    still_due = stores.sweep_index()
    clock.advance(settings.finish_grace_seconds + 1)

    after_grace = app.state.services.maintenance.sweep()

    assert (before_grace.released, still_due) == (0, [image["id"]])
    assert (after_grace.released, after_grace.removed) == (1, 0)
    assert stores.sweep_index() == []
    assert "due_at" not in (stores.record(image["id"]) or {})


def test_sweep_retags_a_ready_image_whose_tagging_failed(
    app: FastAPI,
    client: TestClient,
    alice: dict[str, str],
    pending: Uploader,
    clients: AwsClients,
    settings: Settings,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
    stores: Stores,
) -> None:
    image = pending(alice)

    def down(*_: Any, **__: Any) -> Any:
        raise ClientError({"Error": {"Code": "SlowDown", "Message": "x"}}, "PutObjectTagging")

    with monkeypatch.context() as patch:
        patch.setattr(clients.s3, "put_object_tagging", down)
        confirmed = client.post(f"/images/{image['id']}/confirm", headers=alice)
    tagged_meanwhile = stores.tags(image["id"])
    clock.advance(settings.finish_grace_seconds + 1)
    app.state.services.maintenance.sweep()

    assert confirmed.status_code == 200
    assert confirmed.json()["status"] == "ready"
    assert tagged_meanwhile == [{"Key": "state", "Value": "pending"}]
    assert stores.tags(image["id"]) == [{"Key": "state", "Value": "ready"}]


# --- The sweep: bounded, fair across shards, resumable ---------------------------------


def _abandon(app: FastAPI, image_id: str, now: int) -> None:
    """A pending upload already past its deadline, with that id (so in that shard)."""
    app.state.services.storage.table.reserve(
        ImageRecord(
            id=image_id,
            user_id="alice",
            filename="a.png",
            content_type="image/png",
            size=10,
            status=Status.PENDING,
            created_at=format_timestamp(app.state.services.clock()),
            due_at=now - 1,
        ),
        now,
        claim=None,
    )


def _ticking_maintenance(app: FastAPI, settings: Settings) -> Maintenance:
    """A sweeper whose monotonic clock moves one second per look: a budget of N seconds
    allows about N items, whatever the machine's speed."""
    ticks = itertools.count()
    services = app.state.services
    return Maintenance(
        services.storage,
        settings,
        services.confirmation,
        services.clock,
        monotonic=lambda: float(next(ticks)),
    )


def test_sweep_with_a_backlog_serves_every_shard_and_reports_what_is_left(
    make_app: AppFactory, stores: Stores
) -> None:
    app = make_app(sweep_batch=5, max_pending_uploads=1000)
    settings: Settings = app.state.services.settings
    now = int(app.state.services.clock().timestamp())
    for n in range(60):
        _abandon(app, f"0{n:023x}{OWNER}", now)  # a backlog in shard 0
    for shard in SWEEP_SHARDS[1:]:
        _abandon(app, f"{shard}{0:023x}{OWNER}", now)

    report = _ticking_maintenance(app, settings).sweep(seconds=40)

    # One round: 5 from shard 0, then one from each of the other 15.
    assert report.removed >= 20
    assert report.complete is False
    assert report.backlog_shards == ["0"]
    assert report.due_seen >= report.removed
    left = stores.sweep_index()
    assert left
    assert all(image_id.startswith("0") for image_id in left)


def test_sweep_resumes_at_the_shard_it_stopped_at(make_app: AppFactory, stores: Stores) -> None:
    app = make_app(sweep_batch=2, max_pending_uploads=1000)
    settings: Settings = app.state.services.settings
    now = int(app.state.services.clock().timestamp())
    for shard in SWEEP_SHARDS:
        for n in range(3):
            _abandon(app, f"{shard}{n:023x}{OWNER}", now)

    first = _ticking_maintenance(app, settings).sweep(seconds=12)
    second = _ticking_maintenance(app, settings).sweep()

    assert first.complete is False
    assert second.started_at_shard != SWEEP_SHARDS[0]
    assert second.started_at_shard in first.backlog_shards
    assert second.complete is True
    assert first.removed + second.removed == 3 * len(SWEEP_SHARDS)
    assert stores.sweep_index() == []


def test_sweep_tries_a_failing_item_once_per_run_and_finishes_the_rest(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch, stores: Stores
) -> None:
    now = int(app.state.services.clock().timestamp())
    stuck, fine = "a" + "0" * 23 + OWNER, "a" + "1" * 23 + OWNER
    _abandon(app, stuck, now)
    _abandon(app, fine, now)
    objects = app.state.services.storage.objects
    real_delete = objects.delete

    def delete(record: ImageRecord) -> None:
        if record.id == stuck:
            raise Unavailable("S3 is down for this one")
        real_delete(record)

    monkeypatch.setattr(objects, "delete", delete)

    report = app.state.services.maintenance.sweep()

    assert (report.removed, report.failed, report.complete) == (1, 1, True)
    assert stores.sweep_index() == [stuck]


# --- Reconcile -------------------------------------------------------------------------


def test_reconcile_finds_no_drift_after_normal_use(
    app: FastAPI, client: TestClient, alice: dict[str, str], upload: Uploader, create: Uploader
) -> None:
    kept = upload(alice)
    gone = upload(alice)
    waiting = create(alice)
    client.delete(f"/images/{gone['id']}", headers=alice)

    result = app.state.services.maintenance.reconcile("alice")

    assert (result.drift, result.fixed) == (False, False)
    size = kept["size"] + waiting["size"]
    assert result.counted.counts() == (2, size, 1, waiting["size"])


def test_reconcile_fixes_drifted_usage(
    app: FastAPI,
    alice: dict[str, str],
    upload: Uploader,
    clients: AwsClients,
    settings: Settings,
    stores: Stores,
) -> None:
    image = upload(alice)
    clients.dynamodb.update_item(
        TableName=settings.table,
        Key=usage_key("alice"),
        UpdateExpression="ADD images :n, bytes :b",
        ExpressionAttributeValues={":n": {"N": "7"}, ":b": {"N": "12345"}},
    )

    result = app.state.services.maintenance.reconcile("alice")

    assert (result.drift, result.fixed) == (True, True)
    assert stores.usage("alice") == (1, image["size"])
    assert app.state.services.maintenance.reconcile("alice").drift is False


def test_reconcile_never_overwrites_a_change_made_while_it_counted(
    app: FastAPI,
    client: TestClient,
    alice: dict[str, str],
    upload: Uploader,
    create: Uploader,
    clients: AwsClients,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    stores: Stores,
) -> None:
    upload(alice)
    clients.dynamodb.update_item(  # drift, so that reconcile wants to write
        TableName=settings.table,
        Key=usage_key("alice"),
        UpdateExpression="ADD images :n",
        ExpressionAttributeValues={":n": {"N": "5"}},
    )
    listing = app.state.services.storage.listing
    real_owned_by = listing.owned_by
    raced: list[str] = []

    def owned_by(user_id: str) -> Any:
        records = list(real_owned_by(user_id))
        if not raced:  # a create lands between the count and the write
            raced.append(create(alice)["id"])
        return iter(records)

    monkeypatch.setattr(listing, "owned_by", owned_by)

    result = app.state.services.maintenance.reconcile("alice")

    assert result.fixed is True
    assert result.counted.images == 2  # counted again, the racing create included
    assert stores.usage("alice")[0] == 2


def test_reconcile_waits_until_usage_has_settled(make_app: AppFactory, clock: Clock) -> None:
    app = make_app(reconcile_settle_seconds=10)
    client = TestClient(app)
    headers = bearer(app.state.services.settings, "alice")
    client.post(
        "/images",
        headers=headers,
        json={"filename": "a.png", "content_type": "image/png", "size": 5},
    )
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(seconds)

    services = app.state.services
    maintenance = Maintenance(
        services.storage, services.settings, services.confirmation, services.clock, sleep=sleep
    )

    result = maintenance.reconcile("alice")

    assert len(slept) == 1
    assert 9 <= slept[0] <= 10
    assert result.drift is False


# --- Uploads whose worker never came -------------------------------------------------


def test_sweep_confirms_bytes_put_in_time_whose_message_dead_lettered(
    app: FastAPI,
    client: TestClient,
    alice: dict[str, str],
    pending: Uploader,
    settings: Settings,
    clock: Clock,
    stores: Stores,
) -> None:
    image = pending(alice)  # nobody confirms, and the worker's message is lost
    clock.advance(settings.upload_deadline_seconds + 1)

    report = app.state.services.maintenance.sweep()
    got = client.get(f"/images/{image['id']}", headers=alice).json()

    assert (report.confirmed, report.removed) == (1, 0)
    assert got["status"] == "ready"
    assert stores.tags(image["id"]) == [{"Key": "state", "Value": "ready"}]
    assert stores.usage("alice") == (1, image["size"])
    assert app.state.services.maintenance.reconcile("alice").drift is False


def test_sweep_rejects_bad_bytes_put_in_time_and_keeps_the_reason_for_a_while(
    app: FastAPI,
    client: TestClient,
    alice: dict[str, str],
    create: Uploader,
    put_bytes: PutBytes,
    settings: Settings,
    clock: Clock,
    stores: Stores,
) -> None:
    image = create(alice, data=not_a_png())
    put_bytes(image["id"], not_a_png(), "image/png")
    clock.advance(settings.upload_deadline_seconds + 1)

    first = app.state.services.maintenance.sweep()
    got = client.get(f"/images/{image['id']}", headers=alice).json()
    clock.advance(settings.finish_grace_seconds + 1)
    second = app.state.services.maintenance.sweep()

    assert (first.rejected, first.removed) == (1, 0)
    assert got["status"] == "rejected"
    assert "not a valid image/png" in got["reason"]
    assert second.removed == 1
    assert stores.stored(image["id"]) == (False, False)
    assert stores.usage("alice") == (0, 0)


def test_redrive_sends_dead_letters_back_and_the_worker_makes_their_variants(
    app: FastAPI,
    client: TestClient,
    alice: dict[str, str],
    upload: Uploader,
    drain: Drain,
    clients: AwsClients,
    settings: Settings,
    clock: Clock,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    image = upload(alice)
    sqs = clients.sqs
    queue = sqs.get_queue_url(QueueName=settings.queue)["QueueUrl"]
    dead = sqs.get_queue_url(QueueName=f"{settings.queue}-dead")["QueueUrl"]
    (message,) = sqs.receive_message(QueueUrl=queue)["Messages"]  # what SQS does after
    sqs.send_message(QueueUrl=dead, MessageBody=message["Body"])  # five failed receives
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    clock.advance(settings.finish_grace_seconds + 1)
    app.state.services.maintenance.sweep()  # releases it: its variants stay pending
    monkeypatch.setenv("IMAGES_JWT_SECRET", SECRET)

    main(["redrive"])
    printed = json.loads(capsys.readouterr().out)
    drain()
    got = client.get(f"/images/{image['id']}", headers=alice).json()

    assert printed == {"moved": 1}
    assert got["variants"]["thumb"]["status"] == "ready"
    assert sqs.receive_message(QueueUrl=dead).get("Messages", []) == []


def test_sweep_gives_up_refused_bytes_that_could_not_be_deleted(
    app: FastAPI,
    client: TestClient,
    alice: dict[str, str],
    create: Uploader,
    put_bytes: PutBytes,
    settings: Settings,
    clock: Clock,
    stores: Stores,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where S3 cannot delete conditionally (LocalStack), refused bytes stay: once the
    upload's grace has passed, the sweep removes them with it, not confirm them again."""
    image = create(alice, data=not_a_png())
    put_bytes(image["id"], not_a_png(), "image/png")
    monkeypatch.setattr(app.state.services.storage.objects, "delete_original", lambda *_: False)
    client.post(f"/images/{image['id']}/confirm", headers=alice)
    clock.advance(settings.upload_deadline_seconds + settings.finish_grace_seconds + 1)

    report = app.state.services.maintenance.sweep()

    assert (report.removed, report.rejected) == (1, 0)
    assert stores.stored(image["id"]) == (False, False)
    assert stores.usage("alice") == (0, 0)
