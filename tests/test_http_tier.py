"""The whole lifecycle over real HTTP: uvicorn serving the app, a moto server process (or
whatever AWS_ENDPOINT_URL names) behind it, and httpx doing what a client does."""

import re
import sys
from typing import Any
from urllib.parse import unquote

import httpx2 as httpx
import pytest

from app.auth import issue_token
from app.config import Settings
from app.local import free_port
from tests.conftest import SECRET
from tests.imagefiles import make_image
from tests.servers import BASE_ENV, running

pytestmark = pytest.mark.http


def _auth(user: str) -> dict[str, str]:
    settings = Settings(jwt_secret=SECRET)
    return {"Authorization": f"Bearer {issue_token(settings, user, 600)}"}


def _upload(
    api: httpx.Client, user: str, data: bytes, content_type: str, **fields: Any
) -> dict[str, Any]:
    """Exactly what a client does: create, PUT with the returned headers, confirm."""
    created = api.post(
        "/images",
        headers=_auth(user),
        json={
            "filename": "holiday photo.png",
            "content_type": content_type,
            "size": len(data),
            **fields,
        },
    )
    assert created.status_code == 201, created.text
    upload = created.json()["upload"]
    put = httpx.request(upload["method"], upload["url"], headers=upload["headers"], content=data)
    assert put.status_code == 200, put.text
    confirmed = api.post(f"/images/{created.json()['image']['id']}/confirm", headers=_auth(user))
    assert confirmed.status_code == 200, confirmed.text
    image: dict[str, Any] = confirmed.json()
    return image


def test_lifecycle_over_http(api: httpx.Client) -> None:
    data = make_image("image/jpeg", width=64, height=48)
    image = _upload(api, "alice", data, "image/jpeg", tags=["Trip"], title="Beach")
    listed = api.get("/images", headers=_auth("alice"))
    link = api.get(f"/images/{image['id']}/download", headers=_auth("alice"))
    downloaded = httpx.get(link.json()["url"])
    first_delete = api.delete(f"/images/{image['id']}", headers=_auth("alice"))
    second_delete = api.delete(f"/images/{image['id']}", headers=_auth("alice"))
    after = api.get(f"/images/{image['id']}", headers=_auth("alice"))
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
    assert after.status_code == 404
    # S3 answers 403, not 404, for a missing key when the signer may not ListBucket.
    assert bytes_after.status_code in (403, 404)


def test_redirect_download_serves_bytes(api: httpx.Client) -> None:
    data = make_image("image/png")
    image = _upload(api, "alice", data, "image/png")

    response = api.get(
        f"/images/{image['id']}/download",
        params={"redirect": "true"},
        headers=_auth("alice"),
        follow_redirects=False,
    )
    followed = httpx.get(response.headers["location"])

    assert response.status_code == 307
    assert followed.content == data


def test_other_user_sees_nothing_over_http(api: httpx.Client) -> None:
    image = _upload(api, "alice", make_image("image/gif"), "image/gif")

    get = api.get(f"/images/{image['id']}", headers=_auth("bob"))
    download = api.get(f"/images/{image['id']}/download", headers=_auth("bob"))
    delete = api.delete(f"/images/{image['id']}", headers=_auth("bob"))
    still_there = api.get(f"/images/{image['id']}", headers=_auth("alice"))

    assert (get.status_code, download.status_code, delete.status_code) == (404, 404, 204)
    assert still_there.status_code == 200


def test_fake_image_over_http_is_refused(api: httpx.Client) -> None:
    fake = b"\x89PNG\r\n\x1a\n<script>alert(1)</script>".ljust(300, b" ")
    created = api.post(
        "/images",
        headers=_auth("alice"),
        json={"filename": "x.png", "content_type": "image/png", "size": len(fake)},
    )
    upload = created.json()["upload"]
    httpx.put(upload["url"], headers=upload["headers"], content=fake)

    confirmed = api.post(f"/images/{created.json()['image']['id']}/confirm", headers=_auth("alice"))

    assert confirmed.status_code == 422
    assert confirmed.json()["detail"] == "The uploaded bytes are not a valid image/png image"


def test_make_run_serves_with_embedded_emulator() -> None:
    """`make run`'s command with no AWS configured: moto in-process, a printed token."""
    port = free_port()
    env = {k: v for k, v in BASE_ENV.items() if not k.startswith("AWS_")}
    env["IMAGES_PORT"] = str(port)
    base = f"http://127.0.0.1:{port}"
    with (
        running([sys.executable, "-m", "app", "serve"], env, f"{base}/health") as server,
        httpx.Client(base_url=base, timeout=10) as client,
    ):
        banner = server.wait_for_output("export TOKEN=")
        match = re.search(r"export TOKEN=(\S+)", banner)
        assert match is not None
        data = make_image("image/webp")
        headers = {"Authorization": f"Bearer {match.group(1)}"}
        created = client.post(
            "/images",
            headers=headers,
            json={"filename": "w.webp", "content_type": "image/webp", "size": len(data)},
        )
        upload = created.json()["upload"]
        put = httpx.put(upload["url"], headers=upload["headers"], content=data)
        confirmed = client.post(f"/images/{created.json()['image']['id']}/confirm", headers=headers)

    assert "Embedded AWS emulator (moto): http://127.0.0.1:" in banner
    assert created.status_code == 201
    assert put.status_code == 200
    assert confirmed.status_code == 200
    assert confirmed.json()["status"] == "ready"


def test_hostile_filename_survives_round_trip(api: httpx.Client) -> None:
    name = 'dir/..\\sub\t"quoted"; ünïcødé 😀\x01.png'
    data = make_image("image/png")
    created = api.post(
        "/images",
        headers=_auth("alice"),
        json={"filename": name, "content_type": "image/png", "size": len(data)},
    )
    upload = created.json()["upload"]
    httpx.put(upload["url"], headers=upload["headers"], content=data)
    image_id = created.json()["image"]["id"]
    api.post(f"/images/{image_id}/confirm", headers=_auth("alice"))

    fetched = api.get(f"/images/{image_id}", headers=_auth("alice"))
    link = api.get(f"/images/{image_id}/download", headers=_auth("alice")).json()["url"]
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
        headers=_auth("alice"),
        data={"title": "g"},
        files={"file": ("g.gif", data, "image/gif")},
    )
    link = api.get(f"/images/{created.json()['id']}/download", headers=_auth("alice"))

    assert created.status_code == 201
    assert (created.json()["width"], created.json()["height"]) == (12, 9)
    assert httpx.get(link.json()["url"]).content == data
