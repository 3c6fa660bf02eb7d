"""The worker, fed by the bucket's real notifications (moto delivers S3 events to SQS):
auto-confirm, variants, placeholders, redelivery, failures, deletes meanwhile."""

import io
import json
import threading
from typing import Any

import pytest
from botocore.exceptions import ClientError
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from app.config import Settings
from app.domain.owners import new_image_id
from app.domain.variants import VariantSpec
from app.pipeline.notifications import Uploaded, uploads_in
from app.pipeline.worker import Worker
from app.storage.clients import AwsClients
from app.storage.items import object_key, variant_key
from tests.conftest import Clock, Drain, Uploader, deliver, refusal
from tests.imagefiles import make_image, many_scans_jpeg, noisy_image, not_a_png, undecodable_png
from tests.stores import Stores


def _object(clients: AwsClients, settings: Settings, key: str) -> bytes:
    body: bytes = clients.s3.get_object(Bucket=settings.bucket, Key=key)["Body"].read()
    return body


def test_uploaded_bytes_are_confirmed_without_a_confirm_call(
    client: TestClient, alice: dict[str, str], pending: Uploader, drain: Drain
) -> None:
    image = pending(alice, "image/jpeg", make_image("image/jpeg", width=640, height=480))

    answers = drain()
    fetched = client.get(f"/images/{image['id']}", headers=alice).json()

    assert answers == [{"batchItemFailures": []}]
    assert (fetched["status"], fetched["width"], fetched["height"]) == ("ready", 640, 480)


def test_variants_fit_their_boxes_and_are_webp(
    client: TestClient,
    alice: dict[str, str],
    pending: Uploader,
    drain: Drain,
    clients: AwsClients,
    settings: Settings,
) -> None:
    image = pending(alice, "image/png", make_image("image/png", width=2000, height=500))

    drain()
    variants = client.get(f"/images/{image['id']}", headers=alice).json()["variants"]
    thumb = _object(
        clients, settings, variant_key(image["id"], "thumb", settings.variants["thumb"])
    )

    assert variants["preview"] | {"bytes": 0, "url": ""} == {
        "status": "ready",
        "content_type": "image/webp",
        "width": 1600,
        "height": 400,
        "bytes": 0,
        "reason": None,
        "url": "",
    }
    assert (variants["thumb"]["width"], variants["thumb"]["height"]) == (320, 80)
    assert variants["thumb"]["bytes"] == len(thumb)
    assert Image.open(io.BytesIO(thumb)).format == "WEBP"


def test_ready_image_carries_placeholder_and_variant_urls(
    client: TestClient,
    alice: dict[str, str],
    pending: Uploader,
    drain: Drain,
    settings: Settings,
) -> None:
    image = pending(alice)
    drain()

    got = client.get(f"/images/{image['id']}", headers=alice).json()
    listed = client.get("/images", headers=alice).json()["items"][0]

    assert got["placeholder"]
    assert 20 <= len(got["placeholder"]) <= 30
    for name, spec in settings.variants.items():
        assert f"/{variant_key(image['id'], name, spec)}?" in got["variants"][name]["url"]
        assert listed["variants"][name]["url"] == got["variants"][name]["url"]


def test_listed_image_is_the_image_get_returns(
    client: TestClient, alice: dict[str, str], pending: Uploader, drain: Drain
) -> None:
    """A page builds its JSON straight from the items; nothing may tell it apart."""
    image = pending(alice, title="Dune", description="At dusk", tags=["sand", "sky"])
    drain()

    got = client.get(f"/images/{image['id']}", headers=alice)
    listed = client.get("/images", headers=alice)

    assert (got.status_code, listed.status_code) == (200, 200)
    assert listed.json()["items"] == [got.json()]


def test_variant_urls_are_the_same_within_a_window(
    client: TestClient, alice: dict[str, str], pending: Uploader, drain: Drain
) -> None:
    """So that a browser's cache serves a thumb again, page after page."""
    pending(alice)
    drain()

    first = client.get("/images", headers=alice).json()["items"][0]["variants"]["thumb"]["url"]
    second = client.get("/images", headers=alice).json()["items"][0]["variants"]["thumb"]["url"]

    assert first == second


