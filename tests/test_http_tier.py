"""The whole lifecycle over real HTTP: uvicorn serving the app, a moto server process (or
whatever AWS_ENDPOINT_URL names) behind it, and httpx doing what a client does."""

from urllib.parse import unquote

import boto3
import httpx2 as httpx
import pytest

from app.config import Settings
from app.domain.owners import new_image_id
from app.storage.clients import AwsClients
from app.storage.items import object_key
from app.storage.objects import ImageObjects
from tests.conftest import refusal
from tests.imagefiles import make_image
from tests.over_http import auth, upload

pytestmark = pytest.mark.http


def test_lifecycle_over_http(api: httpx.Client) -> None:
    data = make_image("image/jpeg", width=64, height=48)
    image = upload(api, "alice", data, "image/jpeg", tags=["Trip"], title="Beach")
    listed = api.get("/images", headers=auth("alice"))
    link = api.get(f"/images/{image['id']}/download", headers=auth("alice"))
    downloaded = httpx.get(link.json()["url"])
    first_delete = api.delete(f"/images/{image['id']}", headers=auth("alice"))
    second_delete = api.delete(f"/images/{image['id']}", headers=auth("alice"))
    after = api.get(f"/images/{image['id']}", headers=auth("alice"))
    bytes_after = httpx.get(link.json()["url"])

    assert (image["status"], image["width"], image["height"]) == ("ready", 64, 48)
    assert listed.status_code == 200
    assert [item["id"] for item in listed.json()["items"]] == [image["id"]]
    assert link.status_code == 200
    assert downloaded.status_code == 200
    assert downloaded.content == data
    assert downloaded.headers["content-type"] == "image/jpeg"
    assert "filename*=UTF-8''holiday%20photo.png" in downloaded.headers["content-disposition"]
    assert (first_delete.status_code, second_delete.status_code) == (204, 204)
    assert refusal(after) == (404, "not_found")
    # S3 answers 403, not 404, for a missing key when the signer may not ListBucket.
    assert bytes_after.status_code in (403, 404)


def test_redirect_download_serves_bytes(api: httpx.Client) -> None:
    data = make_image("image/png")
    image = upload(api, "alice", data, "image/png")

    response = api.get(
        f"/images/{image['id']}/download",
        params={"redirect": "true"},
        headers=auth("alice"),
        follow_redirects=False,
    )
    followed = httpx.get(response.headers["location"])

    assert response.status_code == 307
    assert followed.content == data


def test_other_user_sees_nothing_over_http(api: httpx.Client) -> None:
    image = upload(api, "alice", make_image("image/gif"), "image/gif")

    get = api.get(f"/images/{image['id']}", headers=auth("bob"))
    download = api.get(f"/images/{image['id']}/download", headers=auth("bob"))
    delete = api.delete(f"/images/{image['id']}", headers=auth("bob"))
    still_there = api.get(f"/images/{image['id']}", headers=auth("alice"))

    assert (get.status_code, download.status_code, delete.status_code) == (404, 404, 204)
    assert still_there.status_code == 200


def test_fake_image_over_http_is_refused(api: httpx.Client) -> None:
    fake = b"\x89PNG\r\n\x1a\n<script>alert(1)</script>".ljust(300, b" ")
    created = api.post(
        "/images",
        headers=auth("alice"),
        json={"filename": "x.png", "content_type": "image/png", "size": len(fake)},
    )
    upload = created.json()["upload"]
    httpx.put(upload["url"], headers=upload["headers"], content=fake)

    confirmed = api.post(f"/images/{created.json()['image']['id']}/confirm", headers=auth("alice"))

    assert refusal(confirmed) == (422, "invalid_image")
    assert confirmed.json()["detail"] == "The uploaded bytes are not a valid image/png image"


