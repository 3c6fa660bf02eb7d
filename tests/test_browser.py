"""The gallery in a real browser (Debian's Chromium, driven by Playwright) against what
`make run` starts: the embedded emulator, the demo token, CORS for the page's origin."""

import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import blurhash
import httpx2 as httpx
import pytest

from app.config import DEV_JWT_SECRET, Settings
from app.http.auth import issue_token
from tests.conftest import CHROMIUM
from tests.imagefiles import make_image
from tests.servers import MakeRun, make_run_server, wait_for

pytestmark = pytest.mark.http

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"

if not Path(CHROMIUM).exists():
    pytest.skip(
        "Chromium is not installed: .ci/run installs Debian's chromium package",
        allow_module_level=True,
    )

from playwright.sync_api import Browser, Page, expect  # noqa: E402


@pytest.fixture(scope="module")
def site(make_run: MakeRun) -> str:
    return make_run.url


def _images(directory: Path) -> list[Path]:
    files = []
    for name, content_type, size in (
        ("red.png", "image/png", (40, 30)),
        ("blue.jpg", "image/jpeg", (24, 36)),
    ):
        path = directory / name
        path.write_bytes(make_image(content_type, *size, color=name.split(".")[0]))
        files.append(path)
    return files


def _thumbnails_loaded(page: Page) -> Any:
    """Polled from here: Playwright's wait_for_function evaluates strings in the page,
    which the gallery's Content-Security-Policy (rightly) forbids."""
    return page.evaluate(
        "[...document.querySelectorAll('#grid img')].map(i => i.complete && i.naturalWidth)"
    )


def test_gallery_upload_filter_open_delete(site: str, page: Page, tmp_path: Path) -> None:
    page.goto(site + "/")
    page.get_by_role("button", name="Use the demo token").click()
    expect(page.locator("#app")).to_be_visible()
    before = page.locator("#grid li").count()

    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    page.set_input_files("#files", [*_images(tmp_path), notes])
    expect(page.locator("#uploads li.done")).to_have_count(2)
    expect(page.locator("#uploads li.failed")).to_have_count(1)
    expect(page.locator("#uploads li.failed .state")).to_contain_text("content_type")
    expect(page.locator("#grid li")).to_have_count(before + 2)
    loaded = wait_for(
        lambda: _thumbnails_loaded(page),
        lambda widths: bool(widths) and all(width and width > 0 for width in widths),
    )
    assert all(width and width > 0 for width in loaded)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "gallery.png"), full_page=True)

    page.select_option("#filter-type", "image/jpeg")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#grid li")).to_have_count(1)
    expect(page.locator("#grid li span")).to_have_text("blue.jpg")

    page.locator("#grid button").first.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#detail")).to_be_visible()
    expect(page.locator("#detail-dimensions")).to_have_text("24 \u00d7 36")
    expect(page.locator("#detail-download")).to_have_attribute("href", re.compile(r"^http"))
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete").click()
    expect(page.locator("#detail")).to_be_hidden()

    page.reload()
    expect(page.locator("#grid li")).to_have_count(before + 1)
    expect(page.locator("#grid li span")).to_contain_text(["red.png"])


# The README's picture: a gallery of a few titled, tagged photos-to-be, dropped one by one.
README_GALLERY = [
    ("harbour.jpg", "image/jpeg", "Harbour at dusk", "sea, evening", ("navy", "orange")),
    ("meadow.png", "image/png", "Meadow", "summer", ("yellowgreen", "gold")),
    ("glacier.webp", "image/webp", "Glacier", "ice, mountains", ("lightcyan", "steelblue")),
    ("dunes.jpg", "image/jpeg", "Dunes", "desert", ("sandybrown", "sienna")),
    ("forest.png", "image/png", "Forest path", "walks", ("darkgreen", "olive")),
    ("lavender.webp", "image/webp", "Lavender", "summer, fields", ("plum", "indigo")),
]


def _gradient(content_type: str, top: str, bottom: str) -> bytes:
    from PIL import Image, ImageOps  # noqa: PLC0415

    mask = Image.linear_gradient("L").resize((480, 320))
    painted = ImageOps.colorize(mask, black=top, white=bottom)
    buffer = io.BytesIO()
    painted.save(buffer, content_type.removeprefix("image/").upper())
    return buffer.getvalue()


