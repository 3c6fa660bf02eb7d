"""Abandoned uploads, quotas and the pixel cap: nothing piles up, nobody takes all."""

import json
import struct
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.storage.clients import AwsClients
from app.storage.items import object_key
from tests.conftest import SECRET, AppFactory, Clock, Uploader, bearer, refusal
from tests.imagefiles import make_image
from tests.stores import Stores

PutBytes = Callable[[str, bytes, str], None]


def _sweep(app: Any) -> int:
    removed: int = app.state.services.maintenance.sweep().removed
    return removed


def test_uploaded_object_carries_pending_tag(
    alice: dict[str, str], create: Uploader, put_bytes: PutBytes, stores: Stores
) -> None:
    image = create(alice)
    put_bytes(image["id"], make_image(), "image/png")

    assert stores.tags(image["id"]) == [{"Key": "state", "Value": "pending"}]


def test_confirm_tags_object_ready(alice: dict[str, str], upload: Uploader, stores: Stores) -> None:
    image = upload(alice)

    assert stores.tags(image["id"]) == [{"Key": "state", "Value": "ready"}]


def test_sweep_removes_an_upload_whose_bytes_never_came(
    app: Any,
    alice: dict[str, str],
    create: Uploader,
    settings: Settings,
    clock: Clock,
    stores: Stores,
) -> None:
    image = create(alice)
    clock.advance(settings.upload_deadline_seconds + 1)

    removed = _sweep(app)

    assert removed == 1
    assert stores.stored(image["id"]) == (False, False)
    assert stores.usage("alice") == (0, 0)


def test_sweep_keeps_uploads_within_deadline(
    app: Any,
    alice: dict[str, str],
    create: Uploader,
    settings: Settings,
    clock: Clock,
    stores: Stores,
) -> None:
    image = create(alice)
    clock.advance(settings.upload_deadline_seconds - 10)

    removed = _sweep(app)

    assert removed == 0
    assert stores.stored(image["id"]) == (True, False)


def test_sweep_never_touches_ready_images(
    app: Any,
    client: TestClient,
    alice: dict[str, str],
    upload: Uploader,
    clock: Clock,
    settings: Settings,
) -> None:
    image = upload(alice)
    clock.advance(settings.upload_deadline_seconds * 10)

    removed = _sweep(app)

    assert removed == 0
    assert client.get(f"/images/{image['id']}/download", headers=alice).status_code == 200


def test_sweep_finishes_an_interrupted_delete(
    app: Any, alice: dict[str, str], upload: Uploader, clock: Clock, stores: Stores
) -> None:
    image = upload(alice)
    app.state.services.storage.table.mark_deleting(
        image["id"], "alice", int(clock.now.timestamp()) + 3600
    )
    clock.advance(3601)

    removed = _sweep(app)

    assert removed == 1
    assert stores.stored(image["id"]) == (False, False)


def test_confirm_of_an_upload_swept_for_want_of_bytes_is_404(
    app: Any,
    client: TestClient,
    alice: dict[str, str],
    create: Uploader,
    clock: Clock,
    settings: Settings,
) -> None:
    image = create(alice)
    clock.advance(settings.upload_deadline_seconds + 1)
    _sweep(app)

    response = client.post(f"/images/{image['id']}/confirm", headers=alice)

    assert refusal(response) == (404, "not_found")


