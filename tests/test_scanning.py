"""Malware scanning with a real clamd (Debian's clamav-daemon) on a database of our own
(tests/clamav.py): nothing is served before it is clean; infected bytes are removed with
their variants, the quota given back and the operator told; a scanner that is down or
cannot judge never makes an image clean."""

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.pipeline import clamd, clamd_daemon
from app.pipeline.audit import INFECTED_METRIC
from app.pipeline.scanning import ClamdScanner, ScannerUnavailable
from app.storage.clients import AwsClients
from tests.clamav import (
    EICAR,
    LATER_MARKER,
    LATER_SIGNATURES,
    MARKER,
    SIGNATURES,
    clamd_missing,
    running_clamd,
    write_database,
)
from tests.conftest import AppFactory, PutBytes, deliver, new_image, refusal
from tests.imagefiles import make_image
from tests.stores import Stores

pytestmark = pytest.mark.clamav


@pytest.fixture(scope="session")
def updated_clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A clamd whose definitions were updated since: it also knows LATER_MARKER."""
    database = write_database(tmp_path_factory.mktemp("clamav-db-later"), LATER_SIGNATURES)
    with running_clamd(database) as address:
        yield address


@pytest.fixture
def scanning(make_app: AppFactory, clamd_address: str) -> FastAPI:
    return make_app(scan="clamav", clamd=clamd_address)


def _confirmed(
    app: FastAPI, user: dict[str, str], put_bytes: PutBytes, data: bytes, kind: str
) -> str:
    """Created, PUT and confirmed by the client: ready, not yet scanned."""
    client = TestClient(app)
    created = client.post("/images", json=new_image(kind, data), headers=user).json()
    image_id: str = created["image"]["id"]
    put_bytes(image_id, data, kind)
    assert client.post(f"/images/{image_id}/confirm", headers=user).status_code == 200
    return image_id


def _worked(app: FastAPI) -> list[dict[str, Any]]:
    services = app.state.services
    return deliver(services.worker, services.clients, services.settings)


def _served(client: TestClient, image_id: str, user: dict[str, str]) -> dict[str, Any]:
    """What the owner can get of an image: its JSON, and every download's answer."""
    image = client.get(f"/images/{image_id}", headers=user).json()
    return {
        "image": image,
        "urls": [v["url"] for v in image["variants"].values() if v["url"]],
        "downloads": [
            client.get(f"/images/{image_id}/download?variant={name}", headers=user)
            for name in ("original", "thumb", "preview")
        ],
    }


def polyglot(kind: str, tail: bytes = EICAR) -> bytes:
    """A valid image with bytes a scanner detects appended: its container check passes."""
    return make_image(kind, width=320, height=240) + tail


# --- The protocol ------------------------------------------------------------------------


def test_clamd_finds_the_eicar_string_and_passes_a_photo(clamd_address: str) -> None:
    infected = clamd.instream(clamd_address, polyglot("image/jpeg"), timeout=10)
    clean = clamd.instream(clamd_address, make_image("image/jpeg"), timeout=10)

    assert infected.signature == "Images.Test.EICAR.UNOFFICIAL"
    assert (clean.signature, clean.error) == (None, None)


def test_clamd_streams_a_20_mib_image_in_chunks(clamd_address: str) -> None:
    data = make_image("image/png", width=64, height=64) + b"\0" * (20 * 1024 * 1024) + MARKER

    found = clamd.instream(clamd_address, data, timeout=60)

    assert found.signature == "Images.Test.Marker.UNOFFICIAL"


def test_clamd_unreachable_is_unavailable_never_clean(tmp_path: Path) -> None:
    with pytest.raises(clamd.ClamdUnavailable):
        clamd.instream(f"unix://{tmp_path}/no-such.sock", b"x", timeout=2)


def test_own_clamd_that_died_is_started_again_for_the_next_scan(tmp_path: Path) -> None:
    missing = clamd_missing()
    if missing:
        pytest.skip(missing)
    own = clamd_daemon.start(write_database(tmp_path, SIGNATURES), 1 << 20, wait_seconds=60)
    scanner = ClamdScanner(own.address, timeout=10, revive=own.revive)
    own.stop()  # as the kernel's OOM killer would

    with pytest.raises(ScannerUnavailable):
        scanner.examine(polyglot("image/png"))
    verdict = scanner.examine(polyglot("image/png"))
    own.stop()

    assert verdict.signature == "Images.Test.EICAR.UNOFFICIAL"


