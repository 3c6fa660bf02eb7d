"""Against an S3 that checks what moto does not (LocalStack on the host): presigned
signatures, the signed size, type and headers, expiry, and conditional writes. What S3
must enforce for the service's promises is tested here."""

import sys
import time
from collections.abc import Iterator
from typing import Any

import boto3
import httpx2 as httpx
import pytest

from app.config import Settings
from app.domain.filenames import content_disposition
from app.domain.owners import new_image_id
from app.storage.clients import AwsClients
from app.storage.items import object_key
from app.storage.objects import ImageObjects
from tests.conftest import LOCALSTACK_CREDENTIALS, refusal
from tests.imagefiles import make_image
from tests.over_http import auth, create, put, upload
from tests.servers import running, wait_for

pytestmark = pytest.mark.http


@pytest.fixture(scope="module")
def objects(strict_env: dict[str, str], monkeypatch_module: pytest.MonkeyPatch) -> ImageObjects:
    """The service's own S3 store, pointed where the tier's service points."""
    for name, value in LOCALSTACK_CREDENTIALS.items():
        monkeypatch_module.setenv(name, value)
    settings = Settings(
        jwt_secret="x" * 32,
        bucket=strict_env["IMAGES_BUCKET"],
        aws_endpoint_url_s3=strict_env["AWS_ENDPOINT_URL_S3"],
    )
    clients = AwsClients(settings)
    clients.warm()  # now, with LocalStack's credentials (each test resets the env)
    return ImageObjects(clients, settings)