def _keep_picture(shot: bytes, path: Path) -> None:
    """Write the picture unless the one there shows the same page: Chromium's
    antialiasing moves a few pixels from run to run, which would dirty the tree."""
    from PIL import Image, ImageChops  # noqa: PLC0415

    if path.exists():
        with Image.open(path) as kept, Image.open(io.BytesIO(shot)) as taken:
            if kept.size == taken.size:
                difference = ImageChops.difference(kept.convert("RGB"), taken.convert("RGB"))
                changed = sum(difference.convert("L").point(lambda v: v > 0).histogram()[1:])
                if changed <= kept.width * kept.height // 2000:
                    return
    path.write_bytes(shot)


def test_readme_picture_is_written_from_the_gallery_as_it_is(site: str, page: Page) -> None:
    """docs/gallery.png is this page, rewritten by every run: it cannot show an older one."""
    _signed_in(page, site, "readme")
    for done, (name, content_type, title, tags, (top, bottom)) in enumerate(README_GALLERY, 1):
        page.fill("#upload-title-field", title)
        page.fill("#upload-tags-field", tags)
        _drop(page, [(name, content_type, _gradient(content_type, top, bottom))])
        expect(page.locator("#uploads li.done")).to_have_count(done)
    page.fill("#upload-title-field", "")
    page.fill("#upload-tags-field", "")
    page.reload()
    expect(page.locator("#grid li")).to_have_count(len(README_GALLERY))
    loaded = wait_for(
        lambda: _thumbnails_loaded(page),
        lambda widths: len(widths) == len(README_GALLERY) and all(w and w > 0 for w in widths),
    )

    _keep_picture(page.screenshot(), ROOT / "docs" / "gallery.png")

    assert len(loaded) == len(README_GALLERY)
    expect(page.locator("#grid li span")).to_have_text(
        [title for _, _, title, _, _ in reversed(README_GALLERY)]
    )


def test_gallery_fits_a_phone(site: str, browser: Browser) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 740})
    page = context.new_page()
    page.goto(site + "/")
    page.get_by_role("button", name="Use the demo token").click()
    expect(page.locator("#app")).to_be_visible()

    overflow = page.evaluate("document.documentElement.scrollWidth")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "gallery-phone.png"))
    context.close()

    assert overflow <= 375


def test_bad_token_is_refused_with_a_message(site: str, page: Page) -> None:
    page.goto(site + "/")
    page.fill("#token", "not-a-token")
    page.get_by_role("button", name="Sign in", exact=True).click()

    expect(page.locator("#sign-in-error")).to_have_text("Invalid or expired token")
    expect(page.locator("#app")).to_be_hidden()


def test_swagger_ui_renders_without_network(site: str, page: Page) -> None:
    page.goto(site + "/docs")

    expect(page.locator(".swagger-ui .opblock").first).to_be_visible()
    assert page.locator(".swagger-ui .opblock").count() >= 7


def test_gallery_scrolls_through_pages(site: str, page: Page) -> None:
    settings = Settings(jwt_secret=DEV_JWT_SECRET)  # what `make run` signs with
    token = issue_token(settings, "scroller", 600)
    for n in range(30):
        created = httpx.post(
            f"{site}/images/direct",
            headers={"Authorization": f"Bearer {token}"},
            files={"file": (f"p{n}.png", make_image(width=4 + n), "image/png")},
        )
        assert created.status_code == 201

    page.goto(site + "/")
    page.fill("#token", token)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.locator("#grid li")).to_have_count(24)  # the first page
    page.locator("#more").scroll_into_view_if_needed()  # reaching the end loads the next

    expect(page.locator("#grid li")).to_have_count(30)
    expect(page.locator("#grid li span").first).to_have_text("p29.png")
    expect(page.locator("#grid li span").last).to_have_text("p0.png")


