"""The `images` command against the live tier (uvicorn + moto server), as a user runs it."""

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import boto3
import httpx2 as httpx
import pytest
from PIL import Image

from app.config import Settings
from app.http.auth import issue_token
from tests.conftest import SECRET
from tests.imagefiles import make_image
from tests.over_http import Cli
from tests.servers import running, wait_for

pytestmark = pytest.mark.http


@pytest.fixture
def cli(tmp_path: Path, api: httpx.Client) -> Cli:
    runner = Cli(tmp_path / "config", tmp_path)
    token = issue_token(Settings(jwt_secret=SECRET), f"cli-{tmp_path.name}", 600)
    result = runner("login", "--url", str(api.base_url), "--token", token)
    assert result.returncode == 0, result.stderr
    return runner


def _file(directory: Path, name: str, content_type: str, **size: int) -> Path:
    path = directory / name
    path.write_bytes(make_image(content_type, **size))
    return path


def test_login_saves_url_and_token_privately(cli: Cli, tmp_path: Path) -> None:
    config = tmp_path / "config" / "images" / "config.json"

    assert json.loads(config.read_text())["url"].startswith("http://127.0.0.1:")
    assert stat.S_IMODE(config.stat().st_mode) == 0o600


def test_login_with_bad_token_fails(tmp_path: Path, api: httpx.Client) -> None:
    result = Cli(tmp_path / "c", tmp_path)(
        "login", "--url", str(api.base_url), "--token", "garbage"
    )

    assert result.returncode == 1
    assert "401" in result.stderr
    assert not (tmp_path / "c" / "images" / "config.json").exists()


def test_commands_without_login_fail_clearly(tmp_path: Path) -> None:
    result = Cli(tmp_path / "empty", tmp_path)("ls")

    assert result.returncode == 1
    assert result.stderr == "error: not logged in: run `images login --url URL --token TOKEN`\n"


def test_upload_ls_get_url_rm(cli: Cli, tmp_path: Path) -> None:
    cat = _file(tmp_path, "cat.png", "image/png", width=20, height=10)
    dog = _file(tmp_path, "dog.jpg", "image/jpeg", width=8, height=6)

    uploaded = cli.json(  # one at a time: the listing's order is then the upload order
        "upload", str(cat), str(dog), "--tag", "Pets", "--title", "Friends", "--parallel", "1"
    )
    listed = cli.json("ls", "--tag", "pets")
    jpegs = cli.json("ls", "--type", "jpeg")
    cat_id = next(i["id"] for i in uploaded["uploaded"] if i["filename"] == "cat.png")
    got = cli.json("get", cat_id, "-o", str(tmp_path / "copy.png"))
    link = cli.json("url", cat_id)
    fetched = httpx.get(link["url"]).content
    removed = cli.json("rm", *(i["id"] for i in uploaded["uploaded"]))
    after = cli.json("ls", "--all")

    assert uploaded["failed"] == []
    assert [(i["width"], i["height"], i["tags"]) for i in uploaded["uploaded"]] == [
        (20, 10, ["pets"]),
        (8, 6, ["pets"]),
    ]
    assert [i["filename"] for i in listed] == ["dog.jpg", "cat.png"]
    assert [i["filename"] for i in jpegs] == ["dog.jpg"]
    assert (tmp_path / "copy.png").read_bytes() == cat.read_bytes()
    assert got["size"] == cat.stat().st_size
    assert fetched == cat.read_bytes()
    assert len(removed["deleted"]) == 2
    assert after == []


def test_upload_shows_progress_and_summary(cli: Cli, tmp_path: Path) -> None:
    result = cli("upload", str(_file(tmp_path, "a.gif", "image/gif")))

    assert result.returncode == 0
    assert "a.gif" in result.stderr
    assert "100%" in result.stderr
    assert result.stdout.startswith("1 uploaded, 0 failed")


def test_upload_failure_is_reported_and_exits_1(cli: Cli, tmp_path: Path) -> None:
    good = _file(tmp_path, "good.webp", "image/webp")
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"\x89PNG\r\n\x1a\n<html>not really</html>".ljust(300, b" "))
    text = tmp_path / "notes.txt"
    text.write_text("hello")

    result = cli("upload", str(good), str(fake), str(text))

    assert result.returncode == 1
    assert "not a valid image/png image" in result.stderr
    assert "notes.txt: not the name of an image the service takes (JPEG, PNG" in result.stderr
    assert "1 uploaded, 2 failed" in result.stdout


