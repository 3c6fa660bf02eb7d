"""`make run` reading through a CDN, as a client and the gallery meet it: the three
IMAGES_CDN_* settings, and a stand-in distribution (tests/cdn.py) that serves the
emulator's bucket only to URLs and cookies that verify with the public key alone."""

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx2 as httpx
import pytest
from PIL import Image

from app.config import DEV_JWT_SECRET, Settings
from app.http.auth import issue_token
from tests.cdn import (
    KEY_PAIR_ID,
    KeyPair,
    StandInDistribution,
    key_pair,
    stand_in_distribution,
    verify_url,
)
from tests.imagefiles import make_image
from tests.servers import MakeRun, make_run_server, wait_for

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.http


@dataclass(frozen=True)
class CdnRun:
    run: MakeRun
    distribution: StandInDistribution
    keys: KeyPair


@pytest.fixture(scope="module")
def cdn_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CdnRun]:
    keys = key_pair("ecdsa")
    directory = tmp_path_factory.mktemp("cdn-run")
    with stand_in_distribution("", "images", keys.public_pem) as distribution:
        env = {
            "IMAGES_CDN_URL": distribution.url,
            "IMAGES_CDN_KEY_PAIR_ID": KEY_PAIR_ID,
            "IMAGES_CDN_PRIVATE_KEY_FILE": str(keys.write(directory)),
            "IMAGES_CDN_COOKIES": "true",
        }
        with make_run_server(directory / "data", env=env) as run:
            banner = run.server.output()
            found = re.search(r"Embedded AWS emulator \(moto\): (\S+),", banner)
            assert found is not None, banner
            distribution.s3_endpoint = found.group(1)
            yield CdnRun(run, distribution, keys)


def _headers(user: str) -> dict[str, str]:
    token = issue_token(Settings(jwt_secret=DEV_JWT_SECRET), user, 600)
    return {"Authorization": f"Bearer {token}"}


def _made(run: MakeRun, user: str, data: bytes) -> dict[str, Any]:
    created = httpx.post(
        f"{run.url}/images/direct",
        headers=_headers(user),
        files={"file": ("p.png", data, "image/png")},
    )
    assert created.status_code == 201, created.text
    image_id = created.json()["id"]
    image: dict[str, Any] = wait_for(
        lambda: httpx.get(f"{run.url}/images/{image_id}", headers=_headers(user)).json(),
        lambda image: image["variants"]["thumb"]["status"] == "ready",
    )
    return image


def test_make_run_hands_out_urls_the_distribution_verifies_and_serves(cdn_run: CdnRun) -> None:
    run = cdn_run.run
    _made(run, "cdn-urls", make_image("image/png", 800, 400))

    lists = [httpx.get(f"{run.url}/images", headers=_headers("cdn-urls")).json() for _ in range(2)]
    url = lists[0]["items"][0]["variants"]["thumb"]["url"]
    fetched = httpx.get(url)
    tampered = httpx.get(url.replace("Signature=", "Signature=A"))

    assert "Reading through CloudFront" in run.server.output()
    assert lists[0] == lists[1]
    assert verify_url(url, cdn_run.keys.public_pem).resource == url.partition("?")[0]
    assert fetched.status_code == 200
    assert Image.open(io.BytesIO(fetched.content)).size == (320, 160)
    assert tampered.status_code == 403


def test_original_through_the_distribution_is_the_upload_under_its_verified_type(
    cdn_run: CdnRun,
) -> None:
    data = make_image("image/png", 64, 48)
    image = _made(cdn_run.run, "cdn-original", data)

    link = httpx.get(
        f"{cdn_run.run.url}/images/{image['id']}/download", headers=_headers("cdn-original")
    ).json()
    fetched = httpx.get(link["url"])

    assert fetched.status_code == 200
    assert fetched.content == data
    assert fetched.headers["content-type"] == "image/png"
    assert fetched.headers["content-disposition"].startswith("attachment")


def _thumb_in_the_gallery(cdn_run: CdnRun, token: str, page: "Page") -> tuple[int, str]:
    """Signed in to the gallery with its one image: the thumb's width once loaded (320:
    it arrived), and where it was loaded from."""
    from playwright.sync_api import expect  # noqa: PLC0415 - with the browser only

    page.goto(cdn_run.run.url + "/")
    page.fill("#token", token)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.locator("#grid img")).to_have_count(1)
    width = wait_for(
        lambda: page.evaluate("document.querySelector('#grid img').naturalWidth"),
        lambda natural: natural == 320,
    )
    return width, page.evaluate("document.querySelector('#grid img').src")


def test_gallery_reads_thumbs_through_signed_cookies(cdn_run: CdnRun, page: "Page") -> None:

    user = "cdn-gallery"
    _made(cdn_run.run, user, make_image("image/png", 600, 400, color="navy"))
    token = _headers(user)["Authorization"].split()[1]

    width, source = _thumb_in_the_gallery(cdn_run, token, page)

    assert width == 320
    assert source.startswith(cdn_run.distribution.url + "/u/")
    assert "Signature" not in source  # the bare URL: the cookies got it through
    assert any(path.startswith(urlpath(source)) for path in cdn_run.distribution.served)


def test_gallery_falls_back_to_signed_urls_when_cookies_do_not_reach_the_cdn(
    cdn_run: CdnRun, page: "Page"
) -> None:

    user = "cdn-no-cookies"
    _made(cdn_run.run, user, make_image("image/png", 500, 400, color="olive"))
    token = _headers(user)["Authorization"].split()[1]
    cdn_run.distribution.cookies_arrive = False
    try:
        width, source = _thumb_in_the_gallery(cdn_run, token, page)
    finally:
        cdn_run.distribution.cookies_arrive = True

    assert width == 320
    assert "Signature=" in source  # the bare URL was refused; the signed one served


def urlpath(url: str) -> str:
    return "/" + url.split("/", 3)[3]


_ = Path