def _signed_in(page: Page, site: str, user: str) -> str:
    """Sign `user` in (tokens signed with `make run`'s development secret); their token."""
    token = issue_token(Settings(jwt_secret=DEV_JWT_SECRET), user, 600)
    page.goto(site + "/")
    page.fill("#token", token)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.locator("#app")).to_be_visible()
    return token


def _direct(site: str, token: str, name: str, **size: int) -> dict[str, Any]:
    created = httpx.post(
        f"{site}/images/direct",
        headers={"Authorization": f"Bearer {token}"},
        files={"file": (name, make_image("image/png", **size), "image/png")},
    )
    assert created.status_code == 201
    image: dict[str, Any] = created.json()
    return image


def _processed(site: str, token: str, image_id: str) -> dict[str, Any]:
    return wait_for(
        lambda: httpx.get(
            f"{site}/images/{image_id}", headers={"Authorization": f"Bearer {token}"}
        ).json(),
        lambda image: image["variants"]["thumb"]["status"] == "ready",
    )


def test_grid_shows_thumbs_from_the_list_with_no_call_per_tile(site: str, page: Page) -> None:
    token = issue_token(Settings(jwt_secret=DEV_JWT_SECRET), "thumbs", 600)
    images = [_direct(site, token, f"t{n}.png", width=600, height=400) for n in range(3)]
    for image in images:
        _processed(site, token, image["id"])
    api_calls: list[str] = []
    page.on(
        "request",
        lambda request: api_calls.append(request.url) if "/images" in request.url else None,
    )

    _signed_in(page, site, "thumbs")
    loaded = wait_for(lambda: _thumbnails_loaded(page), lambda widths: widths == [320] * 3)
    sources = page.evaluate("[...document.querySelectorAll('#grid img')].map(i => i.src)")

    assert loaded == [320] * 3  # the thumbs, not the 600-pixel originals
    assert all(
        re.search(r"/u/[0-9a-f]{20}/[0-9a-f]{44}/thumb-[0-9a-f]+\.webp\?", src) for src in sources
    )
    assert [url for url in api_calls if "/download" in url] == []


def test_placeholder_decodes_as_the_reference_implementation(site: str, page: Page) -> None:
    page.goto(site + "/")
    hash_ = "LuLV5+s={,bHbMedi_cA-EjEtdkR"  # what the worker made of a 12 MP photo

    decoded = page.evaluate(f"Array.from(blurhashPixels('{hash_}', 4, 3))")

    reference = blurhash.decode(hash_, 4, 3)
    expected = [channel for row in reference for pixel in row for channel in (*pixel, 255)]
    assert len(decoded) == len(expected)
    assert all(abs(a - b) <= 1 for a, b in zip(decoded, expected, strict=True))


def test_tile_still_processing_paints_its_placeholder_and_updates_when_ready(
    site: str, page: Page
) -> None:
    token = issue_token(Settings(jwt_secret=DEV_JWT_SECRET), "processing", 600)
    ready = _processed(site, token, _direct(site, token, "p.png", width=300, height=200)["id"])

    def as_if_processing(route: Any) -> None:
        """The list answers as it did before the worker got to the image."""
        page_of_images = route.fetch().json()
        for item in page_of_images["items"]:
            item["variants"]["thumb"]["status"] = "pending"
            item["variants"]["thumb"]["url"] = None
        route.fulfill(json=page_of_images)

    page.route("**/images?limit=*", as_if_processing)
    _signed_in(page, site, "processing")
    tile = page.locator("#grid li").first
    expect(tile).to_have_class(re.compile("processing"))
    background = page.evaluate("document.querySelector('#grid img').style.backgroundImage")

    expect(tile).not_to_have_class(re.compile("processing"))  # its GET found it ready
    assert background.startswith('url("data:image/png')
    assert (
        page.evaluate("document.querySelector('#grid img').src")
        == ready["variants"]["thumb"]["url"]
    )