def test_ls_table_has_a_header_and_a_row(cli: Cli, tmp_path: Path) -> None:
    cli("upload", str(_file(tmp_path, "t.png", "image/png", width=3, height=4)))

    result = cli("ls")

    header, row = result.stdout.splitlines()[:2]
    assert header.split() == [
        "ID", "CREATED", "SIZE", "DIMENSIONS", "TYPE", "VARIANTS", "NAME", "TAGS"
    ]  # fmt: skip
    assert "3x4" in row
    assert "t.png" in row
    assert " pending " in row  # no worker runs in this tier: variants are not made


def test_get_refuses_to_overwrite(cli: Cli, tmp_path: Path) -> None:
    image = cli.json("upload", str(_file(tmp_path, "o.png", "image/png")))["uploaded"][0]
    (tmp_path / "o.png").write_bytes(b"mine")

    result = cli("get", image["id"])

    assert result.returncode == 1
    assert "exists" in result.stderr
    assert (tmp_path / "o.png").read_bytes() == b"mine"


def test_get_unknown_image_fails(cli: Cli) -> None:
    result = cli("get", "0123456789abcdef0123456789abcdef")

    assert result.returncode == 1
    assert result.stderr == (
        "error: GET /images/0123456789abcdef0123456789abcdef: 404 Image not found (not_found)\n"
    )


def test_bad_usage_exits_2(cli: Cli) -> None:
    result = cli("upload")

    assert result.returncode == 2
    assert "usage" in result.stderr


def test_upload_of_a_1000_photo_album_ends_all_ready_with_defaults(
    cli: Cli, tmp_path: Path
) -> None:
    album = tmp_path / "album"
    album.mkdir()
    names = []
    for n in range(1000):
        path = album / f"IMG_{n:04d}.png"
        path.write_bytes(make_image("image/png", width=4 + n % 13, height=3 + n % 7))
        names.append(str(path))

    result = cli("upload", *names, "--json", timeout=600)

    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert (len(report["uploaded"]), report["failed"]) == (1000, [])
    assert {image["status"] for image in report["uploaded"]} == {"ready"}
    listed = cli.json("ls", "--all", "--limit", "100")
    assert len(listed) == 1000


def test_get_a_variant_once_the_worker_made_it(
    cli: Cli, tmp_path: Path, service_env: dict[str, str]
) -> None:
    # Other tests' uploads (a 1,000-photo album) need no variants: start from an empty queue.
    sqs = boto3.client("sqs", endpoint_url=service_env["AWS_ENDPOINT_URL"], region_name="us-east-1")
    sqs.purge_queue(QueueUrl=sqs.get_queue_url(QueueName=service_env["IMAGES_QUEUE"])["QueueUrl"])
    sqs.close()
    with running([sys.executable, "-m", "app", "worker"], service_env, None):
        image = cli.json(
            "upload", str(_file(tmp_path, "v.png", "image/png", width=800, height=500))
        )["uploaded"][0]
        listed = wait_for(
            lambda: cli.json("ls", "--limit", "100"),
            lambda images: any(
                i["id"] == image["id"] and i["variants"]["thumb"]["status"] == "ready"
                for i in images
            ),
        )
        table = cli("ls", "--limit", "100").stdout
    got = cli.json("get", image["id"], "--variant", "thumb")

    assert any(i["id"] == image["id"] for i in listed)
    assert f"{image['id']}" in table
    assert next(line for line in table.splitlines() if image["id"] in line).split()[6] == "ready"
    assert got["path"] == "v.thumb.webp"
    with Image.open(tmp_path / "v.thumb.webp") as thumb:
        assert (thumb.format, thumb.size) == ("WEBP", (320, 200))


def test_login_writes_the_token_private_from_the_start(
    tmp_path: Path, api: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Never written first and chmod-ed after: with no chmod to call and no umask to help,
    the file is still private."""
    from app import cli  # noqa: PLC0415

    def no_chmod(*_: Any, **__: Any) -> None:
        raise AssertionError("chmod after writing leaves the token readable for a moment")

    monkeypatch.setattr(Path, "chmod", no_chmod)
    monkeypatch.setattr(os, "chmod", no_chmod)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    token = issue_token(Settings(jwt_secret=SECRET), "private", 600)
    previous = os.umask(0)
    try:
        with pytest.raises(SystemExit) as exited:
            cli.main(["login", "--url", str(api.base_url), "--token", token])
    finally:
        os.umask(previous)

    config = tmp_path / "config" / "images" / "config.json"
    assert exited.value.code == 0
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert json.loads(config.read_text())["token"] == token
