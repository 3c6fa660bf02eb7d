"""Attacks on malware scanning, the CDN and the upload pipeline around them, written by a
hostile reviewer: forced interleavings between client, worker, sweep, rescan and
GuardDuty's verdicts (step by step, pausing one party between its writes), a clamd that
misbehaves, and hostile event shapes. Each test states the promise it attacks; those
that failed when written (an infected image's replays and confirms, the sweep's hold on
it, a rescan under a lowered limit, the operator told twice, a trickling clamd) are
the regressions of what the review found."""

import json
import os
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.composition import build
from app.config import Settings
from app.pipeline.audit import INFECTED_METRIC
from app.pipeline.notifications import RESCAN, announcement, uploads_in
from app.pipeline.scanning import ClamdScanner, ScannerUnavailable, Verdict
from app.storage.items import object_key
from tests.cdn import KEY_PAIR_ID, Refused, key_pair, verify_cookies, verify_url
from tests.clamav import EICAR
from tests.conftest import AppFactory, Clock, PutBytes, deliver, new_image, refusal
from tests.imagefiles import make_image
from tests.stores import Stores
from tests.test_guardduty import scan_result

CDN = "https://images.example.com"


# --- Helpers ---------------------------------------------------------------------------


def polyglot(kind: str = "image/png", tail: bytes = EICAR) -> bytes:
    """A valid image with EICAR appended: its container check passes."""
    return make_image(kind, width=320, height=240) + tail


def _created(app: FastAPI, user: dict[str, str], put_bytes: PutBytes, data: bytes) -> str:
    """Created and PUT, nobody confirmed yet."""
    client = TestClient(app)
    created = client.post("/images", json=new_image("image/png", data), headers=user)
    assert created.status_code == 201, created.text
    image_id: str = created.json()["image"]["id"]
    put_bytes(image_id, data, "image/png")
    return image_id


def _confirmed(app: FastAPI, user: dict[str, str], put_bytes: PutBytes, data: bytes) -> str:
    image_id = _created(app, user, put_bytes, data)
    answer = TestClient(app).post(f"/images/{image_id}/confirm", headers=user)
    assert answer.status_code == 200, answer.text
    return image_id


def _worked(app: FastAPI) -> list[dict[str, Any]]:
    services = app.state.services
    return deliver(services.worker, services.clients, services.settings)


def _verdict_body(app: FastAPI, image_id: str, etag: str, result: str, *threats: str) -> str:
    bucket = app.state.services.settings.bucket
    return scan_result(bucket, object_key(image_id), etag, result, list(threats))


def _apply(app: FastAPI, body: str) -> str:
    (upload,) = uploads_in(body, app.state.services.settings.bucket)
    outcome: str = app.state.services.worker.process(upload)
    return outcome


def _served(client: TestClient, image_id: str, user: dict[str, str]) -> dict[str, Any]:
    """Everything a client can obtain that would serve bytes: variant URLs in get and list,
    and each download's answer."""
    image = client.get(f"/images/{image_id}", headers=user)
    listed = [
        item
        for status in ("ready", "pending", "rejected")
        for item in client.get(f"/images?status={status}", headers=user).json()["items"]
        if item["id"] == image_id
    ]
    urls = [
        v["url"]
        for doc in ([image.json()] if image.status_code == 200 else []) + listed
        for v in doc["variants"].values()
        if v["url"]
    ]
    downloads = [
        client.get(f"/images/{image_id}/download?variant={name}", headers=user)
        for name in ("original", "thumb", "preview")
    ]
    return {
        "image": image.json() if image.status_code == 200 else None,
        "urls": urls,
        "downloads": [d.status_code for d in downloads],
        "codes": [d.json().get("code") for d in downloads],
    }


def _metric_lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if f'"{INFECTED_METRIC}"' in line]


@pytest.fixture
def guarded(make_app: AppFactory) -> FastAPI:
    return make_app(scan="guardduty")


class FakeScanner:
    """A Scanner whose verdicts the test writes: EICAR is malware, the rest clean."""

    def __init__(self) -> None:
        self.calls = 0

    def examine(self, data: bytes) -> Verdict:
        self.calls += 1
        if EICAR in data:
            return Verdict("Fake 1/1", signature="Fake.EICAR")
        return Verdict("Fake 1/1")


@pytest.fixture
def faked(make_app: AppFactory, tmp_path: Path) -> FastAPI:
    """IMAGES_SCAN=clamav with the scanner replaced by FakeScanner (no clamd needed)."""
    app = make_app(scan="clamav", clamd=f"unix://{tmp_path}/unused.sock")
    app.state.services.worker._screening._scanner = FakeScanner()
    return app