def test_detail_shows_the_preview_and_links_the_original(site: str, page: Page) -> None:
    token = issue_token(Settings(jwt_secret=DEV_JWT_SECRET), "detail", 600)
    _processed(site, token, _direct(site, token, "d.png", width=2000, height=1000)["id"])

    _signed_in(page, site, "detail")
    page.locator("#grid button").first.click()

    expect(page.locator("#detail")).to_be_visible()
    preview = re.compile(r"/preview-[0-9a-f]+\.webp\?")
    expect(page.locator("#detail-image")).to_have_attribute("src", preview)
    expect(page.locator("#detail-download")).to_have_attribute(
        "href", re.compile(r"/u/[0-9a-f]{20}/[0-9a-f]{44}/original\?")
    )
    width = wait_for(
        lambda: page.evaluate("document.getElementById('detail-image').naturalWidth"),
        lambda natural: natural == 1600,
    )
    assert width == 1600  # the preview, not the 2000-pixel original


# --- The upload area and the messages a user meets -----------------------------------


def _drop(page: Page, files: list[tuple[str, str, bytes | int]]) -> None:
    """Drop files on the upload area as a desktop drag does: a `drop` event carrying a
    DataTransfer. Content is bytes, or a size (zeros, made in the page: no transfer)."""
    specs = [
        {"name": name, "type": kind, "bytes": list(content) if isinstance(content, bytes) else None,
         "size": content if isinstance(content, int) else 0}
        for name, kind, content in files
    ]  # fmt: skip
    transfer = page.evaluate_handle(
        """specs => {
          const transfer = new DataTransfer();
          for (const spec of specs) {
            const content = spec.bytes ? new Uint8Array(spec.bytes) : new Uint8Array(spec.size);
            transfer.items.add(new File([content], spec.name, { type: spec.type }));
          }
          return transfer;
        }""",
        specs,
    )
    page.dispatch_event("#drop", "dragover", {"dataTransfer": transfer})
    page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})


def _listed(site: str, token: str) -> list[dict[str, Any]]:
    """Every image of the token's user, through the API's pages."""
    items: list[dict[str, Any]] = []
    query = {"limit": "100"}
    while True:
        response = httpx.get(
            f"{site}/images", headers={"Authorization": f"Bearer {token}"}, params=query
        )
        assert response.status_code == 200
        items += response.json()["items"]
        if not response.json()["next_cursor"]:
            return items
        query["cursor"] = response.json()["next_cursor"]


def test_dropped_files_upload_with_the_title_and_tags_given(site: str, page: Page) -> None:
    token = _signed_in(page, site, "dropper")
    page.fill("#upload-title-field", "Harbour at dusk")
    page.fill("#upload-tags-field", "Holiday, sea  2026")

    _drop(page, [("h.png", "image/png", make_image("image/png", 30, 20))])

    expect(page.locator("#uploads li.done")).to_have_count(1)
    expect(page.locator("#grid li span")).to_have_text(["Harbour at dusk"])
    [image] = _listed(site, token)
    assert (image["title"], image["tags"], image["filename"]) == (
        "Harbour at dusk",
        ["holiday", "sea", "2026"],
        "h.png",
    )


def test_tag_filter_finds_what_the_upload_area_tagged(site: str, page: Page) -> None:
    _signed_in(page, site, "tagger")
    page.fill("#upload-tags-field", "boats")
    _drop(page, [("b.png", "image/png", make_image("image/png", 12, 12))])
    expect(page.locator("#uploads li.done")).to_have_count(1)
    page.fill("#upload-tags-field", "")
    _drop(page, [("o.png", "image/png", make_image("image/png", 14, 14))])
    expect(page.locator("#uploads li.done")).to_have_count(2)

    page.fill("#filter-tag", "boats")
    page.get_by_role("button", name="Filter").click()

    expect(page.locator("#grid li span")).to_have_text(["b.png"])


def test_bad_tag_is_refused_before_any_upload(site: str, page: Page) -> None:
    token = _signed_in(page, site, "badtag")
    page.fill("#upload-tags-field", "fine, not/fine")

    _drop(page, [("x.png", "image/png", make_image("image/png", 8, 8))])

    expect(page.locator("#upload-error")).to_contain_text('"not/fine" is not a tag')
    expect(page.locator("#uploads li")).to_have_count(0)
    assert _listed(site, token) == []