@pytest.mark.parametrize(
    ("answer", "signature", "error"),
    [
        ("stream: OK", None, None),
        ("stream: Win.Test.EICAR_HDB-1 FOUND", "Win.Test.EICAR_HDB-1", None),
        ("INSTREAM size limit exceeded. ERROR", None, "INSTREAM size limit exceeded"),
        ("something unexpected", None, "clamd answered 'something unexpected'"),
    ],
)
def test_clamd_answers_are_read_as_clamd_writes_them(
    answer: str, signature: str | None, error: str | None
) -> None:
    assert clamd.parse(answer) == clamd.Reply(signature, error)


# --- Nothing served before it is clean ---------------------------------------------------


def test_a_confirmed_image_is_not_served_before_its_scan(
    scanning: FastAPI, alice: dict[str, str], put_bytes: PutBytes
) -> None:
    client = TestClient(scanning)
    image_id = _confirmed(scanning, alice, put_bytes, make_image("image/jpeg"), "image/jpeg")

    served = _served(client, image_id, alice)
    listed = client.get("/images", headers=alice).json()["items"]

    assert served["image"]["scan"]["status"] == "pending"
    assert served["urls"] == []
    assert [refusal(answer) for answer in served["downloads"]] == [(409, "not_scanned")] * 3
    assert served["downloads"][0].headers["retry-after"] == "5"
    assert [item["scan"]["status"] for item in listed] == ["pending"]


def test_a_clean_photo_is_scanned_clean_then_made_and_served(
    scanning: FastAPI, alice: dict[str, str], put_bytes: PutBytes
) -> None:
    client = TestClient(scanning)
    image_id = _confirmed(scanning, alice, put_bytes, make_image("image/jpeg"), "image/jpeg")

    answers = _worked(scanning)
    served = _served(client, image_id, alice)

    assert answers == [{"batchItemFailures": []}]
    assert served["image"]["scan"] == {"status": "clean", "signature": None, "reason": None}
    assert len(served["urls"]) == 2
    assert [answer.status_code for answer in served["downloads"]] == [200] * 3


@pytest.mark.parametrize("kind", ["image/jpeg", "image/png"])
def test_eicar_appended_to_a_valid_image_ends_infected_and_is_never_served(
    scanning: FastAPI, alice: dict[str, str], put_bytes: PutBytes, stores: Stores, kind: str
) -> None:
    client = TestClient(scanning)
    image_id = _confirmed(scanning, alice, put_bytes, polyglot(kind), kind)
    assert stores.usage("alice")[0] == 1

    _worked(scanning)
    served = _served(client, image_id, alice)

    assert served["image"]["status"] == "rejected"
    assert served["image"]["scan"]["status"] == "infected"
    assert served["image"]["scan"]["signature"] == "Images.Test.EICAR.UNOFFICIAL"
    assert served["image"]["reason"] == "Malware found: Images.Test.EICAR.UNOFFICIAL"
    assert served["urls"] == []
    assert [refusal(answer) for answer in served["downloads"]] == [(409, "infected")] * 3
    assert stores.keys() == []  # the original, and no variant was ever made
    assert stores.usage("alice") == (0, 0)


def test_the_projects_marker_is_found_as_malware_too(
    scanning: FastAPI, alice: dict[str, str], put_bytes: PutBytes
) -> None:
    image_id = _confirmed(scanning, alice, put_bytes, polyglot("image/png", MARKER), "image/png")

    _worked(scanning)
    image = TestClient(scanning).get(f"/images/{image_id}", headers=alice).json()

    assert image["scan"]["signature"] == "Images.Test.Marker.UNOFFICIAL"


def test_eicar_alone_is_refused_by_confirm_already(
    scanning: FastAPI, alice: dict[str, str], create: Any, put_bytes: PutBytes
) -> None:
    image = create(alice, "image/png", EICAR)
    put_bytes(image["id"], EICAR, "image/png")

    answer = TestClient(scanning).post(f"/images/{image['id']}/confirm", headers=alice)

    assert refusal(answer) == (422, "invalid_image")


def test_an_infected_image_is_listed_among_the_rejected(
    scanning: FastAPI, alice: dict[str, str], put_bytes: PutBytes
) -> None:
    client = TestClient(scanning)
    image_id = _confirmed(scanning, alice, put_bytes, polyglot("image/png"), "image/png")
    _worked(scanning)

    rejected = client.get("/images?status=rejected", headers=alice).json()["items"]
    ready = client.get("/images", headers=alice).json()["items"]

    assert [(i["id"], i["scan"]["status"]) for i in rejected] == [(image_id, "infected")]
    assert ready == []


