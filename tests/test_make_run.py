"""`make run` as a newcomer meets it: `python -m app serve` with no AWS configured."""

import io
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from PIL import Image

from app.config import DEV_JWT_SECRET, Settings
from app.http.auth import issue_token
from app.local.server import free_port
from tests.imagefiles import make_image, tiff
from tests.load import upload_batch
from tests.servers import BASE_ENV, MakeRun, make_run_refused, make_run_server, running, wait_for

pytestmark = pytest.mark.http


def test_make_run_serves_with_embedded_emulator(make_run: MakeRun) -> None:
    data = make_image("image/webp")
    headers = {"Authorization": f"Bearer {make_run.token}"}
    with httpx.Client(base_url=make_run.url, timeout=10) as client:
        created = client.post(
            "/images",
            headers=headers,
            json={"filename": "w.webp", "content_type": "image/webp", "size": len(data)},
        )
        upload = created.json()["upload"]
        put = httpx.put(upload["url"], headers=upload["headers"], content=data)
        confirmed = client.post(f"/images/{created.json()['image']['id']}/confirm", headers=headers)

    assert "Embedded AWS emulator (moto): http://127.0.0.1:" in make_run.server.output()
    assert created.status_code == 201
    assert put.status_code == 200
    assert confirmed.status_code == 200
    assert confirmed.json()["status"] == "ready"


@pytest.fixture(scope="module")
def quiet_make_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MakeRun]:
    """A make run of its own: the session's may have hundreds of other tests' uploads
    queued for its worker (the browser's 200-file drop, the 200 concurrent uploads), and
    a thumb then waited more than 100 s behind them on a loaded machine."""
    with make_run_server(tmp_path_factory.mktemp("quiet-make-run")) as server:
        yield server


@pytest.mark.parametrize("order", ["<", ">"])
def test_make_run_takes_a_tiff_from_create_to_its_thumb(
    quiet_make_run: MakeRun, order: str
) -> None:
    """TIFF, the format added as one row of the table, as a client meets it; libtiff's
    layout (the directory after 360 kB of pixels, past the first bytes confirm reads)."""
    data = tiff(400, 300, order=order, directory_last=True)
    user = f"tiff-{'le' if order == '<' else 'be'}"
    headers = {
        "Authorization": f"Bearer {issue_token(Settings(jwt_secret=DEV_JWT_SECRET), user, 600)}"
    }
    with httpx.Client(base_url=quiet_make_run.url, timeout=30) as client:
        created = client.post(
            "/images",
            headers=headers,
            json={"filename": "scan.tif", "content_type": "image/tiff", "size": len(data)},
        ).json()
        image_id = created["image"]["id"]
        put = httpx.put(
            created["upload"]["url"], headers=created["upload"]["headers"], content=data
        )
        confirmed = client.post(f"/images/{image_id}/confirm", headers=headers).json()
        made = wait_for(
            lambda: client.get(f"/images/{image_id}", headers=headers).json(),
            lambda image: image["variants"]["thumb"]["status"] == "ready",
            timeout=60,
        )
        assert made["variants"]["thumb"]["status"] == "ready", made
        original = client.get(f"/images/{image_id}/download", headers=headers).json()
    thumb = Image.open(io.BytesIO(_fetch(made["variants"]["thumb"]["url"])))
    fetched = httpx.get(original["url"], timeout=30)

    assert put.status_code == 200
    assert (confirmed["status"], confirmed["width"], confirmed["height"]) == ("ready", 400, 300)
    assert (thumb.format, thumb.size) == ("WEBP", (320, 240))
    assert made["variants"]["thumb"]["content_type"] == "image/webp"
    assert fetched.content == data
    assert fetched.headers["content-type"] == "image/tiff"
    assert 'filename="scan.tif"' in fetched.headers["content-disposition"]


def test_make_run_takes_200_concurrent_uploads_without_a_5xx(make_run: MakeRun) -> None:
    token = issue_token(Settings(jwt_secret=DEV_JWT_SECRET), "concurrent", 600)

    batch = upload_batch(make_run.url, token, count=200, concurrency=200)
    print(f"200 concurrent uploads through make run: {batch.seconds:.1f} s, {batch.statuses}")

    assert [status for status in batch.statuses if status >= 500] == []
    assert batch.failures == []
    assert len(batch.ready) == 200