def test_hostile_filename_survives_round_trip(api: httpx.Client) -> None:
    name = 'dir/..\\sub\t"quoted"; ünïcødé 😀\x01.png'
    data = make_image("image/png")
    created = api.post(
        "/images",
        headers=auth("alice"),
        json={"filename": name, "content_type": "image/png", "size": len(data)},
    )
    upload = created.json()["upload"]
    httpx.put(upload["url"], headers=upload["headers"], content=data)
    image_id = created.json()["image"]["id"]
    api.post(f"/images/{image_id}/confirm", headers=auth("alice"))

    fetched = api.get(f"/images/{image_id}", headers=auth("alice"))
    link = api.get(f"/images/{image_id}/download", headers=auth("alice")).json()["url"]
    disposition = httpx.get(link).headers["content-disposition"]

    assert fetched.json()["filename"] == name
    fallback, encoded = disposition.split("; filename*=UTF-8''")
    assert unquote(encoded) == name
    assert fallback.startswith('attachment; filename="')
    assert fallback.isascii()
    assert all(c not in fallback[len('attachment; filename="') : -1] for c in '"\\/;\t\x01')


def test_direct_upload_over_http(api: httpx.Client) -> None:
    data = make_image("image/gif", width=12, height=9)

    created = api.post(
        "/images/direct",
        headers=auth("alice"),
        data={"title": "g"},
        files={"file": ("g.gif", data, "image/gif")},
    )
    link = api.get(f"/images/{created.json()['id']}/download", headers=auth("alice"))

    assert created.status_code == 201
    assert (created.json()["width"], created.json()["height"]) == (12, 9)
    assert httpx.get(link.json()["url"]).content == data


def test_second_put_after_confirm_is_refused_and_bytes_stay(
    api: httpx.Client, service_env: dict[str, str]
) -> None:
    first = make_image("image/png", color="red")
    created = api.post(
        "/images",
        headers=auth("alice"),
        json={"filename": "a.png", "content_type": "image/png", "size": len(first)},
    ).json()
    upload = created["upload"]
    httpx.put(upload["url"], headers=upload["headers"], content=first)
    api.post(f"/images/{created['image']['id']}/confirm", headers=auth("alice"))

    # A client's retry (or anyone holding the URL) sends other bytes of the same size.
    second = httpx.put(upload["url"], headers=upload["headers"], content=first[::-1])
    link = api.get(f"/images/{created['image']['id']}/download", headers=auth("alice"))
    downloaded = httpx.get(link.json()["url"])
    s3 = boto3.client("s3", endpoint_url=service_env["AWS_ENDPOINT_URL"], region_name="us-east-1")
    tags = s3.get_object_tagging(
        Bucket=service_env["IMAGES_BUCKET"], Key=object_key(created["image"]["id"])
    )["TagSet"]
    s3.close()

    assert second.status_code == 412
    assert downloaded.content == first
    assert tags == [{"Key": "state", "Value": "ready"}]


def test_a_delete_conditioned_on_old_bytes_leaves_bytes_uploaded_since(
    service_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What keeps a verdict on refused bytes from removing a newer upload: S3 compares the
    ETag that was read with the object's and refuses (412) when they differ. Over HTTP
    to the emulator `make run` uses (moto implements it; LocalStack does not yet)."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, service_env[name])
    settings = Settings(bucket=service_env["IMAGES_BUCKET"])
    objects = ImageObjects(AwsClients(settings), settings)
    image_id = new_image_id("c" * 20)
    old, new = make_image("image/png", color="red"), make_image("image/png", color="blue")
    objects.put(image_id, old, "image/png")
    read = objects.read_prefix(image_id, 1024)
    assert read is not None
    assert objects.delete_original(image_id, read.etag)  # the bytes that were read: gone
    objects.put(image_id, new, "image/png")  # a new upload takes their place

    again = objects.delete_original(image_id, read.etag)
    kept = objects.read_prefix(image_id, 1 << 20)

    assert again is False
    assert kept is not None
    assert kept.data == new