def test_sweep_command_prints_its_report(
    app: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.__main__ import main  # noqa: PLC0415

    monkeypatch.setenv("IMAGES_JWT_SECRET", SECRET)
    main(["sweep", "--seconds", "30"])  # against the same in-process moto

    report = json.loads(capsys.readouterr().out)
    assert (report["removed"], report["complete"], report["backlog_shards"]) == (0, True, [])


def test_reconcile_command_prints_what_it_found(
    alice: dict[str, str],
    upload: Uploader,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.__main__ import main  # noqa: PLC0415

    image = upload(alice)
    monkeypatch.setenv("IMAGES_JWT_SECRET", SECRET)
    monkeypatch.setenv("IMAGES_RECONCILE_SETTLE_SECONDS", "0")
    main(["reconcile", "alice"])

    result = json.loads(capsys.readouterr().out)
    assert (result["drift"], result["fixed"]) == (False, False)
    assert result["counted"]["images"] == 1
    assert result["counted"]["bytes"] == image["size"]


@pytest.fixture
def small_quota(make_app: AppFactory) -> tuple[TestClient, Settings]:
    application = make_app(max_images_per_user=2, max_bytes_per_user=5000)
    return TestClient(application), application.state.services.settings


def _declare(client: TestClient, headers: dict[str, str], size: int = 100) -> Any:
    return client.post(
        "/images",
        headers=headers,
        json={"filename": "a.png", "content_type": "image/png", "size": size},
    )


def _ready(client: TestClient, headers: dict[str, str], settings: Settings) -> str:
    data = make_image(width=8, height=8)
    created = _declare(client, headers, len(data))
    assert created.status_code == 201, created.text
    image_id: str = created.json()["image"]["id"]
    AwsClients(settings).s3.put_object(
        Bucket=settings.bucket, Key=object_key(image_id), Body=data, ContentType="image/png"
    )
    assert client.post(f"/images/{image_id}/confirm", headers=headers).status_code == 200
    return image_id


def test_create_over_image_quota_is_429(small_quota: tuple[TestClient, Settings]) -> None:
    client, settings = small_quota
    alice = bearer(settings, "alice")
    _ready(client, alice, settings)
    _ready(client, alice, settings)

    response = _declare(client, alice)

    assert refusal(response) == (429, "quota_images")
    assert response.json()["detail"].startswith("Image quota reached: 2 images per user")
    assert "retry-after" not in response.headers  # waiting does not help; deleting does


def test_pending_upload_counts_against_image_quota(
    small_quota: tuple[TestClient, Settings],
) -> None:
    client, settings = small_quota
    alice = bearer(settings, "alice")
    _declare(client, alice)
    _ready(client, alice, settings)

    response = _declare(client, alice)

    assert refusal(response) == (429, "quota_images")


def test_confirm_is_never_refused_for_quota(small_quota: tuple[TestClient, Settings]) -> None:
    client, settings = small_quota
    alice = bearer(settings, "alice")
    data = make_image(width=8, height=8)
    first = _declare(client, alice, len(data)).json()["image"]["id"]
    _ready(client, alice, settings)  # the quota is now full, the first upload included
    AwsClients(settings).s3.put_object(
        Bucket=settings.bucket, Key=object_key(first), Body=data, ContentType="image/png"
    )

    response = client.post(f"/images/{first}/confirm", headers=alice)

    assert response.status_code == 200
    assert response.json()["status"] == "ready"


def test_quota_is_per_user(small_quota: tuple[TestClient, Settings]) -> None:
    client, settings = small_quota
    alice, bob = bearer(settings, "alice"), bearer(settings, "bob")
    _ready(client, alice, settings)
    _ready(client, alice, settings)

    response = _declare(client, bob)

    assert response.status_code == 201


def test_delete_gives_quota_back(small_quota: tuple[TestClient, Settings]) -> None:
    client, settings = small_quota
    alice = bearer(settings, "alice")
    first = _ready(client, alice, settings)
    _ready(client, alice, settings)
    client.delete(f"/images/{first}", headers=alice)
    client.delete(f"/images/{first}", headers=alice)  # a repeat must not give back twice

    _ready(client, alice, settings)
    refused = _declare(client, alice)

    assert refusal(refused) == (429, "quota_images")


def test_deleting_a_pending_upload_gives_quota_back(
    small_quota: tuple[TestClient, Settings],
) -> None:
    client, settings = small_quota
    alice = bearer(settings, "alice")
    abandoned = _declare(client, alice).json()["image"]["id"]
    _ready(client, alice, settings)
    client.delete(f"/images/{abandoned}", headers=alice)

    response = _declare(client, alice)

    assert response.status_code == 201


def test_create_over_byte_quota_is_413(small_quota: tuple[TestClient, Settings]) -> None:
    client, settings = small_quota
    alice = bearer(settings, "alice")
    _ready(client, alice, settings)

    response = _declare(client, alice, size=4950)

    assert refusal(response) == (413, "quota_bytes")
    assert "Storage quota exceeded" in response.json()["detail"]


def test_pending_bytes_count_against_byte_quota(
    small_quota: tuple[TestClient, Settings],
) -> None:
    client, settings = small_quota
    alice = bearer(settings, "alice")
    _declare(client, alice, size=4000)  # never uploaded

    response = _declare(client, alice, size=1001)

    assert refusal(response) == (413, "quota_bytes")


def test_unconfirmed_uploads_bound_is_429_with_retry_after(make_app: AppFactory) -> None:
    application = make_app(max_pending_uploads=3)
    client, alice = TestClient(application), bearer(application.state.services.settings, "alice")
    statuses = [_declare(client, alice).status_code for _ in range(3)]

    refused = _declare(client, alice)

    assert statuses == [201] * 3
    assert refusal(refused) == (429, "rate_limited")
    assert refused.headers["retry-after"] == "5"
    assert "Too many unconfirmed uploads: at most 3" in refused.json()["detail"]


def test_confirming_frees_an_unconfirmed_upload_slot(make_app: AppFactory) -> None:
    application = make_app(max_pending_uploads=1)
    client, settings = TestClient(application), application.state.services.settings
    alice = bearer(settings, "alice")
    _ready(client, alice, settings)

    response = _declare(client, alice)

    assert response.status_code == 201


def test_unconfirmed_bytes_bound_is_429_with_retry_after(make_app: AppFactory) -> None:
    application = make_app(max_pending_bytes=1000)
    client, alice = TestClient(application), bearer(application.state.services.settings, "alice")
    _declare(client, alice, size=600)

    refused = _declare(client, alice, size=600)

    assert refusal(refused) == (429, "rate_limited")
    assert refused.headers["retry-after"] == "5"
    assert "Too many bytes in unconfirmed uploads" in refused.json()["detail"]


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR (valid CRC) claims any size, followed by a tiny IDAT."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(("width", "height"), [(100_000, 100_000), (40_001, 1000), (1, 2**31 - 1)])
def test_confirm_refuses_decompression_bomb_dimensions(
    client: TestClient,
    alice: dict[str, str],
    create: Uploader,
    put_bytes: PutBytes,
    width: int,
    height: int,
) -> None:
    bomb = _png_header(width, height)
    image = create(alice, data=bomb)
    put_bytes(image["id"], bomb, "image/png")

    response = client.post(f"/images/{image['id']}/confirm", headers=alice)

    assert refusal(response) == (422, "invalid_image")
    assert "pixels" in response.json()["detail"]


def test_confirm_accepts_image_at_pixel_cap(make_app: AppFactory) -> None:
    application = make_app(max_pixels=6000)
    settings = application.state.services.settings
    client, alice = TestClient(application), bearer(settings, "alice")
    data = _png_header(100, 60)
    created = client.post(
        "/images",
        headers=alice,
        json={"filename": "a.png", "content_type": "image/png", "size": len(data)},
    ).json()
    application.state.services.clients.s3.put_object(
        Bucket=settings.bucket,
        Key=object_key(created["image"]["id"]),
        Body=data,
        ContentType="image/png",
    )

    response = client.post(f"/images/{created['image']['id']}/confirm", headers=alice)

    assert response.status_code == 200
    assert (response.json()["width"], response.json()["height"]) == (100, 60)