def test_image_not_yet_processed_shows_pending_variants_without_urls(
    client: TestClient, alice: dict[str, str], upload: Uploader
) -> None:
    image = upload(alice)

    assert image["variants"]["thumb"]["status"] == "pending"
    assert (
        image["variants"]["thumb"]["url"],
        image["variants"]["preview"]["url"],
        image["placeholder"],
    ) == (None, None, None)


def test_download_of_a_ready_variant_and_of_a_pending_one(
    client: TestClient, alice: dict[str, str], upload: Uploader, drain: Drain, settings: Settings
) -> None:
    image = upload(alice)
    before = client.get(f"/images/{image['id']}/download?variant=thumb", headers=alice)
    drain()

    after = client.get(f"/images/{image['id']}/download?variant=thumb", headers=alice)

    assert refusal(before) == (409, "variant_not_ready")
    assert "pending" in before.json()["detail"]
    assert after.status_code == 200
    thumb = variant_key(image["id"], "thumb", settings.variants["thumb"])
    assert f"/{thumb}?" in after.json()["url"]


def test_confirm_and_worker_agree_and_count_once(
    app: FastAPI,
    client: TestClient,
    alice: dict[str, str],
    pending: Uploader,
    drain: Drain,
    stores: Stores,
) -> None:
    image = pending(alice)

    confirmed = client.post(f"/images/{image['id']}/confirm", headers=alice)
    drain()
    again = client.post(f"/images/{image['id']}/confirm", headers=alice)

    assert confirmed.status_code == again.status_code == 200
    assert again.json()["variants"]["thumb"]["status"] == "ready"
    assert stores.usage("alice") == (1, image["size"])
    assert app.state.services.maintenance.reconcile("alice").drift is False