# --- GuardDuty's verdicts: duplicated, late, replaced, before the worker -------------------


def test_duplicated_threats_found_releases_quota_once_and_serves_nothing(
    guarded: FastAPI, alice: dict[str, str], put_bytes: PutBytes, stores: Stores
) -> None:
    kept = _confirmed(guarded, alice, put_bytes, make_image("image/png"))
    image_id = _confirmed(guarded, alice, put_bytes, polyglot())
    body = _verdict_body(guarded, image_id, stores.etag(image_id), "THREATS_FOUND", "EICAR")

    outcomes = [_apply(guarded, body) for _ in range(3)]
    served = _served(TestClient(guarded), image_id, alice)

    assert outcomes[0] == "infected: EICAR"
    assert served["urls"] == []
    assert served["codes"] == ["infected"] * 3
    assert stores.usage("alice") == (1, len(make_image("image/png")))
    assert not guarded.state.services.maintenance.reconcile("alice").drift
    assert all(kept in key for key in stores.keys())  # noqa: SIM118


def test_clean_verdict_after_threats_found_serves_nothing(
    guarded: FastAPI, alice: dict[str, str], put_bytes: PutBytes, stores: Stores
) -> None:
    image_id = _confirmed(guarded, alice, put_bytes, polyglot())
    etag = stores.etag(image_id)
    _apply(guarded, _verdict_body(guarded, image_id, etag, "THREATS_FOUND", "X"))

    late = _apply(guarded, _verdict_body(guarded, image_id, etag, "NO_THREATS_FOUND"))
    served = _served(TestClient(guarded), image_id, alice)

    assert late != "done"
    assert served["urls"] == []
    assert served["codes"] == ["infected"] * 3
    assert stores.keys() == []


def test_verdict_arriving_before_the_worker_then_s3_message_serves_once_clean(
    guarded: FastAPI, alice: dict[str, str], put_bytes: PutBytes, stores: Stores
) -> None:
    image_id = _created(guarded, alice, put_bytes, make_image("image/png"))
    etag = stores.etag(image_id)

    first = _apply(guarded, _verdict_body(guarded, image_id, etag, "NO_THREATS_FOUND"))
    second = guarded.state.services.worker.process(stores.announced(image_id))
    image = TestClient(guarded).get(f"/images/{image_id}", headers=alice).json()

    assert (first, second) == ("done", "already done")
    assert image["scan"]["status"] == "clean"
    assert stores.usage("alice") == (1, len(make_image("image/png")))
    assert not guarded.state.services.maintenance.reconcile("alice").drift


def test_threats_found_before_anyone_confirmed_removes_bytes_and_quota(
    guarded: FastAPI, alice: dict[str, str], put_bytes: PutBytes, stores: Stores
) -> None:
    image_id = _created(guarded, alice, put_bytes, polyglot())
    body = _verdict_body(guarded, image_id, stores.etag(image_id), "THREATS_FOUND", "X")

    _apply(guarded, body)
    confirm = TestClient(guarded).post(f"/images/{image_id}/confirm", headers=alice)
    s3_late = guarded.state.services.worker.process(
        uploads_in(announcement("images", image_id, '"whatever"'), "images")[0]
    )

    assert confirm.status_code != 200 or confirm.json()["scan"]["status"] == "infected"
    assert s3_late in ("being deleted", "no bytes")
    assert stores.keys() == []
    assert stores.usage("alice") == (0, 0)


def test_late_verdict_for_refused_then_replaced_bytes_leaves_new_bytes_alone(
    guarded: FastAPI, alice: dict[str, str], put_bytes: PutBytes, stores: Stores, clients: Any
) -> None:
    """Old bytes refused by confirm (wrong size), valid bytes PUT again; GuardDuty's verdicts
    on the old bytes (infected, and clean) come late: neither touches the new bytes."""
    good = make_image("image/png")
    client = TestClient(guarded)
    created = client.post("/images", json=new_image("image/png", good), headers=alice).json()
    image_id = created["image"]["id"]
    bad = good[:-1] + b"\0\0"  # one byte too many: refused by confirm
    put_bytes(image_id, bad, "image/png")
    old_etag = stores.etag(image_id)
    assert refusal(client.post(f"/images/{image_id}/confirm", headers=alice))[0] == 422
    put_bytes(image_id, good, "image/png")
    assert client.post(f"/images/{image_id}/confirm", headers=alice).status_code == 200

    infected_late = _apply(guarded, _verdict_body(guarded, image_id, old_etag, "THREATS_FOUND"))
    clean_late = _apply(guarded, _verdict_body(guarded, image_id, old_etag, "NO_THREATS_FOUND"))
    image = client.get(f"/images/{image_id}", headers=alice).json()

    assert (infected_late, clean_late) == ("verdict on other bytes",) * 2
    assert image["scan"]["status"] == "pending"  # the new bytes wait for their own verdict
    assert stores.has_object(image_id)


