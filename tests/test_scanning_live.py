"""Scanning under `make run`, as a client and the gallery meet it: IMAGES_SCAN=clamav with
no IMAGES_CLAMD, so `make run` starts a clamd of its own, on IMAGES_CLAMAV_DATABASE (the
tests' own definitions: EICAR and a marker, tests/clamav.py)."""

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx2 as httpx
import pytest

from app.config import DEV_JWT_SECRET, Settings
from app.http.auth import issue_token
from tests.clamav import EICAR, SIGNATURES, clamd_missing, write_database
from tests.imagefiles import make_image
from tests.load import upload_batch
from tests.servers import MakeRun, make_run_refused, make_run_server, wait_for

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.http, pytest.mark.clamav]


@pytest.fixture(scope="module")
def scanning_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MakeRun]:
    if clamd_missing():
        pytest.skip(clamd_missing())
    database = write_database(tmp_path_factory.mktemp("clamav-db"), SIGNATURES)
    env = {"IMAGES_SCAN": "clamav", "IMAGES_CLAMAV_DATABASE": str(database)}
    with make_run_server(tmp_path_factory.mktemp("scanning-data"), env=env) as run:
        yield run


def _headers(user: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {issue_token(Settings(jwt_secret=DEV_JWT_SECRET), user, 600)}"
    }


def _uploaded(run: MakeRun, user: str, data: bytes, kind: str, *, infected: bool = False) -> str:
    """Create, PUT with the returned headers, confirm: what a client does."""
    created = httpx.post(
        f"{run.url}/images",
        headers=_headers(user),
        json={"filename": "p.jpg", "content_type": kind, "size": len(data)},
    ).json()
    upload = created["upload"]
    assert httpx.put(upload["url"], headers=upload["headers"], content=data).status_code == 200
    image_id: str = created["image"]["id"]
    confirmed = httpx.post(f"{run.url}/images/{image_id}/confirm", headers=_headers(user))
    # Infected bytes: the worker (S3's event) may judge them before the client confirms,
    # and confirm then answers what it found.
    answers = {(200, None), (409, "infected")} if infected else {(200, None)}
    assert (confirmed.status_code, confirmed.json().get("code")) in answers, confirmed.text
    return image_id


def _scanned(run: MakeRun, user: str, image_id: str) -> dict[str, Any]:
    image: dict[str, Any] = wait_for(
        lambda: httpx.get(f"{run.url}/images/{image_id}", headers=_headers(user)).json(),
        lambda got: (
            got["scan"]["status"] != "pending"
            and (
                got["scan"]["status"] != "clean" or got["variants"]["thumb"]["status"] != "pending"
            )
        ),
    )
    return image


def test_make_run_says_what_it_scans_with(scanning_run: MakeRun) -> None:
    assert "Malware scanning: ClamAV" in scanning_run.server.output()


def test_a_jpeg_with_eicar_appended_ends_infected_and_every_url_is_refused(
    scanning_run: MakeRun,
) -> None:
    data = make_image("image/jpeg", width=640, height=480) + EICAR
    image_id = _uploaded(scanning_run, "polyglot", data, "image/jpeg", infected=True)

    image = _scanned(scanning_run, "polyglot", image_id)
    answers = [
        httpx.get(
            f"{scanning_run.url}/images/{image_id}/download",
            params=params,
            headers=_headers("polyglot"),
            follow_redirects=False,
        )
        for params in ({}, {"variant": "thumb"}, {"variant": "preview"}, {"redirect": "true"})
    ]

    assert (image["status"], image["scan"]["status"]) == ("rejected", "infected")
    assert image["scan"]["signature"] == "Images.Test.EICAR.UNOFFICIAL"
    assert [v["url"] for v in image["variants"].values()] == [None, None]
    assert [(a.status_code, a.json()["code"]) for a in answers] == [(409, "infected")] * 4


def test_a_clean_photo_ends_clean_and_its_thumb_is_served(scanning_run: MakeRun) -> None:
    image_id = _uploaded(scanning_run, "clean", make_image("image/jpeg", 640, 480), "image/jpeg")

    image = _scanned(scanning_run, "clean", image_id)
    thumb = httpx.get(image["variants"]["thumb"]["url"])

    assert image["scan"]["status"] == "clean"
    assert thumb.status_code == 200
    assert thumb.content[:4] == b"RIFF"


def test_75_uploads_at_once_are_all_scanned_and_none_times_out(scanning_run: MakeRun) -> None:
    token = issue_token(Settings(jwt_secret=DEV_JWT_SECRET), "burst", 600)

    batch = upload_batch(scanning_run.url, token, count=75, concurrency=75)
    images = wait_for(
        lambda: httpx.get(
            f"{scanning_run.url}/images", params={"limit": 100}, headers=_headers("burst")
        ).json()["items"],
        lambda items: (
            len(items) == 75 and all(i["variants"]["thumb"]["status"] == "ready" for i in items)
        ),
        timeout=180,
    )

    assert batch.failures == []
    assert {image["scan"]["status"] for image in images} == {"clean"}


def test_make_run_with_clamav_but_no_definitions_refuses_to_start(tmp_path: Path) -> None:
    started = make_run_refused(
        tmp_path / "data", {"IMAGES_SCAN": "clamav", "IMAGES_CLAMAV_DATABASE": str(tmp_path)}
    )

    assert started.returncode == 1
    assert f"Refusing to start: IMAGES_SCAN=clamav, but {tmp_path} holds no" in started.stderr
    assert "Traceback" not in started.stderr


@pytest.fixture(scope="module")
def guarded_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MakeRun]:
    """`make run` waiting for GuardDuty's verdicts, which never come here: every upload
    stays checking."""
    data = tmp_path_factory.mktemp("guardduty-data")
    with make_run_server(data, env={"IMAGES_SCAN": "guardduty"}) as run:
        yield run


def test_gallery_shows_an_image_being_checked_as_checking(
    guarded_run: MakeRun, page: "Page"
) -> None:
    from playwright.sync_api import expect  # noqa: PLC0415 - with the browser only

    user = "checking"
    _uploaded(guarded_run, user, make_image("image/jpeg", 300, 200), "image/jpeg")
    token = _headers(user)["Authorization"].split()[1]

    page.goto(guarded_run.url + "/")
    page.fill("#token", token)
    page.get_by_role("button", name="Sign in", exact=True).click()

    expect(page.locator("#grid li.checking")).to_have_count(1)
    label = page.evaluate(
        "getComputedStyle(document.querySelector('#grid li button'), '::after').content"
    )
    assert label == '"Checking…"'
    assert page.evaluate("document.querySelector('#grid img').getAttribute('src')") is None