def test_confirm_racing_the_worker_ends_ready_once(
    atomic_aws: None,
    app: FastAPI,
    client: TestClient,
    alice: dict[str, str],
    pending: Uploader,
    worker: Worker,
    stores: Stores,
) -> None:
    for _ in range(5):
        image_id = pending(alice)["id"]
        upload = stores.announced(image_id)
        results: list[Any] = []

        def confirm(image_id: str = image_id, results: list[Any] = results) -> None:
            results.append(client.post(f"/images/{image_id}/confirm", headers=alice).status_code)

        def process(upload: Uploaded = upload, results: list[Any] = results) -> None:
            results.append(worker.process(upload))

        threads = [threading.Thread(target=confirm), threading.Thread(target=process)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert 200 in results
    assert stores.usage("alice")[0] == 5
    assert app.state.services.maintenance.reconcile("alice").drift is False


def test_redelivered_message_changes_nothing(
    worker: Worker,
    alice: dict[str, str],
    pending: Uploader,
    drain: Drain,
    stores: Stores,
    aws_calls: Any,
) -> None:
    image = pending(alice)
    upload = stores.announced(image["id"])
    drain()
    aws_calls.clear()

    outcome = worker.process(upload)

    assert outcome == "already done"
    assert dict(aws_calls) == {"dynamodb.GetItem": 1}


def test_bytes_that_are_not_the_declared_image_are_refused_and_removed(
    client: TestClient,
    alice: dict[str, str],
    create: Uploader,
    put_bytes: Any,
    drain: Drain,
    stores: Stores,
) -> None:
    fake = b"\x89PNG\r\n\x1a\n<html>not an image</html>".ljust(200, b" ")
    image = create(alice, data=fake)
    put_bytes(image["id"], fake, "image/png")

    answers = drain()
    got = client.get(f"/images/{image['id']}", headers=alice).json()

    assert answers == [{"batchItemFailures": []}]  # permanent: never retried
    assert (got["status"], got["reason"]) == (
        "rejected",
        "The uploaded bytes are not a valid image/png image",
    )
    assert not stores.has_object(image["id"])


def test_image_whose_header_passes_but_does_not_decode_ends_failed_with_a_reason(
    client: TestClient, alice: dict[str, str], pending: Uploader, drain: Drain
) -> None:
    image = pending(alice, "image/png", undecodable_png())

    answers = drain()
    got = client.get(f"/images/{image['id']}", headers=alice).json()

    assert answers == [{"batchItemFailures": []}]
    assert got["status"] == "ready"  # the original is what was uploaded
    assert got["variants"]["thumb"]["status"] == "failed"
    assert "does not decode" in got["variants"]["thumb"]["reason"]
    assert got["variants"]["thumb"]["url"] is None


def test_image_deleted_while_the_worker_made_its_variants_leaves_nothing(
    app: FastAPI,
    client: TestClient,
    alice: dict[str, str],
    pending: Uploader,
    worker: Worker,
    monkeypatch: pytest.MonkeyPatch,
    stores: Stores,
) -> None:
    image = pending(alice)
    objects = app.state.services.storage.objects
    real_put = objects.put_variant

    def put_then_delete(image_id: str, name: str, spec: VariantSpec, data: bytes) -> None:
        real_put(image_id, name, spec, data)
        if name == "thumb":  # the last one: the owner deletes the image right now
            client.delete(f"/images/{image_id}", headers=alice)

    monkeypatch.setattr(objects, "put_variant", put_then_delete)

    outcome = worker.process(stores.announced(image["id"]))

    assert outcome == "deleted meanwhile"
    assert stores.keys() == []
    assert stores.record(image["id"]) is None


def test_bytes_with_no_record_are_removed(
    worker: Worker, clients: AwsClients, settings: Settings, stores: Stores
) -> None:
    orphan = new_image_id("f" * 20)
    clients.s3.put_object(Bucket=settings.bucket, Key=object_key(orphan), Body=make_image())

    outcome = worker.process(stores.announced(orphan))

    assert outcome == "orphan removed"
    assert not stores.has_object(orphan)


def test_a_failing_message_is_reported_alone_and_retried(
    alice: dict[str, str],
    pending: Uploader,
    worker: Worker,
    clients: AwsClients,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    stores: Stores,
) -> None:
    first, second = pending(alice), pending(alice)
    url = clients.sqs.get_queue_url(QueueName=settings.queue)["QueueUrl"]
    messages = clients.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    real_get = clients.s3.get_object

    def flaky(**kwargs: Any) -> Any:
        if kwargs["Key"] == object_key(first["id"]):
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "x"}}, "GetObject")
        return real_get(**kwargs)

    monkeypatch.setattr(clients.s3, "get_object", flaky)

    answer = worker.handle(
        {"Records": [{"messageId": m["MessageId"], "body": m["Body"]} for m in messages]}
    )

    failed = [m for m in messages if first["id"] in m["Body"]]
    assert answer == {"batchItemFailures": [{"itemIdentifier": failed[0]["MessageId"]}]}
    assert stores.record(second["id"])["status"] == {"S": "ready"}


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "images"}),
        json.dumps({"Records": [{"eventName": "ObjectRemoved:Delete", "s3": {}}]}),
        json.dumps(
            {
                "Records": [
                    {
                        "eventName": "ObjectCreated:Put",
                        "s3": {"bucket": {"name": "someone-else"}, "object": {"key": "images/x"}},
                    }
                ]
            }
        ),
        json.dumps({"Records": ["ObjectCreated:Put"]}),
        json.dumps({"Records": [{"eventName": "ObjectCreated:Put", "s3": "images/x"}]}),
        json.dumps(
            {"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": [], "object": 1}}]}
        ),
        json.dumps(
            {
                "Records": [
                    {
                        "eventName": "ObjectCreated:Put",
                        "s3": {"bucket": {"name": "images"}, "object": {"key": 7, "eTag": "x"}},
                    }
                ]
            }
        ),
        json.dumps([{"Records": []}]),
        "[" * 100_000,
    ],
    ids=[
        "not-json",
        "s3-test-event",
        "not-a-creation",
        "other-bucket",
        "record-is-a-string",
        "s3-is-a-string",
        "bucket-and-object-of-the-wrong-type",
        "key-is-a-number",
        "body-is-a-list",
        "nested-past-the-parser",
    ],
)
def test_messages_that_are_not_our_uploads_are_ignored(worker: Worker, body: str) -> None:
    answer = worker.handle({"Records": [{"messageId": "m1", "body": body}]})

    assert answer == {"batchItemFailures": []}


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
# S3's event, with any of its parts replaced by anything.
S3_SHAPED = st.fixed_dictionaries(
    {
        "Records": st.lists(
            st.fixed_dictionaries(
                {
                    "eventName": st.sampled_from(["ObjectCreated:Put"]) | JSON,
                    "s3": st.fixed_dictionaries(
                        {
                            "bucket": st.fixed_dictionaries({"name": st.just("images") | JSON})
                            | JSON,
                            "object": st.fixed_dictionaries(
                                {
                                    "key": st.sampled_from(["images/abc", "images/a%20b"]) | JSON,
                                    "eTag": st.just("0123") | JSON,
                                }
                            )
                            | JSON,
                        }
                    )
                    | JSON,
                }
            )
            | JSON,
            max_size=3,
        )
        | JSON
    }
)