def test_serve_prints_no_token_for_a_real_secret(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in BASE_ENV.items() if not k.startswith("AWS_")}
    env |= {
        "IMAGES_PORT": str(port),
        "IMAGES_JWT_SECRET": "a-real-secret-" + "x" * 32,
        "IMAGES_DATA_DIR": str(tmp_path),
    }
    base = f"http://127.0.0.1:{port}"

    with running([sys.executable, "-m", "app", "serve"], env, f"{base}/health") as server:
        output = server.wait_for_output("Image service:")
        page = httpx.get(f"{base}/").text

    assert "TOKEN" not in output
    assert "eyJ" not in output  # no JWT at all
    assert 'name="demo-token"' not in page


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.org"])  # noqa: S104
def test_serve_refuses_the_development_secret_beyond_loopback(host: str, tmp_path: Path) -> None:
    result = make_run_refused(tmp_path, {"IMAGES_HOST": host})

    assert result.returncode == 1
    assert "Refusing to serve on" in result.stderr
    assert "IMAGES_JWT_SECRET" in result.stderr


# --- It keeps the gallery: what a restart, even a kill -9, must not lose -----------------


def _gallery(run: MakeRun) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {run.token}"}
    images: list[dict[str, Any]] = []
    query: dict[str, str] = {"limit": "100"}
    with httpx.Client(base_url=run.url, timeout=30) as client:
        while True:
            page = client.get("/images", headers=headers, params=query).json()
            images += page["items"]
            if not page["next_cursor"]:
                return images
            query["cursor"] = page["next_cursor"]


def _made(image: dict[str, Any]) -> dict[str, Any]:
    """What its variants are, without their URLs (signed again at every answer)."""
    return {name: {**v, "url": None} for name, v in image["variants"].items()}


def _fetch(url: str) -> bytes:
    response = httpx.get(url, timeout=30)
    assert response.status_code == 200
    return response.content


def _thumbs_made(run: MakeRun) -> list[dict[str, Any]]:
    return wait_for(
        lambda: _gallery(run),
        lambda images: all(i["variants"]["thumb"]["status"] == "ready" for i in images),
    )


def test_make_run_keeps_its_gallery_across_a_stop_and_start(tmp_path: Path) -> None:
    with make_run_server(tmp_path) as first:
        batch = upload_batch(first.url, first.token, count=5, concurrency=5)
        before = _thumbs_made(first)
        originals = {i["id"]: _fetch(_download(first, i["id"])) for i in before}

    with make_run_server(tmp_path) as second:
        banner = second.server.output()
        after = _gallery(second)
        thumbs = [_fetch(image["variants"]["thumb"]["url"]) for image in after]
        again = {i["id"]: _fetch(_download(second, i["id"])) for i in after}

    assert len(batch.ready) == 5
    assert "15 objects" in banner  # each original with its thumb and preview
    assert [i["id"] for i in after] == [i["id"] for i in before]
    assert [_made(i) for i in after] == [_made(i) for i in before]
    assert all(thumb[:4] == b"RIFF" for thumb in thumbs)
    assert again == originals


def test_make_run_killed_loses_no_image_whose_confirm_had_answered(tmp_path: Path) -> None:
    """kill -9 right after the last confirm answered: at most a request in flight is lost.
    The worker had no time for the last ones: their messages were kept too."""
    with make_run_server(tmp_path) as first:
        batch = upload_batch(first.url, first.token, count=8, concurrency=4)
        first.server.process.kill()
        first.server.process.wait()

    with make_run_server(tmp_path) as second:
        after = _thumbs_made(second)
        usage = httpx.get(
            f"{second.url}/images", headers={"Authorization": f"Bearer {second.token}"}
        )

    assert len(batch.ready) == 8
    assert sorted(i["id"] for i in after) == sorted(batch.ready)
    assert all(i["status"] == "ready" for i in after)
    assert usage.status_code == 200


def test_make_run_fresh_starts_empty(tmp_path: Path) -> None:
    with make_run_server(tmp_path) as first:
        upload_batch(first.url, first.token, count=1, concurrency=1)

    with make_run_server(tmp_path, "--fresh") as second:
        after = _gallery(second)

    assert after == []


def test_a_second_make_run_on_the_same_data_refuses_to_start(tmp_path: Path) -> None:
    with make_run_server(tmp_path):
        second = make_run_refused(tmp_path)

    assert second.returncode == 1
    assert "in use by another `make run`" in second.stderr


def test_make_run_on_data_of_an_earlier_key_layout_refuses_and_keeps_it(tmp_path: Path) -> None:
    """Before per-user prefixes, originals were images/<id>: read as today's layout the
    gallery would list images without bytes. Refused, the data left as it was."""
    kept = tmp_path / "objects" / "images" / "images%2F0123.bytes"
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"an earlier gallery's photo")
    started = make_run_refused(tmp_path)

    assert started.returncode == 1
    assert "earlier key layout" in started.stderr
    assert "--fresh" in started.stderr
    assert kept.read_bytes() == b"an earlier gallery's photo"


def _download(run: MakeRun, image_id: str) -> str:
    link = httpx.get(
        f"{run.url}/images/{image_id}/download",
        headers={"Authorization": f"Bearer {run.token}"},
        timeout=30,
    )
    url: str = link.json()["url"]
    return url
