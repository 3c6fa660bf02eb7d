"""Attacks on the upload pipeline, written by a reviewer trying to break it: forced
interleavings between confirm, the worker, delete and the sweep; faults at each AWS
call, then everything that can happen later at its worst; hostile bytes. Each test
states the promise and forces the order of events that would break it. The defects
these first found are fixed; the tests hold them fixed."""

import contextlib
import io
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from app.config import Settings
from app.domain.errors import Unavailable
from app.domain.records import ImageRecord, Status
from app.domain.variants import VariantSpec
from app.pipeline import worker as worker_module
from app.pipeline.worker import Worker
from app.storage.clients import AwsClients
from tests.conftest import Clock, Drain, Uploader, new_image, refusal
from tests.imagefiles import make_image, not_a_png
from tests.stores import Stores

PutBytes = Callable[[str, bytes, str], None]
KEY = {"Idempotency-Key": "breakit-key-1"}


# --- Helpers --------------------------------------------------------------------------


def _unavailable(operation: str = "op") -> ClientError:
    return ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "down"}}, operation)


def redeliver(worker: Worker, clients: AwsClients, settings: Settings, rounds: int = 6) -> None:
    """Deliver every queued message to the worker until the queue is empty; a message the
    worker reports failed comes back at once (as it would after its visibility timeout)."""
    url = clients.sqs.get_queue_url(QueueName=settings.queue)["QueueUrl"]
    for _ in range(rounds):
        messages = clients.sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=0
        ).get("Messages", [])
        if not messages:
            return
        answer = worker.handle(
            {"Records": [{"messageId": m["MessageId"], "body": m["Body"]} for m in messages]}
        )
        failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
        for message in messages:
            if message["MessageId"] not in failed:
                clients.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def settle(
    app: FastAPI,
    worker: Worker,
    clients: AwsClients,
    settings: Settings,
    clock: Clock,
    stores: Stores,
) -> None:
    """Everything that happens later, at its worst: messages (redelivered until they
    succeed), every deadline and grace period passing, DynamoDB's TTL, sweeps."""
    redeliver(worker, clients, settings)
    for _ in range(3):
        clock.advance(
            settings.upload_deadline_seconds
            + settings.idempotency_ttl_seconds
            + settings.finish_grace_seconds
            + 1
        )
        stores.fire_ttl(int(clock.now.timestamp()))
        app.state.services.maintenance.sweep()
        redeliver(worker, clients, settings)


def problems(app: FastAPI, stores: Stores, users: tuple[str, ...] = ("alice",)) -> list[str]:
    """Every broken invariant once things settled (empty: all held)."""
    found = []
    records = {}
    for user in users:
        for record in app.state.services.storage.listing.owned_by(user):
            records[record.id] = record
        if app.state.services.maintenance.reconcile(user).drift:
            found.append(f"usage of {user} drifted")
    for image_id, record in records.items():
        if record.status == Status.DELETING:
            found.append(f"{image_id} stuck deleting")
        if record.status == Status.READY:
            if not stores.has_object(image_id):
                found.append(f"{image_id} is ready without its original")
            elif stores.tags(image_id) != [{"Key": "state", "Value": "ready"}]:
                found.append(f"{image_id} is ready but its original is still tagged pending")
    for key in stores.keys():  # noqa: SIM118 - the bucket's keys, not a dict's
        _, _, image_id, name = key.split("/")  # u/<owner>/<image id>/<name>
        record = records.get(image_id)
        if record is None:
            found.append(f"orphan object {key}")
        elif name != "original" and record.status != Status.READY:
            found.append(f"variant {key} of a {record.status} image")
    if stores.sweep_index():
        found.append(f"work left in the sweep index: {stores.sweep_index()}")
    return found


@pytest.fixture
def settled(
    app: FastAPI,
    worker: Worker,
    clients: AwsClients,
    settings: Settings,
    clock: Clock,
    stores: Stores,
) -> Callable[[], list[str]]:
    """settled(): let everything converge, then what is broken."""

    def run() -> list[str]:
        settle(app, worker, clients, settings, clock, stores)
        return problems(app, stores)

    return run