@given(body=st.one_of(JSON, S3_SHAPED).map(json.dumps) | st.text())
def test_any_message_body_is_read_or_ignored_never_an_error(body: str) -> None:
    """Whatever arrives on the queue, reading it never raises: an error would send the
    message round five times and into the dead-letter queue, for nothing."""
    found = uploads_in(body, "images")

    assert all(upload.image_id == "abc" for upload in found)


def test_worker_retags_an_image_whose_confirm_could_not_tag_it(
    client: TestClient,
    alice: dict[str, str],
    pending: Uploader,
    drain: Drain,
    clients: AwsClients,
    monkeypatch: pytest.MonkeyPatch,
    stores: Stores,
) -> None:
    image = pending(alice)
    with monkeypatch.context() as patch:
        patch.setattr(
            clients.s3,
            "put_object_tagging",
            lambda **_: (_ for _ in ()).throw(
                ClientError({"Error": {"Code": "SlowDown", "Message": "x"}}, "PutObjectTagging")
            ),
        )
        client.post(f"/images/{image['id']}/confirm", headers=alice)

    drain()

    assert stores.tags(image["id"]) == [{"Key": "state", "Value": "ready"}]
    assert stores.sweep_index() == []


def test_delete_removes_the_variants_too(
    client: TestClient, alice: dict[str, str], pending: Uploader, drain: Drain, stores: Stores
) -> None:
    image = pending(alice)
    drain()

    client.delete(f"/images/{image['id']}", headers=alice)

    assert stores.keys() == []


def test_variants_whose_message_came_after_the_sweep_released_the_image_are_made(
    app: FastAPI,
    client: TestClient,
    alice: dict[str, str],
    upload: Uploader,
    drain: Drain,
    clock: Clock,
    settings: Settings,
) -> None:
    """A backlog: the worker's message arrives long after confirm, when the sweep has
    already retagged the image and taken it out of its index. Not made is work to do."""
    image = upload(alice)
    clock.advance(settings.finish_grace_seconds + 1)
    app.state.services.maintenance.sweep()
    released = client.get(f"/images/{image['id']}", headers=alice).json()

    drain()
    made = client.get(f"/images/{image['id']}", headers=alice).json()

    assert released["variants"]["thumb"] == {
        "status": "pending",
        "content_type": "image/webp",
        "width": None,
        "height": None,
        "bytes": None,
        "reason": None,
        "url": None,
    }
    assert (made["variants"]["thumb"]["status"], made["variants"]["preview"]["status"]) == (
        "ready",
        "ready",
    )
    assert made["variants"]["thumb"]["url"]


def test_the_sweep_never_overwrites_variants_the_worker_made(
    app: FastAPI,
    client: TestClient,
    alice: dict[str, str],
    pending: Uploader,
    drain: Drain,
    clock: Clock,
    settings: Settings,
) -> None:
    image = pending(alice)
    drain()
    clock.advance(settings.finish_grace_seconds + 1)

    app.state.services.maintenance.sweep()

    assert (
        client.get(f"/images/{image['id']}", headers=alice).json()["variants"]["thumb"]["status"]
        == "ready"
    )


