"""IMAGES_SCAN=guardduty: GuardDuty Malware Protection for S3 scans each upload in S3, its
result events reach the worker through the uploads queue (an EventBridge rule), and the
worker applies them. Events shaped exactly as AWS documents them (tests/events/)."""

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.pipeline.notifications import uploads_in
from app.storage.items import object_key
from tests.conftest import AppFactory, PutBytes, new_image, refusal
from tests.imagefiles import make_image
from tests.stores import Stores

SAMPLE = json.loads(
    (Path(__file__).parent / "events" / "guardduty-malware-scan-result.json").read_text()
)


def scan_result(
    bucket: str, key: str, etag: str, result: str, threats: list[str] | None = None
) -> str:
    event: dict[str, Any] = copy.deepcopy(SAMPLE)
    details = event["detail"]["s3ObjectDetails"]
    details.update(bucketName=bucket, objectKey=key, eTag=etag.strip('"'))
    event["detail"]["scanResultDetails"] = {
        "scanResultStatus": result,
        "threats": [{"name": name} for name in threats] if threats else None,
    }
    return json.dumps(event)


@pytest.fixture
def guarded(make_app: AppFactory) -> FastAPI:
    return make_app(scan="guardduty")


def _uploaded(app: FastAPI, user: dict[str, str], put_bytes: PutBytes) -> str:
    client = TestClient(app)
    data = make_image("image/png", width=400, height=300)
    created = client.post("/images", json=new_image("image/png", data), headers=user).json()
    image_id: str = created["image"]["id"]
    put_bytes(image_id, data, "image/png")
    return image_id


def _verdict(app: FastAPI, stores: Stores, image_id: str, result: str, *threats: str) -> str:
    """GuardDuty's result for the image's current bytes, as the worker takes it."""
    settings = app.state.services.settings
    body = scan_result(
        settings.bucket, object_key(image_id), stores.etag(image_id), result, list(threats)
    )
    (upload,) = uploads_in(body, settings.bucket)
    outcome: str = app.state.services.worker.process(upload)
    return outcome


def test_an_upload_waits_unserved_for_guardduty(
    guarded: FastAPI, alice: dict[str, str], put_bytes: PutBytes, stores: Stores
) -> None:
    image_id = _uploaded(guarded, alice, put_bytes)

    outcome = guarded.state.services.worker.process(stores.announced(image_id))
    image = TestClient(guarded).get(f"/images/{image_id}", headers=alice).json()

    assert outcome == "waiting for GuardDuty's verdict"
    assert (image["status"], image["scan"]["status"]) == ("ready", "pending")
    assert [v["url"] for v in image["variants"].values()] == [None, None]


def test_no_threats_found_makes_the_image_served(
    guarded: FastAPI, alice: dict[str, str], put_bytes: PutBytes, stores: Stores
) -> None:
    image_id = _uploaded(guarded, alice, put_bytes)
    guarded.state.services.worker.process(stores.announced(image_id))

    outcome = _verdict(guarded, stores, image_id, "NO_THREATS_FOUND")
    image = TestClient(guarded).get(f"/images/{image_id}", headers=alice).json()

    assert outcome == "done"
    assert image["scan"]["status"] == "clean"
    assert image["variants"]["thumb"]["url"] is not None


def test_threats_found_removes_the_image_and_names_them(
    guarded: FastAPI, alice: dict[str, str], put_bytes: PutBytes, stores: Stores
) -> None:
    image_id = _uploaded(guarded, alice, put_bytes)

    outcome = _verdict(guarded, stores, image_id, "THREATS_FOUND", "EICAR-Test-File (not a virus)")
    download = TestClient(guarded).get(f"/images/{image_id}/download", headers=alice)

    assert outcome == "infected: EICAR-Test-File (not a virus)"
    assert refusal(download) == (409, "infected")
    assert stores.keys() == []
    assert stores.usage("alice") == (0, 0)


@pytest.mark.parametrize("result", ["UNSUPPORTED", "ACCESS_DENIED", "FAILED"])
def test_a_scan_guardduty_could_not_make_is_failed_and_never_served(
    guarded: FastAPI, alice: dict[str, str], put_bytes: PutBytes, stores: Stores, result: str
) -> None:
    image_id = _uploaded(guarded, alice, put_bytes)

    _verdict(guarded, stores, image_id, result)
    image = TestClient(guarded).get(f"/images/{image_id}", headers=alice).json()
    download = TestClient(guarded).get(f"/images/{image_id}/download", headers=alice)

    assert image["scan"] == {
        "status": "failed",
        "signature": None,
        "reason": f"GuardDuty: {result}",
    }
    assert refusal(download) == (409, "scan_failed")


