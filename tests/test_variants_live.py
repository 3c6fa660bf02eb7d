"""A variant set changed by configuration alone, as people meet it: `make run` started
with a `cover` square added to IMAGES_VARIANTS, seen in the gallery and the CLI (the
API's get, list and download are tests/test_variants.py)."""

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx2 as httpx
import pytest
from PIL import Image

from app.config import DEV_JWT_SECRET, Settings
from app.http.auth import issue_token
from tests.imagefiles import make_image
from tests.over_http import Cli
from tests.servers import MakeRun, make_run_server, wait_for
from tests.test_variants import WITH_SQUARE

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.http


@pytest.fixture(scope="module")
def squares(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MakeRun]:
    data = tmp_path_factory.mktemp("squares-data")
    with make_run_server(data, env={"IMAGES_VARIANTS": json.dumps(WITH_SQUARE)}) as server:
        yield server


def _token(user: str) -> str:
    return issue_token(Settings(jwt_secret=DEV_JWT_SECRET), user, 600)


def _made(run: MakeRun, token: str, name: str) -> dict[str, Any]:
    """A 900x300 PNG uploaded directly, once the worker made every variant."""
    headers = {"Authorization": f"Bearer {token}"}
    created = httpx.post(
        f"{run.url}/images/direct",
        headers=headers,
        files={"file": (name, make_image("image/png", 900, 300, color="orange"), "image/png")},
    )
    assert created.status_code == 201, created.text
    image_id = created.json()["id"]
    image: dict[str, Any] = wait_for(
        lambda: httpx.get(f"{run.url}/images/{image_id}", headers=headers).json(),
        lambda image: all(v["status"] == "ready" for v in image["variants"].values()),
    )
    return image


def _square(data: bytes) -> tuple[str | None, tuple[int, int]]:
    with Image.open(io.BytesIO(data)) as square:
        return square.format, square.size


def test_gallery_links_the_configured_square_of_an_image(squares: MakeRun, page: "Page") -> None:
    from playwright.sync_api import expect  # noqa: PLC0415 - with the browser only

    token = _token("gallery-squares")
    _made(squares, token, "wide.png")
    page.goto(squares.url + "/")
    page.fill("#token", token)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.locator("#grid button").first.click()

    link = page.locator('#detail-variants a[data-variant="square"]')
    expect(link).to_have_attribute("title", re.compile("^256 \u00d7 256, [0-9,]+ bytes$"))
    served = httpx.get(link.get_attribute("href") or "")

    assert page.locator("#detail-variants [data-variant]").all_text_contents() == [
        "thumb",
        "preview",
        "square",
    ]
    assert _square(served.content) == ("WEBP", (256, 256))


def test_cli_lists_and_gets_the_configured_square(squares: MakeRun, tmp_path: Path) -> None:
    cli = Cli(tmp_path / "config", tmp_path)
    token = _token("cli-squares")
    assert cli("login", "--url", squares.url, "--token", token).returncode == 0
    image = _made(squares, token, "wide.png")

    listed = cli.json("ls")
    got = cli.json("get", image["id"], "--variant", "square")
    unknown = cli("get", image["id"], "--variant", "circle")

    assert set(listed[0]["variants"]) == {"thumb", "preview", "square"}
    assert got["path"] == "wide.square.webp"
    assert _square((tmp_path / "wide.square.webp").read_bytes()) == ("WEBP", (256, 256))
    assert unknown.returncode == 1
    assert "one of original, thumb, preview, square" in unknown.stderr