def test_a_worker_holding_refused_bytes_never_deletes_the_confirmed_upload_that_replaced_them(
    app: FastAPI,
    client: TestClient,
    alice: dict[str, str],
    create: Uploader,
    put_bytes: Any,
    worker: Worker,
    monkeypatch: pytest.MonkeyPatch,
    clients: AwsClients,
    settings: Settings,
    stores: Stores,
) -> None:
    """The worker reads the first, bad bytes. Before it judges them, confirm refuses them,
    the client PUTs valid bytes and confirms those. The old verdict touches nothing."""
    good = make_image("image/png")
    image = create(alice, data=good)
    put_bytes(image["id"], not_a_png(len(good)), "image/png")
    stale = stores.announced(image["id"])
    objects = app.state.services.storage.objects
    real_read = objects.read

    def read_then_replaced(*args: Any) -> Any:
        old = real_read(*args)
        assert refusal(client.post(f"/images/{image['id']}/confirm", headers=alice)) == (
            422,
            "invalid_image",
        )
        put_bytes(image["id"], good, "image/png")
        assert client.post(f"/images/{image['id']}/confirm", headers=alice).status_code == 200
        return old

    monkeypatch.setattr(objects, "read", read_then_replaced)

    outcome = worker.process(stale)
    got = client.get(f"/images/{image['id']}", headers=alice).json()

    assert outcome == "superseded"
    assert got["status"] == "ready"
    assert _object(clients, settings, object_key(image["id"])) == good


def test_a_verdict_on_old_bytes_never_removes_bytes_uploaded_since(
    app: FastAPI,
    client: TestClient,
    alice: dict[str, str],
    create: Uploader,
    put_bytes: Any,
    worker: Worker,
    drain: Drain,
    monkeypatch: pytest.MonkeyPatch,
    clients: AwsClients,
    settings: Settings,
    stores: Stores,
) -> None:
    """As above, but the new bytes are not confirmed yet when the worker judges the old:
    the record may say rejected for a moment, the new bytes stay and are confirmed."""
    good = make_image("image/png")
    image = create(alice, data=good)
    put_bytes(image["id"], not_a_png(len(good)), "image/png")
    stale = stores.announced(image["id"])
    objects = app.state.services.storage.objects
    real_read = objects.read

    def read_then_replaced(*args: Any) -> Any:
        old = real_read(*args)
        client.post(f"/images/{image['id']}/confirm", headers=alice)  # refuses, removes
        put_bytes(image["id"], good, "image/png")
        return old

    with monkeypatch.context() as patch:
        patch.setattr(objects, "read", read_then_replaced)
        worker.process(stale)
    kept = _object(clients, settings, object_key(image["id"]))
    drain()  # the notifications of both PUTs

    assert kept == good
    assert client.get(f"/images/{image['id']}", headers=alice).json()["status"] == "ready"


def test_the_worker_never_deletes_an_upload_too_big_for_it_to_read_whole(
    app: FastAPI,
    client: TestClient,
    alice: dict[str, str],
    pending: Uploader,
    settings: Settings,
    stores: Stores,
) -> None:
    """Verified from its first bytes and its size, as confirm does: a worker that may not
    read all of it still confirms it, and only its variants cannot be made."""
    data = noisy_image()
    image = pending(alice, "image/png", data)
    small = settings.model_copy(
        update={"max_upload_bytes": len(data) // 2, "verify_prefix_bytes": 1024}
    )
    worker = Worker(app.state.services.confirmation, app.state.services.storage, small)

    outcome = worker.process(stores.announced(image["id"]))
    got = client.get(f"/images/{image['id']}", headers=alice).json()

    assert outcome == "done"
    assert got["status"] == "ready"
    assert got["variants"]["thumb"]["status"] == "failed"
    assert "limit" in got["variants"]["thumb"]["reason"]
    assert stores.has_object(image["id"])


def test_an_image_over_its_render_budget_ends_failed_and_its_neighbours_are_done(
    app: FastAPI,
    client: TestClient,
    alice: dict[str, str],
    pending: Uploader,
    clients: AwsClients,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("app.pipeline.render.MAX_JPEG_SCANS", 10**6)  # past the scan check: slow
    slow = pending(alice, "image/jpeg", many_scans_jpeg(40_000))
    quick = pending(alice, "image/png")
    budget = settings.model_copy(update={"render_cpu_seconds": 1})
    worker = Worker(app.state.services.confirmation, app.state.services.storage, budget)

    answers = deliver(worker, clients, settings)
    hostile, neighbour = (
        client.get(f"/images/{image['id']}", headers=alice).json() for image in (slow, quick)
    )

    assert answers == [{"batchItemFailures": []}]  # one batch, nothing to retry
    assert hostile["status"] == "ready"  # the original is what was uploaded
    assert hostile["variants"]["thumb"]["status"] == "failed"
    assert "more than 1 s of CPU time" in hostile["variants"]["thumb"]["reason"]
    assert neighbour["variants"]["thumb"]["status"] == "ready"