@pytest.fixture(scope="module")
def monkeypatch_module() -> Any:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def _tags(strict_env: dict[str, str], image_id: str) -> list[dict[str, str]]:
    s3 = boto3.client(
        "s3",
        endpoint_url=strict_env["AWS_ENDPOINT_URL_S3"],
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    try:
        tag_set = s3.get_object_tagging(
            Bucket=strict_env["IMAGES_BUCKET"], Key=object_key(image_id)
        )
        return [{"Key": t["Key"], "Value": t["Value"]} for t in tag_set["TagSet"]]
    finally:
        s3.close()


def test_lifecycle_through_an_s3_that_checks_signatures(strict_api: httpx.Client) -> None:
    data = make_image("image/jpeg", width=30, height=20)

    image = upload(strict_api, "alice", data, "image/jpeg")
    link = strict_api.get(f"/images/{image['id']}/download", headers=auth("alice")).json()
    downloaded = httpx.get(link["url"])

    assert (image["status"], image["width"], image["height"]) == ("ready", 30, 20)
    assert downloaded.status_code == 200
    assert downloaded.content == data


def test_second_put_after_confirm_is_412_and_the_verified_bytes_stay(
    strict_api: httpx.Client, strict_env: dict[str, str]
) -> None:
    first = make_image("image/png", color="red")
    created = create(strict_api, "alice", first, "image/png")
    put(created["upload"], first)
    strict_api.post(f"/images/{created['image']['id']}/confirm", headers=auth("alice"))

    again = put(created["upload"], first[::-1])  # other bytes, the same size
    link = strict_api.get(f"/images/{created['image']['id']}/download", headers=auth("alice"))

    assert again.status_code == 412
    assert httpx.get(link.json()["url"]).content == first
    assert _tags(strict_env, created["image"]["id"]) == [{"Key": "state", "Value": "ready"}]


def test_second_put_before_confirm_is_412_too(strict_api: httpx.Client) -> None:
    data = make_image("image/png")
    created = create(strict_api, "alice", data, "image/png")
    put(created["upload"], data)

    again = put(created["upload"], data[::-1])
    confirmed = strict_api.post(f"/images/{created['image']['id']}/confirm", headers=auth("alice"))

    assert again.status_code == 412
    assert confirmed.status_code == 200  # the first bytes, verified


@pytest.mark.parametrize(
    "changes",
    [
        {"If-None-Match": None},  # dropping the write-once condition
        {"x-amz-tagging": None},  # escaping the lifecycle rule
        {"x-amz-tagging": "state=ready"},
        {"Content-Type": "text/html"},
    ],
    ids=["no-if-none-match", "no-pending-tag", "ready-tag", "other-type"],
)
def test_put_that_departs_from_the_signed_headers_is_403(
    strict_api: httpx.Client, changes: dict[str, str | None]
) -> None:
    data = make_image("image/png")
    created = create(strict_api, "alice", data, "image/png")

    response = put(created["upload"], data, **changes)

    assert response.status_code == 403


def test_put_of_another_size_is_403(strict_api: httpx.Client) -> None:
    data = make_image("image/png")
    created = create(strict_api, "alice", data, "image/png")
    bigger = data + b"\0" * 10

    response = put(created["upload"], bigger, **{"Content-Length": str(len(bigger))})

    assert response.status_code == 403


def test_put_with_a_tampered_signature_is_403(strict_api: httpx.Client) -> None:
    data = make_image("image/png")
    upload_ = create(strict_api, "alice", data, "image/png")["upload"]
    url = upload_["url"][:-4] + ("0000" if not upload_["url"].endswith("0000") else "1111")

    response = put({**upload_, "url": url}, data)

    assert response.status_code == 403


def test_expired_upload_url_is_403(objects: ImageObjects) -> None:
    data = make_image("image/png")
    url, headers = objects.presign_put(new_image_id("0" * 20), "image/png", len(data), expires_in=1)
    time.sleep(2.1)  # S3 counts in whole seconds

    response = httpx.put(url, headers=headers, content=data)

    assert response.status_code == 403
    assert b"expired" in response.content.lower()


def test_expired_download_url_is_403(strict_api: httpx.Client, objects: ImageObjects) -> None:
    image = upload(strict_api, "alice", make_image("image/gif"), "image/gif")
    url = objects.original_url(image["id"], "image/gif", "attachment", expires_in=1)
    time.sleep(2.1)

    response = httpx.get(url)

    assert response.status_code == 403


def test_download_is_served_as_the_verified_type_under_a_matching_name(
    strict_api: httpx.Client,
) -> None:
    image = upload(
        strict_api, "alice", make_image("image/png"), "image/png", filename="invoice.html"
    )

    link = strict_api.get(f"/images/{image['id']}/download", headers=auth("alice")).json()
    downloaded = httpx.get(link["url"])

    assert downloaded.status_code == 200
    assert downloaded.headers["content-type"] == "image/png"
    assert downloaded.headers["content-disposition"] == content_disposition("invoice.html.png")


@pytest.fixture(scope="module")
def strict_worker(strict_env: dict[str, str]) -> Iterator[None]:
    """`python -m app worker` (the compose worker's command) on LocalStack's queue."""
    with running([sys.executable, "-m", "app", "worker"], strict_env, None):
        yield


def _processed(api: httpx.Client, image_id: str) -> dict[str, Any]:
    return wait_for(
        lambda: api.get(f"/images/{image_id}", headers=auth("alice")).json(),
        lambda image: image["variants"]["thumb"]["status"] != "pending",
    )


def test_upload_is_confirmed_and_gets_variants_from_real_notifications(
    strict_api: httpx.Client, strict_worker: None
) -> None:
    data = make_image("image/jpeg", width=1000, height=800)
    created = create(strict_api, "alice", data, "image/jpeg")
    put(created["upload"], data)

    image = _processed(strict_api, created["image"]["id"])
    thumb = httpx.get(image["variants"]["thumb"]["url"])
    preview = httpx.get(image["variants"]["preview"]["url"])

    assert image["status"] == "ready"
    assert (thumb.status_code, thumb.headers["content-type"]) == (200, "image/webp")
    assert preview.status_code == 200
    assert len(thumb.content) == image["variants"]["thumb"]["bytes"]


def test_variant_urls_signed_the_fast_way_are_checked_like_any_other(
    strict_api: httpx.Client, strict_worker: None
) -> None:
    data = make_image("image/png", width=400, height=300)
    created = create(strict_api, "alice", data, "image/png")
    put(created["upload"], data)
    image = _processed(strict_api, created["image"]["id"])
    url = image["variants"]["thumb"]["url"]
    tampered = url[:-4] + ("0000" if not url.endswith("0000") else "1111")

    listed = strict_api.get("/images", headers=auth("alice")).json()["items"]
    from_list = next(item for item in listed if item["id"] == image["id"])

    assert httpx.get(from_list["variants"]["thumb"]["url"]).status_code == 200
    assert httpx.get(tampered).status_code == 403


def test_refused_upload_keeps_its_bytes_where_s3_cannot_delete_conditionally(
    strict_api: httpx.Client, strict_env: dict[str, str]
) -> None:
    """LocalStack answers NotImplemented to a DeleteObject with If-Match (AWS has taken it
    on general purpose buckets since 2025-09). Refused bytes then stay, rather than be
    deleted without the check: confirm still answers why, never a 503."""
    fake = b"\x89PNG\r\n\x1a\n<html>not an image</html>".ljust(300, b" ")
    created = create(strict_api, "alice", fake, "image/png")
    put(created["upload"], fake)
    image_id = created["image"]["id"]

    confirmed = strict_api.post(f"/images/{image_id}/confirm", headers=auth("alice"))
    got = strict_api.get(f"/images/{image_id}", headers=auth("alice")).json()

    assert refusal(confirmed) == (422, "invalid_image")
    assert confirmed.json()["detail"] == "The uploaded bytes are not a valid image/png image"
    assert (got["status"], got["reason"]) == ("rejected", confirmed.json()["detail"])
    assert _tags(strict_env, image_id) == [{"Key": "state", "Value": "pending"}]