def test_too_big_file_says_its_size_and_the_limit_without_a_request(site: str, page: Page) -> None:
    token = _signed_in(page, site, "toobig")
    creates: list[str] = []
    page.on("request", lambda r: creates.append(r.url) if r.method == "POST" else None)

    _drop(page, [("huge.jpg", "image/jpeg", 21 * 1024 * 1024)])  # the default limit is 20 MiB

    expect(page.locator("#uploads li.failed .state")).to_have_text(
        "Too big: 21.0 MB; the largest upload is 20.0 MB"
    )
    assert creates == []
    assert _listed(site, token) == []


def test_expired_token_signs_out_and_says_so(site: str, page: Page) -> None:
    _signed_in(page, site, "expiring")
    expired = issue_token(Settings(jwt_secret=DEV_JWT_SECRET), "expiring", -60)
    page.evaluate("t => localStorage.setItem('images.token', t)", expired)

    _drop(page, [("e.png", "image/png", make_image("image/png", 8, 8))])

    expect(page.locator("#sign-in")).to_be_visible()
    expect(page.locator("#sign-in-error")).to_have_text(
        "Your token was refused or has expired: sign in again."
    )
    expect(page.locator("#uploads li.failed")).to_have_count(1)


@pytest.fixture(scope="module")
def small_quota(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second `make run` whose users may store 3,000 bytes: the quota is reachable."""
    data = tmp_path_factory.mktemp("small-quota-data")
    with make_run_server(data, env={"IMAGES_MAX_BYTES_PER_USER": "3000"}) as server:
        yield server.url


def test_quota_refusal_shows_the_services_reason(small_quota: str, page: Page) -> None:
    _signed_in(page, small_quota, "quota")
    first = make_image("image/png", 30, 30)
    assert len(first) < 1000

    _drop(page, [("a.png", "image/png", first)])
    expect(page.locator("#uploads li.done")).to_have_count(1)
    _drop(page, [("b.png", "image/png", first + b"\0" * (3000 - 2 * len(first) + 1))])

    expect(page.locator("#uploads li.failed .state")).to_contain_text("Storage quota exceeded")
    expect(page.locator("#grid li")).to_have_count(1)


def test_two_hundred_files_in_one_drop_all_end_ready(site: str, page: Page) -> None:
    token = _signed_in(page, site, "album")
    album = [
        (f"a{n:03}.png", "image/png", make_image("image/png", 8 + n % 16, 8 + n // 16))
        for n in range(200)
    ]

    _drop(page, album)

    expect(page.locator("#uploads li.done")).to_have_count(200, timeout=90_000)
    expect(page.locator("#uploads li.failed")).to_have_count(0)
    listed = _listed(site, token)
    assert len(listed) == 200
    assert {image["status"] for image in listed} == {"ready"}
    assert sorted(image["filename"] for image in listed) == [name for name, _, _ in album]
    expect(page.locator("#grid li")).to_have_count(24)  # the grid starts again, a page


def test_new_filter_discards_the_page_still_loading(site: str, page: Page) -> None:
    token = issue_token(Settings(jwt_secret=DEV_JWT_SECRET), "racer", 600)
    for name, kind in (("r1.png", "image/png"), ("r2.png", "image/png"), ("r3.jpg", "image/jpeg")):
        created = httpx.post(
            f"{site}/images/direct",
            headers={"Authorization": f"Bearer {token}"},
            files={"file": (name, make_image(kind, 10, 10), kind)},
        )
        assert created.status_code == 201
    held: list[Any] = []

    def slow_unfiltered(route: Any) -> None:
        """The unfiltered first page answers only when the test lets it: a slow API."""
        if "limit=24" in route.request.url and "content_type" not in route.request.url:
            held.append(route)
        else:
            route.continue_()

    page.route("**/images?*", slow_unfiltered)
    _signed_in(page, site, "racer")
    wait_for(lambda: page.wait_for_timeout(50) or len(held), bool)

    page.select_option("#filter-type", "image/jpeg")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#grid li span")).to_have_text(["r3.jpg"])
    held[0].continue_()  # the old page arrives after all
    page.wait_for_timeout(500)

    expect(page.locator("#grid li span")).to_have_text(["r3.jpg"])
