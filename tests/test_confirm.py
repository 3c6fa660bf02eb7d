"""POST /images/{id}/confirm: presence, size, real image bytes, idempotency."""

from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError
from fastapi.testclient import TestClient

from app.storage.clients import AwsClients
from tests.conftest import Drain, Uploader, refusal
from tests.imagefiles import FORMATS, make_image, not_a_png
from tests.stores import Stores

PutBytes = Callable[[str, bytes, str], None]


@pytest.mark.parametrize("content_type", list(FORMATS))
def test_confirm_makes_image_ready_with_dimensions(
    client: TestClient,
    alice: dict[str, str],
    create: Uploader,
    put_bytes: PutBytes,
    content_type: str,
) -> None:
    data = make_image(content_type, width=41, height=17)
    image = create(alice, content_type, data)
    put_bytes(image["id"], data, content_type)

    response = client.post(f"/images/{image['id']}/confirm", headers=alice)

    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["width"], body["height"]) == ("ready", 41, 17)
    assert body["uploaded_at"] is not None


def test_confirm_twice_returns_same_image(
    client: TestClient, alice: dict[str, str], upload: Uploader
) -> None:
    image = upload(alice)

    response = client.post(f"/images/{image['id']}/confirm", headers=alice)

    assert response.status_code == 200
    assert response.json() == image


def test_confirm_before_upload_is_409(
    client: TestClient, alice: dict[str, str], create: Uploader
) -> None:
    image = create(alice)

    response = client.post(f"/images/{image['id']}/confirm", headers=alice)

    assert refusal(response) == (409, "not_uploaded")
    assert "PUT" in response.json()["detail"]


def test_confirm_size_mismatch_is_422_and_deletes_object(
    client: TestClient, alice: dict[str, str], create: Uploader, put_bytes: PutBytes, stores: Stores
) -> None:
    data = make_image()
    image = create(alice, data=data)
    put_bytes(image["id"], data + b"extra", "image/png")

    response = client.post(f"/images/{image['id']}/confirm", headers=alice)

    assert refusal(response) == (422, "invalid_image")
    assert "declared" in response.json()["detail"]
    assert not stores.has_object(image["id"])


@pytest.mark.parametrize(
    "fake",
    [
        b"<html><script>alert(1)</script></html>".ljust(200, b" "),
        b"\x89PNG\r\n\x1a\n" + b"\0" * 200,
        b"\x89PNG\r\n\x1a\n<html><body>not an image</body></html>".ljust(200, b" "),
    ],
)
def test_confirm_non_image_bytes_is_422_and_deletes_object(
    client: TestClient,
    alice: dict[str, str],
    create: Uploader,
    put_bytes: PutBytes,
    fake: bytes,
    stores: Stores,
) -> None:
    image = create(alice, data=fake)
    put_bytes(image["id"], fake, "image/png")

    response = client.post(f"/images/{image['id']}/confirm", headers=alice)

    assert refusal(response) == (422, "invalid_image")
    assert response.json() == {
        "detail": "The uploaded bytes are not a valid image/png image",
        "code": "invalid_image",
    }
    assert not stores.has_object(image["id"])


def test_confirm_other_format_than_declared_is_422(
    client: TestClient, alice: dict[str, str], create: Uploader, put_bytes: PutBytes
) -> None:
    jpeg = make_image("image/jpeg")
    image = create(alice, "image/png", jpeg)
    put_bytes(image["id"], jpeg, "image/png")

    response = client.post(f"/images/{image['id']}/confirm", headers=alice)

    assert refusal(response) == (422, "invalid_image")


def test_confirm_rejected_image_is_never_listed(
    client: TestClient, alice: dict[str, str], create: Uploader, put_bytes: PutBytes
) -> None:
    image = create(alice, data=b"GIF89a" + b"\0" * 100)
    put_bytes(image["id"], b"GIF89a" + b"\0" * 100, "image/png")
    client.post(f"/images/{image['id']}/confirm", headers=alice)

    response = client.get("/images", headers=alice)

    assert response.status_code == 200
    assert response.json()["items"] == []


def test_confirm_after_rejection_and_reupload_succeeds(
    client: TestClient, alice: dict[str, str], create: Uploader, put_bytes: PutBytes
) -> None:
    data = make_image()
    image = create(alice, data=data)
    put_bytes(image["id"], b"x" * len(data), "image/png")
    rejected = client.post(f"/images/{image['id']}/confirm", headers=alice)
    put_bytes(image["id"], data, "image/png")

    response = client.post(f"/images/{image['id']}/confirm", headers=alice)

    assert refusal(rejected) == (422, "invalid_image")
    assert response.status_code == 200
    assert response.json()["status"] == "ready"


def test_confirm_other_users_image_is_404_and_changes_nothing(
    client: TestClient,
    alice: dict[str, str],
    bob: dict[str, str],
    pending: Uploader,
) -> None:
    image = pending(alice)

    response = client.post(f"/images/{image['id']}/confirm", headers=bob)

    assert refusal(response) == (404, "not_found")
    assert response.json() == {"detail": "Image not found", "code": "not_found"}
    assert client.get(f"/images/{image['id']}", headers=alice).json()["status"] == "pending"