def test_infected_bytes_an_s3_would_not_delete_conditionally_are_removed_by_the_sweep(
    scanning: FastAPI,
    alice: dict[str, str],
    put_bytes: PutBytes,
    stores: Stores,
    clock: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """LocalStack answers NotImplemented to a delete with If-Match: the original stays,
    and the image with it in the sweep's index, until the sweep removes it all."""
    image_id = _confirmed(scanning, alice, put_bytes, polyglot("image/png"), "image/png")
    objects = scanning.state.services.storage.objects
    monkeypatch.setattr(objects, "delete_original", lambda *_: False)
    _worked(scanning)
    left = (stores.has_object(image_id), stores.sweep_index())
    monkeypatch.undo()

    settings = scanning.state.services.settings
    clock.advance(settings.upload_url_ttl_seconds + settings.finish_grace_seconds + 1)
    scanning.state.services.maintenance.sweep(None)

    assert left == (True, [image_id])
    assert (stores.keys(), stores.sweep_index()) == ([], [])
    assert stores.usage("alice") == (0, 0)


def test_finding_malware_tells_the_operator_who_what_and_which(
    scanning: FastAPI,
    alice: dict[str, str],
    put_bytes: PutBytes,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    image_id = _confirmed(scanning, alice, put_bytes, polyglot("image/jpeg"), "image/jpeg")

    with caplog.at_level(logging.WARNING, logger="app.audit"):
        _worked(scanning)
    (audit,) = [r for r in caplog.records if getattr(r, "audit", None) == "infected"]
    metrics = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line
    ]

    assert (audit.user_id, audit.image_id) == ("alice", image_id)  # type: ignore[attr-defined]
    assert audit.signature == "Images.Test.EICAR.UNOFFICIAL"  # type: ignore[attr-defined]
    assert [m[INFECTED_METRIC] for m in metrics] == [1]
    assert metrics[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "ImageService"


def test_an_infected_image_is_deleted_like_any_and_its_quota_comes_back_once(
    scanning: FastAPI, alice: dict[str, str], put_bytes: PutBytes, stores: Stores
) -> None:
    client = TestClient(scanning)
    kept = _confirmed(scanning, alice, put_bytes, make_image("image/png"), "image/png")
    infected = _confirmed(scanning, alice, put_bytes, polyglot("image/png"), "image/png")
    _worked(scanning)

    deleted = client.delete(f"/images/{infected}", headers=alice)
    after = client.get(f"/images/{infected}", headers=alice)

    assert deleted.status_code == 204
    assert refusal(after) == (404, "not_found")
    assert stores.usage("alice") == (1, len(make_image("image/png")))
    assert not scanning.state.services.maintenance.reconcile("alice").drift
    assert client.get(f"/images/{kept}", headers=alice).json()["scan"]["status"] == "clean"


def test_a_redelivered_message_after_a_clean_scan_changes_nothing(
    scanning: FastAPI, alice: dict[str, str], put_bytes: PutBytes, stores: Stores
) -> None:
    image_id = _confirmed(scanning, alice, put_bytes, make_image("image/png"), "image/png")
    _worked(scanning)
    before = stores.record(image_id)

    outcome = scanning.state.services.worker.process(stores.announced(image_id))

    assert outcome == "already done"
    assert stores.record(image_id) == before


# --- A scanner down, or unable to judge ---------------------------------------------------


def test_a_scanner_down_keeps_the_image_pending_until_it_is_back(
    make_app: AppFactory,
    clamd_address: str,
    alice: dict[str, str],
    put_bytes: PutBytes,
    tmp_path: Path,
) -> None:
    down = make_app(scan="clamav", clamd=f"unix://{tmp_path}/down.sock")
    image_id = _confirmed(down, alice, put_bytes, make_image("image/png"), "image/png")
    client = TestClient(down)

    failed = _redeliver(down, rounds=1)
    while_down = client.get(f"/images/{image_id}", headers=alice).json()
    services = down.state.services
    services.worker._screening._scanner = type(services.scanner)(clamd_address, 10)  # back up
    _redeliver(down)
    after = client.get(f"/images/{image_id}", headers=alice).json()

    assert failed == 1
    assert (while_down["scan"]["status"], while_down["variants"]["thumb"]["url"]) == (
        "pending",
        None,
    )
    assert after["scan"]["status"] == "clean"
    assert after["variants"]["thumb"]["url"] is not None


def test_a_scanner_that_cannot_judge_fails_the_image_after_bounded_attempts(
    make_app: AppFactory,
    alice: dict[str, str],
    put_bytes: PutBytes,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    database = write_database(tmp_path_factory.mktemp("small-stream-db"), SIGNATURES)
    with running_clamd(database, stream_bytes=1) as tiny:  # StreamMaxLength 1M
        app = make_app(scan="clamav", clamd=tiny, scan_attempts=3, max_upload_bytes=4 << 20)
        big = make_image("image/png", width=64, height=64) + b"\0" * (2 * 1024 * 1024)
        image_id = _confirmed(app, alice, put_bytes, big, "image/png")

        rounds = [_redeliver(app, rounds=1) for _ in range(4)]
        image = TestClient(app).get(f"/images/{image_id}", headers=alice).json()
        download = TestClient(app).get(f"/images/{image_id}/download", headers=alice)

    assert rounds[:2] == [1, 1]  # attempts 1 and 2: the message comes back
    assert rounds[2:] == [0, 0]  # the third is final: nothing comes back
    assert image["scan"]["status"] == "failed"
    assert "size limit" in image["scan"]["reason"]
    assert refusal(download) == (409, "scan_failed")


def _redeliver(app: FastAPI, rounds: int = 6) -> int:
    """Deliver what is queued until empty, a failed message coming back at once; how many
    failed in the last round."""
    services = app.state.services
    clients: AwsClients = services.clients
    url = clients.sqs.get_queue_url(QueueName=services.settings.queue)["QueueUrl"]
    failed: set[str] = set()
    for _ in range(rounds):
        messages = clients.sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=0
        ).get("Messages", [])
        if not messages:
            return 0
        answer = services.worker.handle(
            {"Records": [{"messageId": m["MessageId"], "body": m["Body"]} for m in messages]}
        )
        failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
        for message in messages:
            if message["MessageId"] not in failed:
                clients.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return len(failed)


# --- Rescans after a definitions update ---------------------------------------------------


def test_a_rescan_after_a_definitions_update_removes_what_is_now_detected(
    make_app: AppFactory,
    clamd_address: str,
    updated_clamd: str,
    alice: dict[str, str],
    put_bytes: PutBytes,
    stores: Stores,
) -> None:
    app = make_app(scan="clamav", clamd=clamd_address)
    client = TestClient(app)
    later = _confirmed(app, alice, put_bytes, polyglot("image/png", LATER_MARKER), "image/png")
    fine = _confirmed(app, alice, put_bytes, make_image("image/png"), "image/png")
    _worked(app)
    assert client.get(f"/images/{later}", headers=alice).json()["scan"]["status"] == "clean"

    app.state.services.worker._screening._scanner = type(app.state.services.scanner)(
        updated_clamd, 10
    )
    report = app.state.services.maintenance.rescan(most=100)
    _worked(app)

    assert report.complete
    assert client.get(f"/images/{later}", headers=alice).json()["scan"] == {
        "status": "infected",
        "signature": "Images.Test.Later.UNOFFICIAL",
        "reason": None,
    }
    assert client.get(f"/images/{fine}", headers=alice).json()["scan"]["status"] == "clean"
    assert all(fine in key for key in stores.keys())  # noqa: SIM118 - the bucket, not a dict


def test_a_rescan_is_bounded_and_resumes_where_it_stopped(
    scanning: FastAPI, alice: dict[str, str], put_bytes: PutBytes
) -> None:
    for _ in range(3):
        _confirmed(scanning, alice, put_bytes, make_image("image/png"), "image/png")
    _worked(scanning)
    maintenance = scanning.state.services.maintenance

    reports = [maintenance.rescan(most=2), maintenance.rescan(most=2)]

    assert [(r.queued, r.complete) for r in reports] == [(2, False), (1, True)]


def test_a_rescan_without_clamav_is_refused(make_app: AppFactory) -> None:
    from app.domain.errors import InvalidRequest  # noqa: PLC0415

    with pytest.raises(InvalidRequest, match="IMAGES_SCAN=clamav"):
        make_app().state.services.maintenance.rescan(most=10)


# --- Starting a clamd of its own (make run, the worker Lambda) -----------------------------


def test_clamav_without_clamd_installed_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(clamd_daemon.shutil, "which", lambda _: None)
    monkeypatch.setattr(clamd_daemon, "WELL_KNOWN_PLACES", (tmp_path / "clamd",))

    with pytest.raises(clamd_daemon.ClamdNotStarted, match="apt install clamav-daemon"):
        clamd_daemon.start(tmp_path, 1 << 20, wait_seconds=5)


def test_clamav_without_definitions_says_where_it_looked(tmp_path: Path) -> None:
    if clamd_daemon.shutil.which("clamd") is None and not any(
        place.exists() for place in clamd_daemon.WELL_KNOWN_PLACES
    ):
        pytest.skip("clamd is not installed: .ci/run installs Debian's clamav-daemon")

    with pytest.raises(clamd_daemon.ClamdNotStarted, match=f"{tmp_path} holds no ClamAV"):
        clamd_daemon.start(tmp_path, 1 << 20, wait_seconds=5)