def test_a_verdict_before_anyone_confirmed_confirms_first(
    guarded: FastAPI, alice: dict[str, str], put_bytes: PutBytes, stores: Stores
) -> None:
    image_id = _uploaded(guarded, alice, put_bytes)  # S3's own notification not seen yet

    _verdict(guarded, stores, image_id, "NO_THREATS_FOUND")
    image = TestClient(guarded).get(f"/images/{image_id}", headers=alice).json()

    assert (image["status"], image["width"], image["scan"]["status"]) == ("ready", 400, "clean")


def test_a_verdict_on_other_bytes_says_nothing_about_these(
    guarded: FastAPI, alice: dict[str, str], put_bytes: PutBytes, stores: Stores
) -> None:
    image_id = _uploaded(guarded, alice, put_bytes)
    settings = guarded.state.services.settings
    body = scan_result(settings.bucket, object_key(image_id), '"0123"', "THREATS_FOUND", ["X"])
    (upload,) = uploads_in(body, settings.bucket)

    outcome = guarded.state.services.worker.process(upload)

    assert outcome == "verdict on other bytes"
    assert stores.has_object(image_id)


@pytest.mark.parametrize(
    "change",
    [
        {"bucketName": "someone-else"},
        {"objectKey": "u/0123/not-an-original"},
    ],
)
def test_results_about_objects_not_ours_are_ignored(change: dict[str, str]) -> None:
    event = copy.deepcopy(SAMPLE)
    event["detail"]["s3ObjectDetails"].update(change)

    assert uploads_in(json.dumps(event), "images") == []


def test_the_documented_sample_is_read_as_its_verdict() -> None:
    event = copy.deepcopy(SAMPLE)
    image_id = "0" * 24 + "1" * 20
    event["detail"]["s3ObjectDetails"].update(bucketName="images", objectKey=object_key(image_id))

    (upload,) = uploads_in(json.dumps(event), "images")

    assert (upload.image_id, upload.etag) == (image_id, '"ASIAI44QH8DHBEXAMPLE"')
    assert upload.verdict is not None
    assert (upload.verdict.result, upload.verdict.threats) == (
        "THREATS_FOUND",
        ("EICAR-Test-File (not a virus)",),
    )


@pytest.mark.parametrize("result", ["NO_THREATS_FOUND", "UNSUPPORTED"])
def test_a_verdict_retags_the_original_ready_keeping_guardduty_s_tag(
    guarded: FastAPI,
    alice: dict[str, str],
    put_bytes: PutBytes,
    stores: Stores,
    result: str,
) -> None:
    """GuardDuty writes the whole tag set from what it read: read before confirm tagged
    the original ready, it would put `state=pending` back, and the lifecycle rule would
    reap a confirmed original."""
    image_id = _uploaded(guarded, alice, put_bytes)
    guarded.state.services.worker.process(stores.announced(image_id))  # confirmed, tagged
    settings = guarded.state.services.settings
    guarded.state.services.clients.s3.put_object_tagging(
        Bucket=settings.bucket,
        Key=object_key(image_id),
        Tagging={
            "TagSet": [
                {"Key": "state", "Value": "pending"},
                {"Key": "GuardDutyMalwareScanStatus", "Value": result},
            ]
        },
    )

    _verdict(guarded, stores, image_id, result)

    assert stores.tags(image_id) == [
        {"Key": "state", "Value": "ready"},
        {"Key": "GuardDutyMalwareScanStatus", "Value": result},
    ]


def test_a_verdict_under_another_scanning_mode_marks_nothing_clean(
    make_app: AppFactory,
    alice: dict[str, str],
    put_bytes: PutBytes,
    stores: Stores,
    tmp_path: Path,
) -> None:
    app = make_app(scan="clamav", clamd=f"unix://{tmp_path}/down.sock")
    image_id = _uploaded(app, alice, put_bytes)

    outcome = _verdict(app, stores, image_id, "NO_THREATS_FOUND")
    image = TestClient(app).get(f"/images/{image_id}", headers=alice).json()

    assert outcome == "GuardDuty's verdict ignored: scanning is clamav"
    assert image["scan"]["status"] == "pending"
    assert image["variants"]["thumb"]["url"] is None
