"""`make run` as a newcomer meets it: `python -m app serve` with no AWS configured."""

import subprocess
import sys

import httpx2 as httpx
import pytest

from app.auth import issue_token
from app.config import DEV_JWT_SECRET, Settings
from app.local import free_port
from tests.conftest import MakeRun
from tests.imagefiles import make_image
from tests.load import upload_batch
from tests.servers import BASE_ENV, running

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


def test_make_run_takes_200_concurrent_uploads_without_a_5xx(make_run: MakeRun) -> None:
    token = issue_token(Settings(jwt_secret=DEV_JWT_SECRET), "concurrent", 600)

    batch = upload_batch(make_run.url, token, count=200, concurrency=200)
    print(f"200 concurrent uploads through make run: {batch.seconds:.1f} s, {batch.statuses}")

    assert [status for status in batch.statuses if status >= 500] == []
    assert batch.failures == []
    assert len(batch.ready) == 200


def test_serve_prints_no_token_for_a_real_secret() -> None:
    port = free_port()
    env = {k: v for k, v in BASE_ENV.items() if not k.startswith("AWS_")}
    env |= {"IMAGES_PORT": str(port), "IMAGES_JWT_SECRET": "a-real-secret-" + "x" * 32}
    base = f"http://127.0.0.1:{port}"

    with running([sys.executable, "-m", "app", "serve"], env, f"{base}/health") as server:
        output = server.wait_for_output("Image service:")
        page = httpx.get(f"{base}/").text

    assert "TOKEN" not in output
    assert "eyJ" not in output  # no JWT at all
    assert 'name="demo-token"' not in page


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.org"])  # noqa: S104
def test_serve_refuses_the_development_secret_beyond_loopback(host: str) -> None:
    env = {k: v for k, v in BASE_ENV.items() if not k.startswith("AWS_")}
    env |= {"IMAGES_PORT": str(free_port()), "IMAGES_HOST": host}

    argv = [sys.executable, "-m", "app", "serve"]

    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)

    assert result.returncode == 1
    assert "Refusing to serve on" in result.stderr
    assert "IMAGES_JWT_SECRET" in result.stderr