def test_verdict_for_deleted_image_recreates_nothing(
    guarded: FastAPI, alice: dict[str, str], put_bytes: PutBytes, stores: Stores
) -> None:
    image_id = _confirmed(guarded, alice, put_bytes, make_image("image/png"))
    etag = stores.etag(image_id)
    assert TestClient(guarded).delete(f"/images/{image_id}", headers=alice).status_code == 204

    for result in ("NO_THREATS_FOUND", "THREATS_FOUND", "FAILED"):
        _apply(guarded, _verdict_body(guarded, image_id, etag, result, "X"))

    assert stores.stored(image_id) == (False, False)
    assert stores.keys() == []
    assert stores.usage("alice") == (0, 0)


def test_verdict_while_delete_is_half_done_serves_nothing_and_counts_once(
    guarded: FastAPI,
    alice: dict[str, str],
    put_bytes: PutBytes,
    stores: Stores,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DELETE marks the record, then stops before removing bytes; a clean verdict comes."""
    image_id = _confirmed(guarded, alice, put_bytes, make_image("image/png"))
    etag = stores.etag(image_id)
    services = guarded.state.services
    monkeypatch.setattr(services.storage.objects, "delete", _raise_unavailable)
    with pytest.raises(Exception):  # noqa: B017, PT011 - whatever the 503 is
        services.images.delete("alice", image_id)
    monkeypatch.undo()

    outcome = _apply(guarded, _verdict_body(guarded, image_id, etag, "NO_THREATS_FOUND"))
    services.images.delete("alice", image_id)

    assert outcome == "being deleted"
    assert stores.keys() == []
    assert stores.usage("alice") == (0, 0)


def _raise_unavailable(*_: Any, **__: Any) -> None:
    from app.domain.errors import Unavailable  # noqa: PLC0415

    raise Unavailable("stopped here by the test")


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: e.update(detail=None),
        lambda e: e.update(detail=[1, 2]),
        lambda e: e["detail"].update(s3ObjectDetails="x"),
        lambda e: e["detail"]["s3ObjectDetails"].update(eTag=None),
        lambda e: e["detail"]["s3ObjectDetails"].update(eTag=["a"]),
        lambda e: e["detail"]["s3ObjectDetails"].update(objectKey=7),
        lambda e: e["detail"]["s3ObjectDetails"].update(objectKey="u/../original"),
        lambda e: e["detail"].update(scanResultDetails=None),
        lambda e: e["detail"].update(scanResultDetails={"scanResultStatus": 5, "threats": 3}),
        lambda e: e["detail"]["scanResultDetails"].update(threats=[None, 1, "x", {"name": {}}]),
        lambda e: e["detail"]["scanResultDetails"].update(threats=[{"name": "é" * 5000}]),
        lambda e: e.update({"detail-type": ["GuardDuty Malware Protection Object Scan Result"]}),
    ],
)
def test_hostile_guardduty_shapes_never_fail_the_batch_nor_serve(
    guarded: FastAPI,
    alice: dict[str, str],
    put_bytes: PutBytes,
    stores: Stores,
    mutate: Callable[[dict[str, Any]], None],
) -> None:
    image_id = _confirmed(guarded, alice, put_bytes, make_image("image/png"))
    event = json.loads(
        _verdict_body(guarded, image_id, stores.etag(image_id), "NO_THREATS_FOUND", "X")
    )
    event["detail"]["scanResultDetails"]["scanResultStatus"] = "NO_THREATS_FOUND"
    mutate(event)

    answer = guarded.state.services.worker.handle(
        {"Records": [{"messageId": "m1", "body": json.dumps(event)}]}
    )
    image = TestClient(guarded).get(f"/images/{image_id}", headers=alice).json()

    assert answer == {"batchItemFailures": []}
    # Shapes that still name the image's bytes may apply a verdict; none may fail the batch.
    assert image["scan"]["status"] in ("pending", "clean", "failed")
    if image["scan"]["status"] != "clean":
        assert all(v["url"] is None for v in image["variants"].values())


@pytest.mark.parametrize(
    "key",
    [
        "u/{owner}/{id}/original",
        "u%2F{owner}%2F{id}%2Foriginal",
        "u/{owner}/{id}/original/",
        "u/{owner}/{id}/original%0A%0A",
        "u/{owner}/{id}/thumb-abc.webp",
        "U/{owner}/{id}/original",
        "u/{owner}/{id}/ORIGINAL",
        "u/00000000000000000000/{id}/original",
        "u/{owner}/{owner}/original",
        "u/{owner}/../{id}/original",
        "%ZZ%{owner}",
        "",
    ],
)
def test_odd_s3_keys_are_ignored_or_name_only_the_image(
    guarded: FastAPI, alice: dict[str, str], put_bytes: PutBytes, stores: Stores, key: str
) -> None:
    image_id = _confirmed(guarded, alice, put_bytes, make_image("image/png"))
    named = key.replace("{owner}", image_id[-20:]).replace("{id}", image_id)
    body = json.dumps(
        {
            "Records": [
                {
                    "eventName": "ObjectCreated:Put",
                    "s3": {"bucket": {"name": "images"}, "object": {"key": named, "eTag": "x"}},
                }
            ]
        }
    )

    answer = guarded.state.services.worker.handle({"Records": [{"messageId": "m", "body": body}]})

    assert answer == {"batchItemFailures": []}
    assert stores.has_object(image_id)
    assert TestClient(guarded).get(f"/images/{image_id}", headers=alice).status_code == 200


# --- Found infected: exactly once, whoever races -------------------------------------------


def test_duplicate_deliveries_racing_on_one_infected_upload_tell_the_operator_once(
    faked: FastAPI,
    alice: dict[str, str],
    put_bytes: PutBytes,
    stores: Stores,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """README (Found infected): 'a second delivery of the same finding changes nothing'.
    Two deliveries of the same message: the first pauses after its scan, the second runs
    to the end, then the first resumes."""
    image_id = _confirmed(faked, alice, put_bytes, polyglot())
    worker = faked.state.services.worker
    table = faked.state.services.storage.table
    real_mark = table.mark_infected
    paused: dict[str, Any] = {}

    def second_delivery_first(*args: Any, **kwargs: Any) -> bool:
        if not paused:
            paused["once"] = True
            worker.process(stores.announced(image_id))  # the duplicate, to the end
        return real_mark(*args, **kwargs)

    monkeypatch.setattr(table, "mark_infected", second_delivery_first)
    capsys.readouterr()
    worker.process(stores.announced(image_id))
    metrics = _metric_lines(capsys.readouterr().out)

    assert stores.keys() == []
    assert stores.usage("alice") == (0, 0)
    assert len(metrics) == 1, f"InfectedUploads written {len(metrics)} times for one upload"


def test_delete_racing_an_infected_finding_releases_quota_once(
    faked: FastAPI,
    alice: dict[str, str],
    put_bytes: PutBytes,
    stores: Stores,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worker marks infected, then pauses before deleting bytes; DELETE runs to the end."""
    kept = _confirmed(faked, alice, put_bytes, make_image("image/png"))
    image_id = _confirmed(faked, alice, put_bytes, polyglot())
    services = faked.state.services
    objects = services.storage.objects
    real = objects.delete_variants

    def delete_first(record: Any, image: str) -> None:
        services.images.delete("alice", image_id)
        real(record, image)

    monkeypatch.setattr(objects, "delete_variants", delete_first)
    outcome = services.worker.process(stores.announced(image_id))

    assert outcome.startswith("infected")
    assert stores.stored(image_id) == (False, False)
    assert stores.usage("alice") == (1, len(make_image("image/png")))
    assert not services.maintenance.reconcile("alice").drift
    assert stores.has_object(kept)


def test_delete_before_an_infected_verdict_lands_releases_quota_once(
    faked: FastAPI,
    alice: dict[str, str],
    put_bytes: PutBytes,
    stores: Stores,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    image_id = _confirmed(faked, alice, put_bytes, polyglot())
    services = faked.state.services
    scanner = services.worker._screening._scanner
    real = scanner.examine

    def delete_during_scan(data: bytes) -> Verdict:
        verdict = real(data)
        services.images.delete("alice", image_id)
        return verdict

    monkeypatch.setattr(scanner, "examine", delete_during_scan)
    services.worker.process(stores.announced(image_id))

    assert stores.stored(image_id) == (False, False)
    assert stores.usage("alice") == (0, 0)
    assert not services.maintenance.reconcile("alice").drift


def test_confirm_after_infected_answers_the_infected_image_not_an_upload_prompt(
    faked: FastAPI, alice: dict[str, str], put_bytes: PutBytes, stores: Stores
) -> None:
    """A client retrying confirm after its upload was found infected. README: clients
    branch on `not_uploaded` by PUTting the bytes again; an infected image must not ask
    for its malware again, and its owner must not be told it does not exist."""
    client = TestClient(faked)
    image_id = _confirmed(faked, alice, put_bytes, polyglot())
    _worked(faked)

    again = client.post(f"/images/{image_id}/confirm", headers=alice)

    assert again.status_code != 404
    assert again.json().get("code") != "not_uploaded", again.json()


def test_confirm_after_infected_bytes_were_put_again_does_not_deny_the_image(
    faked: FastAPI, alice: dict[str, str], put_bytes: PutBytes, stores: Stores
) -> None:
    """The upload URL still lives after the worker removed the infected bytes: the client
    PUTs them again (If-None-Match passes: nothing is there) and confirms."""
    client = TestClient(faked)
    data = polyglot()
    image_id = _confirmed(faked, alice, put_bytes, data)
    _worked(faked)
    put_bytes(image_id, data, "image/png")

    again = client.post(f"/images/{image_id}/confirm", headers=alice)
    get = client.get(f"/images/{image_id}", headers=alice)

    assert get.status_code == 200  # the owner can read it
    assert refusal(again) != (404, "not_found"), "confirm denies an image get shows"


def test_direct_upload_replay_after_infected_never_writes_the_malware_again(
    faked: FastAPI, alice: dict[str, str], stores: Stores
) -> None:
    """POST /images/direct with an Idempotency-Key; the worker finds it infected and removes
    it; the client retries the same request (a lost answer)."""
    client = TestClient(faked)
    data = polyglot()
    key = {"Idempotency-Key": "direct-infected-1"}
    files = {"file": ("a.png", data, "image/png")}
    first = client.post("/images/direct", files=files, headers={**alice, **key})
    assert first.status_code == 201, first.text
    image_id = first.json()["id"]
    _worked(faked)
    assert stores.keys() == []

    replay = client.post("/images/direct", files=files, headers={**alice, **key})

    assert stores.keys() == [], "the replay wrote the infected bytes back into the bucket"
    assert replay.status_code != 404, replay.json()
    assert client.get(f"/images/{image_id}", headers=alice).json()["scan"]["status"] == "infected"


def test_create_replay_after_infected_hands_out_no_upload_url(
    faked: FastAPI, alice: dict[str, str], put_bytes: PutBytes, stores: Stores
) -> None:
    """POST /images replayed with its Idempotency-Key after the upload was found infected:
    a fresh PUT URL would let the malware back into the bucket (nothing is there now)."""
    client = TestClient(faked)
    data = polyglot()
    key = {"Idempotency-Key": "create-infected-1"}
    body = new_image("image/png", data)
    first = client.post("/images", json=body, headers={**alice, **key}).json()
    image_id = first["image"]["id"]
    put_bytes(image_id, data, "image/png")
    _worked(faked)

    replay = client.post("/images", json=body, headers={**alice, **key})

    assert replay.status_code != 201 or replay.json()["upload"] is None, (
        "a replay of an infected upload hands out a working PUT URL"
    )


def test_sweep_removes_malware_put_again_after_infected(
    faked: FastAPI,
    alice: dict[str, str],
    put_bytes: PutBytes,
    stores: Stores,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Infected bytes PUT again with the still-live URL, and their S3 message lost: no party
    ever removes them (the record left the sweep's index when the first bytes went)."""
    data = polyglot()
    image_id = _confirmed(faked, alice, put_bytes, data)
    _worked(faked)
    put_bytes(image_id, data, "image/png")  # the S3 notification of this PUT is lost
    settings = faked.state.services.settings

    clock.advance(settings.upload_deadline_seconds + settings.finish_grace_seconds + 1)
    faked.state.services.maintenance.sweep()

    assert not stores.has_object(image_id), "infected bytes stay under the owner's prefix"


def test_scanner_down_across_redeliveries_and_a_sweep_never_serves_nor_fails_the_image(
    faked: FastAPI,
    alice: dict[str, str],
    put_bytes: PutBytes,
    stores: Stores,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """clamd down for long: every delivery fails (with backoff), the sweep releases the image
    meanwhile; it is never served, never counted as an attempt, and is made once back."""
    image_id = _confirmed(faked, alice, put_bytes, make_image("image/png"))
    services = faked.state.services
    scanner = services.worker._screening._scanner

    def down(data: bytes) -> Verdict:
        raise ScannerUnavailable("down")

    monkeypatch.setattr(scanner, "examine", down)
    body = announcement("images", image_id, stores.etag(image_id))
    answers = [
        services.worker.handle({"Records": [{"messageId": f"m{n}", "body": body}]})
        for n in range(4)
    ]
    clock.advance(services.settings.finish_grace_seconds + 1)
    services.maintenance.sweep()
    while_down = _served(TestClient(faked), image_id, alice)
    attempts = stores.record(image_id)["scan"]["M"]["attempts"]["N"]  # type: ignore[index]
    monkeypatch.undo()
    services.worker.handle({"Records": [{"messageId": "back", "body": body}]})
    back = _served(TestClient(faked), image_id, alice)

    assert all(a["batchItemFailures"] for a in answers)
    assert while_down["urls"] == []
    assert while_down["codes"] == ["not_scanned"] * 3
    assert attempts == "0"
    assert back["image"]["scan"]["status"] == "clean"
    assert len(back["urls"]) >= 2


def test_render_crash_after_clean_verdict_is_retried_without_serving_unmade_variants(
    faked: FastAPI,
    alice: dict[str, str],
    put_bytes: PutBytes,
    stores: Stores,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    image_id = _confirmed(faked, alice, put_bytes, make_image("image/png"))
    services = faked.state.services
    objects = services.storage.objects

    def crash(*_: Any, **__: Any) -> None:
        raise RuntimeError("worker died mid-render")

    monkeypatch.setattr(objects, "put_variant", crash)
    failed = _worked(faked)
    midway = _served(TestClient(faked), image_id, alice)
    monkeypatch.undo()
    retried = services.worker.process(stores.announced(image_id))  # the message, back
    done = _served(TestClient(faked), image_id, alice)

    assert failed[0]["batchItemFailures"]
    assert retried == "done"
    assert midway["image"]["scan"]["status"] == "clean"
    assert midway["urls"] == []
    assert midway["codes"][1:] == ["variant_not_ready"] * 2
    assert len(done["urls"]) >= 2
    assert services.worker._screening._scanner.calls == 1  # clean once, not scanned again


# --- Rescans ------------------------------------------------------------------------------


def test_rescan_after_lowering_the_upload_limit_keeps_clean_images_served(
    faked: FastAPI,
    alice: dict[str, str],
    put_bytes: PutBytes,
    stores: Stores,
    clock: Clock,
) -> None:
    """An image confirmed and found clean under a larger IMAGES_MAX_UPLOAD_BYTES; the
    operator lowers it, then runs a rescan after a definitions update."""
    big = _png_with_padding(200_000)  # a valid PNG of about 200 kB
    image_id = _confirmed(faked, alice, put_bytes, big)
    _worked(faked)
    client = TestClient(faked)
    assert client.get(f"/images/{image_id}", headers=alice).json()["scan"]["status"] == "clean"

    settings = Settings(
        **{**faked.state.services.settings.model_dump(), "max_upload_bytes": 100_000}
    )
    lowered = build(settings, clients=faked.state.services.clients, clock=clock)
    lowered.worker._screening._scanner = FakeScanner()
    lowered.maintenance.rescan(most=100)
    deliver(lowered.worker, lowered.clients, settings)
    after = client.get(f"/images/{image_id}", headers=alice).json()

    assert after["scan"]["status"] == "clean", after["scan"]
    assert after["variants"]["thumb"]["url"] is not None


def _png_with_padding(padding: int, inside: bytes = b"") -> bytes:
    """A valid PNG with a private ancillary chunk of `padding` bytes (`inside` at its
    start) before IEND."""
    import zlib  # noqa: PLC0415

    png = make_image("image/png", width=64, height=64)
    iend = png.rindex(b"IEND") - 4
    data = inside + b"\x00" * padding
    chunk = struct.pack(">I", len(data)) + b"prVt" + data
    chunk += struct.pack(">I", zlib.crc32(b"prVt" + data) & 0xFFFFFFFF)
    return png[:iend] + chunk + png[iend:]


def test_rescan_racing_a_slow_render_leaves_no_variant_of_infected_bytes(
    faked: FastAPI,
    alice: dict[str, str],
    put_bytes: PutBytes,
    stores: Stores,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The upload's worker scans clean (old definitions), then renders slowly; a rescan with
    new definitions finds malware meanwhile and removes everything; the render then writes
    its variants."""
    data = polyglot(tail=b"LATER-MALWARE")
    image_id = _confirmed(faked, alice, put_bytes, data)
    services = faked.state.services
    worker = services.worker
    objects = services.storage.objects
    real_put = objects.put_variant
    fired: dict[str, str] = {}

    class Updated(FakeScanner):
        def examine(self, data: bytes) -> Verdict:
            if b"LATER-MALWARE" in data:
                return Verdict("Fake 2/2", signature="Fake.Later")
            return super().examine(data)

    def rescan_meanwhile(*args: Any, **kwargs: Any) -> None:
        if not fired:
            screening = worker._screening
            old = screening._scanner
            screening._scanner = Updated()
            fired["rescan"] = worker.process(
                uploads_in(
                    announcement("images", image_id, stores.etag(image_id), RESCAN), "images"
                )[0]
            )
            screening._scanner = old
        real_put(*args, **kwargs)

    monkeypatch.setattr(objects, "put_variant", rescan_meanwhile)
    outcome = worker.process(stores.announced(image_id))
    served = _served(TestClient(faked), image_id, alice)

    assert fired["rescan"] == "infected: Fake.Later"
    assert outcome == "deleted meanwhile"
    assert stores.keys() == []
    assert served["urls"] == []
    assert stores.usage("alice") == (0, 0)


# --- CDN: nothing signed before clean, nothing of another user's ------------------------------


@pytest.fixture
def cdn_guarded(make_app: AppFactory, tmp_path: Path) -> tuple[FastAPI, bytes]:
    keys = key_pair("ecdsa")
    app = make_app(
        scan="guardduty",
        cdn_url=CDN,
        cdn_key_pair_id=KEY_PAIR_ID,
        cdn_private_key_file=keys.write(tmp_path),
        cdn_cookies=True,
    )
    return app, keys.public_pem


def test_cdn_signs_nothing_before_clean_and_nothing_after_infected(
    cdn_guarded: tuple[FastAPI, bytes], alice: dict[str, str], put_bytes: PutBytes, stores: Stores
) -> None:
    app, public = cdn_guarded
    client = TestClient(app)
    clean = _created(app, alice, put_bytes, make_image("image/png"))
    bad = _created(app, alice, put_bytes, polyglot())
    _worked(app)
    before = [_served(client, i, alice) for i in (clean, bad)]
    _apply(app, _verdict_body(app, clean, stores.etag(clean), "NO_THREATS_FOUND"))
    _apply(app, _verdict_body(app, bad, stores.etag(bad), "THREATS_FOUND", "X"))
    after = {i: _served(client, i, alice) for i in (clean, bad)}

    assert [b["urls"] for b in before] == [[], []]
    assert [b["codes"] for b in before] == [["not_scanned"] * 3] * 2
    assert after[bad]["urls"] == []
    assert after[bad]["codes"] == ["infected"] * 3
    assert len(after[clean]["urls"]) >= 2
    for url in after[clean]["urls"]:
        assert verify_url(url, public).resource.startswith(f"{CDN}/u/{clean[-20:]}/{clean}/")


def test_cdn_cookies_of_another_user_never_reach_an_image(
    cdn_guarded: tuple[FastAPI, bytes],
    alice: dict[str, str],
    bob: dict[str, str],
    put_bytes: PutBytes,
    stores: Stores,
) -> None:
    app, public = cdn_guarded
    client = TestClient(app)
    image_id = _created(app, alice, put_bytes, make_image("image/png"))
    _apply(app, _verdict_body(app, image_id, stores.etag(image_id), "NO_THREATS_FOUND"))
    answer = client.post("/cdn-cookies", headers=bob)
    jar: SimpleCookie = SimpleCookie()
    for header in answer.headers.get_list("set-cookie"):
        jar.load(header)
    cookies = {name: morsel.value for name, morsel in jar.items()}

    assert answer.status_code == 204
    assert len(cookies) == 3
    assert stores.keys()
    for key in stores.keys():  # noqa: SIM118 - the bucket, not a dict
        with pytest.raises(Refused, match="does not cover"):
            verify_cookies(cookies, f"{CDN}/{key}", public)
    as_bob = [
        client.get(f"/images/{image_id}{tail}", headers=bob)
        for tail in ("", "/download", "/download?variant=thumb")
    ]
    missing = client.get(f"/images/{'0' * 24}{image_id[-20:]}", headers=alice)
    assert [refusal(a) for a in as_bob] == [refusal(missing)] * 3
    assert all(image_id not in json.dumps(i) for i in client.get("/images", headers=bob).json())


# --- clamd misbehaving ---------------------------------------------------------------------


@contextmanager
def fake_clamd(answer: Callable[[socket.socket, bytes], None]) -> Iterator[str]:
    """A clamd stand-in on a unix socket: VERSION answered at once, INSTREAM handed to
    `answer` with the command read so far; its address."""
    directory = tempfile.mkdtemp(prefix="fake-clamd-")
    path = os.path.join(directory, "clamd.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(8)
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(10)
                command = connection.recv(10)
                if command.startswith(b"zVERSION"):
                    connection.sendall(b"ClamAV 1.4.3/1/Fake\0")
                    continue
                with suppress(OSError):
                    answer(connection, command)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"unix://{path}"
    finally:
        stop.set()
        thread.join(5)
        server.close()


def _read_stream(connection: socket.socket, first: bytes, delay: float = 0.0) -> bytes:
    """Read an INSTREAM's chunks (sleeping `delay` before each, as a busy clamd would)."""
    buffer = first.removeprefix(b"zINSTREAM\0")
    data = b""

    def take(n: int) -> bytes:
        nonlocal buffer
        while len(buffer) < n:
            chunk = connection.recv(65536)
            if not chunk:
                raise OSError("closed")
            buffer += chunk
        out, buffer = buffer[:n], buffer[n:]
        return out

    while True:
        (length,) = struct.unpack(">I", take(4))
        if length == 0:
            return data
        time.sleep(delay)
        data += take(length)


def test_silent_clamd_is_unavailable_within_the_timeout_never_clean() -> None:
    with fake_clamd(lambda c, first: (_read_stream(c, first), time.sleep(3))) as address:
        scanner = ClamdScanner(address, timeout=0.5)
        began = time.monotonic()
        with pytest.raises(ScannerUnavailable):
            scanner.examine(b"x" * 1000)
        took = time.monotonic() - began

    assert took < 2


def test_clamd_closing_mid_answer_is_unavailable_never_clean() -> None:
    def half(connection: socket.socket, first: bytes) -> None:
        _read_stream(connection, first)
        connection.sendall(b"stream: O")

    with fake_clamd(half) as address, pytest.raises(ScannerUnavailable):
        ClamdScanner(address, timeout=2).examine(b"x" * 1000)


def test_slow_clamd_scan_is_bounded_by_the_scan_timeout() -> None:
    """README (Sizing the worker for clamd): the worker's Lambda timeout is 180 + 120 +
    5 x IMAGES_SCAN_TIMEOUT_SECONDS, each image's scan budget. A clamd reading the
    stream slowly (busy, each chunk within the timeout) keeps one scan far past it."""

    def slow(connection: socket.socket, first: bytes) -> None:
        _read_stream(connection, first, delay=0.3)
        connection.sendall(b"stream: OK\0")

    timeout = 0.5
    data = b"\0" * (12 * 256 * 1024)  # 12 chunks of 256 KiB
    with fake_clamd(slow) as address:
        scanner = ClamdScanner(address, timeout=timeout)
        began = time.monotonic()
        with suppress(ScannerUnavailable):
            scanner.examine(data)
        took = time.monotonic() - began

    assert took <= 2 * timeout, f"one scan took {took:.1f} s against a {timeout} s budget"


# --- With the real clamd ---------------------------------------------------------------------


@pytest.fixture
def clamav_app(make_app: AppFactory, clamd_address: str) -> FastAPI:
    return make_app(scan="clamav", clamd=clamd_address)


@pytest.mark.clamav
def test_eicar_hidden_in_a_png_chunk_is_found_and_removed_by_real_clamd(
    clamav_app: FastAPI, alice: dict[str, str], put_bytes: PutBytes, stores: Stores
) -> None:
    """Not appended: inside the container, in a private ancillary chunk (its CRC right)."""
    image_id = _confirmed(clamav_app, alice, put_bytes, _png_with_padding(10, inside=EICAR))

    _worked(clamav_app)
    served = _served(TestClient(clamav_app), image_id, alice)

    assert served["image"]["scan"]["status"] == "infected"
    assert served["urls"] == []
    assert stores.keys() == []
    assert stores.usage("alice") == (0, 0)


@pytest.mark.clamav
def test_direct_upload_replay_after_real_clamd_found_malware_never_writes_it_again(
    clamav_app: FastAPI, alice: dict[str, str], stores: Stores
) -> None:
    client = TestClient(clamav_app)
    key = {"Idempotency-Key": "direct-infected-real"}
    files = {"file": ("a.png", polyglot(), "image/png")}
    first = client.post("/images/direct", files=files, headers={**alice, **key})
    assert first.status_code == 201, first.text
    _worked(clamav_app)
    assert stores.keys() == []

    replay = client.post("/images/direct", files=files, headers={**alice, **key})

    assert stores.keys() == [], "the replay wrote the infected bytes back into the bucket"
    assert replay.status_code != 404, replay.json()