@pytest.fixture
def fail_call(clients: AwsClients, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """fail_call(service, method, nth=1, after=False): the nth call of that method from
    now on fails; with `after`, it reaches AWS first and only its answer is lost."""

    def arm(service: str, method: str, nth: int = 1, after: bool = False) -> list[str]:
        fired: list[str] = []
        client = getattr(clients, service)
        real = getattr(client, method)
        seen = [0]

        def failing(*args: Any, **kwargs: Any) -> Any:
            seen[0] += 1
            if seen[0] != nth:
                return real(*args, **kwargs)
            monkeypatch.setattr(client, method, real)  # once only
            fired.append(method)
            if after:
                real(*args, **kwargs)
                raise ReadTimeoutError(endpoint_url="http://aws")
            raise _unavailable(method)

        monkeypatch.setattr(client, method, failing)
        return fired

    return arm


# --- Faults at every AWS call of the worker ------------------------------------------

GOOD_WORKER_CALLS = [
    ("dynamodb", "get_item", 1),
    ("s3", "get_object", 1),
    ("dynamodb", "transact_write_items", 1),
    ("s3", "put_object_tagging", 1),
    ("s3", "put_object", 1),
    ("s3", "put_object", 2),
    ("s3", "put_object_tagging", 2),
    ("dynamodb", "update_item", 1),
]
BAD_WORKER_CALLS = [
    ("dynamodb", "get_item", 1),
    ("s3", "get_object", 1),
    ("dynamodb", "update_item", 1),
    ("s3", "delete_object", 1),
]
MODES = pytest.mark.parametrize("after", [False, True], ids=["before-call", "answer-lost"])


@MODES
@pytest.mark.parametrize(("service", "method", "nth"), GOOD_WORKER_CALLS)
def test_worker_fault_on_good_bytes_converges_ready(
    client: TestClient,
    alice: dict[str, str],
    pending: Uploader,
    fail_call: Callable[..., None],
    settled: Callable[[], list[str]],
    service: str,
    method: str,
    nth: int,
    after: bool,
) -> None:
    image = pending(alice)
    fired = fail_call(service, method, nth, after)

    broken = settled()
    got = client.get(f"/images/{image['id']}", headers=alice).json()

    assert fired == [method]
    assert broken == []
    assert got["status"] == "ready"
    assert got["variants"]["thumb"]["status"] == "ready"


@MODES
@pytest.mark.parametrize(("service", "method", "nth"), BAD_WORKER_CALLS)
def test_worker_fault_on_bad_bytes_converges_removed(
    alice: dict[str, str],
    create: Uploader,
    put_bytes: PutBytes,
    fail_call: Callable[..., None],
    settled: Callable[[], list[str]],
    stores: Stores,
    service: str,
    method: str,
    nth: int,
    after: bool,
) -> None:
    bad = not_a_png(300)
    image = create(alice, data=bad)
    put_bytes(image["id"], bad, "image/png")
    fired = fail_call(service, method, nth, after)

    broken = settled()

    assert fired == [method]
    assert broken == []
    assert stores.stored(image["id"]) == (False, False)
    assert stores.usage("alice") == (0, 0)


# --- Variants written while a delete ran ----------------------------------------------


def test_variants_written_as_a_delete_ran_are_removed_though_cleanup_failed(
    app: FastAPI,
    client: TestClient,
    alice: dict[str, str],
    pending: Uploader,
    worker: Worker,
    clients: AwsClients,
    monkeypatch: pytest.MonkeyPatch,
    settled: Callable[[], list[str]],
    stores: Stores,
) -> None:
    """The worker renders a ready image; meanwhile its owner deletes it (204, every key
    removed). The worker then writes both variants, record_variants fails its
    condition, and the worker's cleanup (DeleteObjects) hits a transient S3 error, so
    the message is retried. On the retry the record is gone: the variants (untagged,
    outside images/, with no notification and no lifecycle rule) must go too, or they
    would stay for ever after a delete that answered 204."""
    image = pending(alice)
    upload = stores.announced(image["id"])
    objects = app.state.services.storage.objects
    real_put_variant = objects.put_variant
    real_delete_objects = clients.s3.delete_objects
    armed: list[bool] = []

    def deleted_then_put(image_id: str, name: str, spec: VariantSpec, data: bytes) -> None:
        if not armed:  # while the worker rendered, the owner deleted the image
            assert client.delete(f"/images/{image_id}", headers=alice).status_code == 204
            armed.append(True)
        real_put_variant(image_id, name, spec, data)

    def cleanup_fails_once(**kwargs: Any) -> Any:
        if armed and armed[-1]:
            armed.append(False)
            raise _unavailable("DeleteObjects")
        return real_delete_objects(**kwargs)

    monkeypatch.setattr(objects, "put_variant", deleted_then_put)
    monkeypatch.setattr(clients.s3, "delete_objects", cleanup_fails_once)

    with pytest.raises(Unavailable):
        worker.process(upload)  # the message fails: SQS delivers it again
    again = worker.process(upload)
    broken = settled()

    assert again == "orphan removed"
    assert stores.record(image["id"]) is None
    assert stores.keys() == []
    assert broken == []


def test_variants_written_as_a_delete_ran_are_removed_though_tagging_failed(
    app: FastAPI,
    client: TestClient,
    alice: dict[str, str],
    pending: Uploader,
    worker: Worker,
    clients: AwsClients,
    monkeypatch: pytest.MonkeyPatch,
    stores: Stores,
) -> None:
    """Same root cause through another step: the owner deletes (204) while the worker
    renders, the worker writes the variants, then its PutObjectTagging of the original
    gets a transient SlowDown (or the Lambda times out there). Redelivered, the message
    finds no record: the two variants of the deleted image are removed with it."""
    image = pending(alice)
    upload = stores.announced(image["id"])
    objects = app.state.services.storage.objects
    real_tag = objects.tag_ready
    deleted: list[bool] = []
    real_put_variant = objects.put_variant

    def deleted_then_put(image_id: str, name: str, spec: VariantSpec, data: bytes) -> None:
        if not deleted:  # while the worker rendered, the owner deleted the image
            assert client.delete(f"/images/{image_id}", headers=alice).status_code == 204
            deleted.append(True)
        real_put_variant(image_id, name, spec, data)

    def tag_fails_after_delete(image_id: str, also: tuple[str, str] | None = None) -> bool:
        if deleted:
            raise Unavailable("Storage is busy, retry shortly (SlowDown)")
        return real_tag(image_id, also)

    monkeypatch.setattr(objects, "put_variant", deleted_then_put)
    monkeypatch.setattr(objects, "tag_ready", tag_fails_after_delete)

    with pytest.raises(Unavailable):
        worker.process(upload)
    again = worker.process(upload)

    assert again == "orphan removed"
    assert stores.keys() == []


# --- An Idempotency-Key replay signs no URL past the deadline --------------------------


def test_replayed_create_signs_no_url_past_the_upload_deadline(
    app: FastAPI,
    client: TestClient,
    alice: dict[str, str],
    settings: Settings,
    clock: Clock,
    stores: Stores,
) -> None:
    """The sweep relies on "an upload URL expires by the deadline, so nothing can arrive
    after this looked" (maintenance.py). A replay of POST /images with the same
    Idempotency-Key signs a fresh URL for the full upload_url_ttl_seconds, whatever is
    left of the record's deadline, would answer a URL living 14 minutes past it to a
    replay one minute before the deadline. It must expire by the deadline."""
    body = new_image()
    first = client.post("/images", json=body, headers={**alice, **KEY})
    image_id = first.json()["image"]["id"]
    deadline = int(stores.record(image_id)["due_at"]["N"])
    clock.advance(settings.upload_deadline_seconds - 60)

    replay = client.post("/images", json=body, headers={**alice, **KEY})
    expires = datetime.fromisoformat(replay.json()["upload"]["expires_at"])

    assert replay.status_code == 201
    assert replay.headers["idempotent-replayed"] == "true"
    assert expires.timestamp() <= deadline


# --- Bytes a delete will never see ----------------------------------------------------


def test_put_landing_during_a_delete_is_removed(
    app: FastAPI,
    client: TestClient,
    alice: dict[str, str],
    create: Uploader,
    put_bytes: PutBytes,
    drain: Drain,
    monkeypatch: pytest.MonkeyPatch,
    settled: Callable[[], list[str]],
    stores: Stores,
) -> None:
    """DELETE of a fresh upload whose URL still lives: step 2 removes every key; right
    then the client's (retried) PUT lands, and S3 notifies the worker, which reads the
    record while it is still `deleting`. Step 3 removes the record. Nothing would ever
    look at those bytes again (no record, no message, in no quota): the worker removes
    the bytes it was told of."""
    data = make_image()
    image = create(alice, data=data)
    objects = app.state.services.storage.objects
    real_delete = objects.delete
    outcomes: list[Any] = []

    def delete_then_put(record: ImageRecord) -> None:
        real_delete(record)
        put_bytes(record.id, data, "image/png")  # the presigned PUT, still valid
        outcomes.extend(drain())  # the worker sees the record `deleting`

    with monkeypatch.context() as patch:
        patch.setattr(objects, "delete", delete_then_put)
        assert client.delete(f"/images/{image['id']}", headers=alice).status_code == 204
    broken = settled()

    assert outcomes == [{"batchItemFailures": []}]  # acknowledged
    assert stores.record(image["id"]) is None
    assert broken == []


# --- A stale verdict on an image ready since --------------------------------------------


def test_confirm_holding_refused_bytes_answers_the_image_ready_since(
    app: FastAPI,
    client: TestClient,
    alice: dict[str, str],
    create: Uploader,
    put_bytes: PutBytes,
    drain: Drain,
    monkeypatch: pytest.MonkeyPatch,
    stores: Stores,
) -> None:
    """Confirm reads the first (bad) bytes. Before it judges them, the worker refuses and
    removes them, the client PUTs valid bytes and the worker confirms those: the image
    is ready. Confirm's verdict on the old bytes then loses mark_rejected's condition
    (nothing is written, rightly), and confirm answers what the image is now: ready.
    A 422 would have the client re-upload or delete an image that is fine."""
    good = make_image("image/png")
    image = create(alice, data=good)
    put_bytes(image["id"], not_a_png(len(good)), "image/png")
    objects = app.state.services.storage.objects
    real_read_prefix = objects.read_prefix

    def read_then_overtaken(*args: Any) -> Any:
        old = real_read_prefix(*args)
        drain()  # the worker refuses and removes the bad bytes
        put_bytes(image["id"], good, "image/png")
        drain()  # ...and confirms the good ones
        return old

    monkeypatch.setattr(objects, "read_prefix", read_then_overtaken)

    answer = client.post(f"/images/{image['id']}/confirm", headers=alice)
    current = stores.record(image["id"])

    assert current["status"]["S"] == "ready"
    assert answer.status_code == 200


# --- Faults at every AWS call of confirm's refusal, the sweep, direct uploads ----------


@MODES
@pytest.mark.parametrize(
    ("service", "method"),
    [
        ("dynamodb", "get_item"),
        ("s3", "get_object"),
        ("dynamodb", "update_item"),
        ("s3", "delete_object"),
    ],
)
def test_confirm_refusal_fault_then_retry_ends_rejected_then_removed(
    client: TestClient,
    alice: dict[str, str],
    create: Uploader,
    put_bytes: PutBytes,
    fail_call: Callable[..., None],
    settled: Callable[[], list[str]],
    clients: AwsClients,
    settings: Settings,
    stores: Stores,
    service: str,
    method: str,
    after: bool,
) -> None:
    bad = not_a_png(300)
    image = create(alice, data=bad)
    put_bytes(image["id"], bad, "image/png")
    url = clients.sqs.get_queue_url(QueueName=settings.queue)["QueueUrl"]
    clients.sqs.purge_queue(QueueUrl=url)  # only confirm judges these bytes
    fired = fail_call(service, method, 1, after)

    first = client.post(f"/images/{image['id']}/confirm", headers=alice)
    second = client.post(f"/images/{image['id']}/confirm", headers=alice)
    got = client.get(f"/images/{image['id']}", headers=alice).json()
    broken = settled()

    assert fired == [method]
    assert first.status_code in (422, 503)
    assert refusal(second) == (422, "invalid_image")
    assert got["status"] == "rejected"
    assert broken == []
    assert stores.stored(image["id"]) == (False, False)


SWEEP_CONFIRM_CALLS = [
    ("dynamodb", "query", 1),
    ("s3", "get_object", 1),
    ("dynamodb", "transact_write_items", 1),
    ("s3", "put_object_tagging", 1),
]


@MODES
@pytest.mark.parametrize(("service", "method", "nth"), SWEEP_CONFIRM_CALLS)
def test_sweep_late_confirm_fault_converges_ready(
    app: FastAPI,
    client: TestClient,
    alice: dict[str, str],
    pending: Uploader,
    fail_call: Callable[..., None],
    clients: AwsClients,
    settings: Settings,
    clock: Clock,
    stores: Stores,
    settled: Callable[[], list[str]],
    service: str,
    method: str,
    nth: int,
    after: bool,
) -> None:
    """Bytes PUT in time whose message was lost: the sweep confirms them, through faults."""
    image = pending(alice)
    url = clients.sqs.get_queue_url(QueueName=settings.queue)["QueueUrl"]
    clients.sqs.purge_queue(QueueUrl=url)
    clock.advance(settings.upload_deadline_seconds + 1)
    fired = fail_call(service, method, nth, after)

    with contextlib.suppress(Unavailable):  # a failed index query ends this run only
        app.state.services.maintenance.sweep()
    broken = settled()
    got = client.get(f"/images/{image['id']}", headers=alice).json()

    assert fired == [method]
    assert broken == []
    assert got["status"] == "ready"


SWEEP_ABANDON_CALLS = [
    ("s3", "get_object", 1),
    ("dynamodb", "update_item", 1),
    ("s3", "delete_objects", 1),
    ("dynamodb", "transact_write_items", 1),
]


@MODES
@pytest.mark.parametrize(("service", "method", "nth"), SWEEP_ABANDON_CALLS)
def test_sweep_abandon_fault_converges_gone(
    app: FastAPI,
    alice: dict[str, str],
    create: Uploader,
    fail_call: Callable[..., None],
    settings: Settings,
    clock: Clock,
    stores: Stores,
    settled: Callable[[], list[str]],
    service: str,
    method: str,
    nth: int,
    after: bool,
) -> None:
    image = create(alice)
    clock.advance(settings.upload_deadline_seconds + 1)
    fired = fail_call(service, method, nth, after)

    app.state.services.maintenance.sweep()
    broken = settled()

    assert fired == [method]
    assert broken == []
    assert stores.stored(image["id"]) == (False, False)
    assert stores.usage("alice") == (0, 0)


@MODES
@pytest.mark.parametrize(
    ("service", "method", "nth"),
    [
        ("dynamodb", "transact_write_items", 1),
        ("s3", "put_object", 1),
        ("dynamodb", "transact_write_items", 2),
        ("s3", "put_object_tagging", 1),
    ],
)
def test_direct_upload_fault_then_replay_makes_one_ready_image(
    client: TestClient,
    alice: dict[str, str],
    fail_call: Callable[..., None],
    settled: Callable[[], list[str]],
    stores: Stores,
    service: str,
    method: str,
    nth: int,
    after: bool,
) -> None:
    data = make_image("image/png")
    files = {"file": ("a.png", data, "image/png")}
    fired = fail_call(service, method, nth, after)

    first = client.post("/images/direct", files=files, headers={**alice, **KEY})
    again = client.post("/images/direct", files=files, headers={**alice, **KEY})
    broken = settled()
    listed = client.get("/images", headers=alice).json()["items"]

    assert fired == [method]
    assert first.status_code in (201, 503)
    assert again.status_code == 201
    assert again.json()["status"] == "ready"
    assert [item["id"] for item in listed] == [again.json()["id"]]
    assert broken == []


@MODES
def test_create_lost_answer_then_replay_makes_one_image(
    client: TestClient,
    alice: dict[str, str],
    fail_call: Callable[..., None],
    put_bytes: PutBytes,
    settled: Callable[[], list[str]],
    stores: Stores,
    after: bool,
) -> None:
    data = make_image()
    body = new_image(data=data)
    fail_call("dynamodb", "transact_write_items", 1, after)

    first = client.post("/images", json=body, headers={**alice, **KEY})
    again = client.post("/images", json=body, headers={**alice, **KEY})
    image_id = again.json()["image"]["id"]
    put_bytes(image_id, data, "image/png")
    confirmed = client.post(f"/images/{image_id}/confirm", headers=alice)
    broken = settled()

    assert first.status_code == 503
    assert again.status_code == 201
    assert confirmed.status_code == 200
    assert stores.usage("alice") == (1, len(data))
    assert broken == []


# --- A header past the verified prefix -------------------------------------------------


def _jpeg_with_large_icc_profile(profile_bytes: int = 100_000) -> bytes:
    """A valid JPEG carrying a large embedded colour profile (print profiles are often
    0.5-2 MB): JPEG splits it over APP2 segments, all of them before the frame header."""
    buffer = io.BytesIO()
    profile = bytes(range(256)) * (profile_bytes // 256)
    Image.new("RGB", (64, 48), "teal").save(buffer, "JPEG", icc_profile=profile)
    return buffer.getvalue()


def test_confirm_reads_on_to_a_jpeg_frame_header_past_the_prefix(
    client: TestClient,
    alice: dict[str, str],
    pending: Uploader,
    settings: Settings,
    stores: Stores,
) -> None:
    """Confirm (and the worker, and the sweep) judge only the first verify_prefix_bytes
    (64 KiB). A JPEG's SOF comes after every APPn segment; a 100 KB embedded ICC profile
    (or large EXIF/XMP/Photoshop blocks) pushes it past the prefix: confirm reads on (a
    few ranged reads, up to verify_max_bytes) instead of refusing a valid image."""
    data = _jpeg_with_large_icc_profile()
    assert len(data) > settings.verify_prefix_bytes
    image = pending(alice, "image/jpeg", data)

    answer = client.post(f"/images/{image['id']}/confirm", headers=alice)

    assert answer.status_code == 200, answer.json()
    assert stores.has_object(image["id"])


# --- A JPEG's size as its variants show it -------------------------------------------


def test_sideways_jpeg_reports_the_dimensions_its_variants_have(
    client: TestClient, alice: dict[str, str], pending: Uploader, drain: Drain
) -> None:
    """A phone photo stored sideways with EXIF Orientation 6 (what most phones write for
    portrait shots). Verification reports the SOF's stored size (600x400) while every
    variant is rendered upright (exif_transpose: 400x600), as HEIF reports its displayed
    size (irot applied). width and height are the displayed ones, or a client lays out
    a portrait preview in a landscape box."""
    exif = Image.Exif()
    exif[0x0112] = 6
    image = pending(alice, "image/jpeg", make_image("image/jpeg", width=600, height=400, exif=exif))
    drain()

    got = client.get(f"/images/{image['id']}", headers=alice).json()
    preview = got["variants"]["preview"]

    assert (preview["width"], preview["height"]) == (400, 600)
    assert (got["width"], got["height"]) == (400, 600)


# --- Interleavings ------------------------------------------------------------------


@pytest.mark.parametrize("same_bytes", [True, False], ids=["same-bytes", "other-bytes"])
def test_late_messages_after_delete_and_a_re_put_leave_nothing(
    client: TestClient,
    alice: dict[str, str],
    upload: Uploader,
    put_bytes: PutBytes,
    settled: Callable[[], list[str]],
    stores: Stores,
    same_bytes: bool,
) -> None:
    """Ready image whose message is still queued; deleted (204); the still-valid URL PUTs
    bytes again under the id; then both messages arrive."""
    data = make_image(color="red")
    image = upload(alice, data=data)
    assert client.delete(f"/images/{image['id']}", headers=alice).status_code == 204
    again = data if same_bytes else make_image(color="blue")
    assert len(again) == len(data) or not same_bytes
    put_bytes(image["id"], again, "image/png")

    broken = settled()

    assert broken == []
    assert stores.keys() == []
    assert stores.usage("alice") == (0, 0)


def test_out_of_order_messages_after_a_re_put_end_ready_once(
    client: TestClient,
    alice: dict[str, str],
    create: Uploader,
    put_bytes: PutBytes,
    worker: Worker,
    settled: Callable[[], list[str]],
    stores: Stores,
) -> None:
    """Bad bytes (message 1), refused by confirm; good bytes PUT (message 2). Message 2 is
    handled first, then message 1 arrives late (its ETag names bytes long gone)."""
    good = make_image()
    image = create(alice, data=good)
    put_bytes(image["id"], not_a_png(len(good)), "image/png")
    first = stores.announced(image["id"])
    assert refusal(client.post(f"/images/{image['id']}/confirm", headers=alice)) == (
        422,
        "invalid_image",
    )
    put_bytes(image["id"], good, "image/png")
    second = stores.announced(image["id"])

    outcomes = [worker.process(second), worker.process(first), worker.process(second)]
    broken = settled()

    assert outcomes == ["done", "already done", "already done"]
    assert broken == []
    assert stores.usage("alice") == (1, len(good))


def test_sweep_racing_a_client_confirm_past_the_deadline_counts_once(
    app: FastAPI,
    client: TestClient,
    alice: dict[str, str],
    pending: Uploader,
    clients: AwsClients,
    settings: Settings,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
    settled: Callable[[], list[str]],
    stores: Stores,
) -> None:
    """The sweep lists the overdue upload and reads its bytes; the client's confirm
    completes right then; the sweep's confirm loses the condition and takes the winner."""
    image = pending(alice)
    url = clients.sqs.get_queue_url(QueueName=settings.queue)["QueueUrl"]
    clients.sqs.purge_queue(QueueUrl=url)
    clock.advance(settings.upload_deadline_seconds + 1)
    objects = app.state.services.storage.objects
    real_read_prefix = objects.read_prefix
    answers: list[int] = []

    def read_then_client_confirms(*args: Any) -> Any:
        read = real_read_prefix(*args)
        if not answers:
            answers.append(0)
            answers.append(client.post(f"/images/{image['id']}/confirm", headers=alice).status_code)
        return read

    with monkeypatch.context() as patch:
        patch.setattr(objects, "read_prefix", read_then_client_confirms)
        report = app.state.services.maintenance.sweep()
    broken = settled()

    assert answers == [0, 200]
    assert (report.confirmed, report.failed, report.removed) == (1, 0, 0)
    assert stores.usage("alice") == (1, image["size"])
    assert broken == []


def test_delete_between_the_sweeps_retag_and_release_is_final(
    app: FastAPI,
    client: TestClient,
    alice: dict[str, str],
    upload: Uploader,
    settings: Settings,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
    settled: Callable[[], list[str]],
    stores: Stores,
) -> None:
    image = upload(alice)
    clock.advance(settings.finish_grace_seconds + 1)
    objects = app.state.services.storage.objects
    real_tag = objects.tag_ready

    def tag_then_deleted(image_id: str, also: tuple[str, str] | None = None) -> bool:
        tagged = real_tag(image_id, also)
        assert client.delete(f"/images/{image_id}", headers=alice).status_code == 204
        return tagged

    with monkeypatch.context() as patch:
        patch.setattr(objects, "tag_ready", tag_then_deleted)
        app.state.services.maintenance.sweep()
    broken = settled()

    assert broken == []
    assert stores.stored(image["id"]) == (False, False)
    assert refusal(client.get(f"/images/{image['id']}", headers=alice)) == (404, "not_found")


@pytest.mark.parametrize(
    ("data", "declared", "stored_type"),
    [
        (b"", "image/png", "image/png"),
        (make_image("image/png")[:40], "image/png", "image/png"),
        (make_image("image/jpeg"), "image/png", "image/png"),
        (make_image("image/png"), "image/png", "image/jpeg"),
        (
            b"\xff\xd8\xff\xc0\x00\x11\x08\xff\xff\xff\xff\x03" + bytes(300),
            "image/jpeg",
            "image/jpeg",
        ),
        (b"GIF89a" + bytes(300), "image/gif", "image/gif"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 " + bytes(300), "image/webp", "image/webp"),
    ],
    ids=[
        "zero-bytes",
        "truncated",
        "type-mismatch",
        "stored-type-differs",
        "huge-jpeg",
        "gif-no-descriptor",
        "webp-bad-riff",
    ],
)
@pytest.mark.parametrize("judge", ["confirm", "worker"])
def test_hostile_bytes_are_refused_with_4xx_and_removed(
    client: TestClient,
    alice: dict[str, str],
    put_bytes: PutBytes,
    drain: Drain,
    settled: Callable[[], list[str]],
    stores: Stores,
    data: bytes,
    declared: str,
    stored_type: str,
    judge: str,
) -> None:
    size = max(len(data), 1) if data else 100  # zero bytes: declared 100, uploaded 0
    body = {"filename": "x", "content_type": declared, "size": size}
    image = client.post("/images", json=body, headers=alice).json()["image"]
    put_bytes(image["id"], data, stored_type)

    if judge == "confirm":
        answer = client.post(f"/images/{image['id']}/confirm", headers=alice)
        assert refusal(answer) == (422, "invalid_image"), answer.text
    else:
        assert drain() == [{"batchItemFailures": []}]
    got = client.get(f"/images/{image['id']}", headers=alice).json()
    broken = settled()

    assert got["status"] == "rejected"
    assert got["reason"]
    assert broken == []
    assert stores.stored(image["id"]) == (False, False)


# --- A late failure never undoes another delivery's variants ----------------------------


def test_a_late_failed_render_never_undoes_variants_already_made(
    app: FastAPI,
    client: TestClient,
    alice: dict[str, str],
    upload: Uploader,
    worker: Worker,
    monkeypatch: pytest.MonkeyPatch,
    stores: Stores,
) -> None:
    """Two deliveries for one ready image run at once (a redelivery, a redrive, or the
    late message of an earlier, refused PUT). Both read the record with variants
    pending. The first's render overruns its wall-clock budget -- three times the CPU
    budget, easily missed when two renders share a core -- while the second finishes and
    records ready variants. The first then records its verdict: `failed` ("never
    retried") must not replace `ready`."""
    image = upload(alice)
    message = stores.announced(image["id"])
    real_render = worker_module.render_bounded
    calls: list[str] = []

    def slow_then_overtaken(*args: Any, **kwargs: Any) -> Any:
        if not calls:
            calls.append("first")
            assert worker.process(message) == "done"  # the other delivery finishes
            raise worker_module.Undecodable(
                "The image does not decode within its budget: it took more than 30 s"
            )
        calls.append("second")
        return real_render(*args, **kwargs)

    monkeypatch.setattr(worker_module, "render_bounded", slow_then_overtaken)

    worker.process(message)
    got = client.get(f"/images/{image['id']}", headers=alice).json()

    assert calls == ["first", "second"]
    assert got["variants"]["thumb"]["status"] == "ready"
    assert got["variants"]["thumb"]["url"]