def test_confirm_unknown_id_is_404(client: TestClient, alice: dict[str, str]) -> None:
    response = client.post("/images/0123456789abcdef0123456789abcdef/confirm", headers=alice)

    assert refusal(response) == (404, "not_found")
    assert response.json() == {"detail": "Image not found", "code": "not_found"}


@pytest.fixture
def s3_refuses_reads(clients: AwsClients, monkeypatch: pytest.MonkeyPatch) -> None:
    """What S3 answers a caller that may not list the bucket, for any key: 403."""

    def denied(**_: Any) -> Any:
        raise ClientError(
            {
                "Error": {"Code": "AccessDenied", "Message": "Access Denied"},
                "ResponseMetadata": {"HTTPStatusCode": 403},
            },
            "GetObject",
        )

    monkeypatch.setattr(clients.s3, "get_object", denied)


def test_confirm_before_upload_is_409_when_s3_answers_403_for_the_missing_key(
    client: TestClient,
    alice: dict[str, str],
    create: Uploader,
    s3_refuses_reads: None,
) -> None:
    image = create(alice)

    response = client.post(f"/images/{image['id']}/confirm", headers=alice)

    assert refusal(response) == (409, "not_uploaded")
    assert "PUT" in response.json()["detail"]


def test_confirm_when_s3_refuses_an_uploaded_object_is_503(
    client: TestClient,
    alice: dict[str, str],
    pending: Uploader,
    s3_refuses_reads: None,
) -> None:
    """The object is there (a listing shows it): a real refusal, not "nothing uploaded"."""
    image = pending(alice)

    response = client.post(f"/images/{image['id']}/confirm", headers=alice)

    assert response.status_code == 503
    assert "AccessDenied" in response.json()["detail"]


REFUSED_PNG = "The uploaded bytes are not a valid image/png image"


def test_rejected_upload_shows_rejected_with_its_reason(
    client: TestClient, alice: dict[str, str], create: Uploader, put_bytes: PutBytes
) -> None:
    image = create(alice, data=not_a_png())
    put_bytes(image["id"], not_a_png(), "image/png")
    client.post(f"/images/{image['id']}/confirm", headers=alice)

    got = client.get(f"/images/{image['id']}", headers=alice).json()
    listed = client.get("/images?status=rejected", headers=alice).json()["items"]

    assert (got["status"], got["reason"]) == ("rejected", REFUSED_PNG)
    assert [item["id"] for item in listed] == [image["id"]]


def test_confirm_after_the_worker_refused_the_bytes_is_422_with_its_reason(
    client: TestClient,
    alice: dict[str, str],
    create: Uploader,
    put_bytes: PutBytes,
    drain: Drain,
    stores: Stores,
) -> None:
    image = create(alice, data=not_a_png())
    put_bytes(image["id"], not_a_png(), "image/png")
    drain()  # the worker got there first

    response = client.post(f"/images/{image['id']}/confirm", headers=alice)

    assert refusal(response) == (422, "invalid_image")
    assert response.json() == {"detail": REFUSED_PNG, "code": "invalid_image"}
    assert not stores.has_object(image["id"])


def test_confirm_while_the_worker_refuses_the_bytes_is_422_with_its_reason(
    app: Any,
    client: TestClient,
    alice: dict[str, str],
    create: Uploader,
    put_bytes: PutBytes,
    drain: Drain,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Confirm reads the record (pending), the worker refuses and removes the bytes, then
    confirm looks for them: it answers the worker's verdict, not "nothing uploaded"."""
    image = create(alice, data=not_a_png())
    put_bytes(image["id"], not_a_png(), "image/png")
    objects = app.state.services.storage.objects
    read_prefix = objects.read_prefix

    def worker_first(*args: Any) -> Any:
        monkeypatch.setattr(objects, "read_prefix", read_prefix)
        drain()
        return read_prefix(*args)

    monkeypatch.setattr(objects, "read_prefix", worker_first)

    response = client.post(f"/images/{image['id']}/confirm", headers=alice)

    assert refusal(response) == (422, "invalid_image")
    assert response.json() == {"detail": REFUSED_PNG, "code": "invalid_image"}


def test_rejected_upload_put_again_with_valid_bytes_is_ready_without_a_reason(
    client: TestClient,
    alice: dict[str, str],
    create: Uploader,
    put_bytes: PutBytes,
    drain: Drain,
) -> None:
    data = make_image()
    image = create(alice, data=data)
    put_bytes(image["id"], not_a_png(len(data)), "image/png")
    drain()
    put_bytes(image["id"], data, "image/png")

    drain()  # no confirm call: the worker confirms the new bytes
    got = client.get(f"/images/{image['id']}", headers=alice).json()

    assert (got["status"], got["reason"]) == ("ready", None)
