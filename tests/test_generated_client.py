"""A client generated from the live schema (openapi-python-client, as a user of the API
would generate one) runs the whole flow: the schema's names and shapes are usable."""

import json
import subprocess
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.imagefiles import make_image
from tests.over_http import auth

pytestmark = pytest.mark.http

ROOT = Path(__file__).resolve().parent.parent
GENERATOR = ROOT / ".openapi-client" / "bin"
if not (GENERATOR / "openapi-python-client").exists():
    pytest.skip(
        "openapi-python-client is not installed: `make test` installs it in .openapi-client",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def generated(api: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("generated")
    (directory / "schema.json").write_text(api.get("/openapi.json").text)
    (directory / "config.yaml").write_text("post_hooks: []\n")  # no formatter needed
    subprocess.run(
        [
            str(GENERATOR / "openapi-python-client"),
            "generate",
            "--path", "schema.json",
            "--output-path", "client",
            "--meta", "none",
            "--config", "config.yaml",
        ],
        cwd=directory,
        check=True,
        capture_output=True,
    )  # fmt: skip
    return directory


def test_generated_client_names_operations_readably(generated: Path) -> None:
    modules = sorted(p.stem for p in (generated / "client" / "api" / "images").glob("images_*.py"))

    assert modules == [
        "images_cdn_cookies",
        "images_confirm",
        "images_create",
        "images_delete",
        "images_download",
        "images_get",
        "images_list",
        "images_upload_direct",
    ]


def test_generated_client_runs_the_whole_flow_branching_on_codes(
    generated: Path, api: httpx.Client, tmp_path: Path
) -> None:
    image = tmp_path / "g.png"
    image.write_bytes(make_image("image/png", width=21, height=13))
    token = auth("generated")["Authorization"].split()[1]

    result = subprocess.run(
        [
            str(GENERATOR / "python"),
            str(ROOT / "tests" / "generated_client" / "flow.py"),
            str(generated),
            str(api.base_url),
            token,
            str(image),
        ],
        capture_output=True,
        text=True,
        check=True,
    )

    assert json.loads(result.stdout) == {
        "created": "pending",
        "branched_on": ["not_uploaded"],
        "put": 200,
        "confirmed": ["ready", 21, 13],
        "fetched": True,
        "downloaded": True,
        "listed": True,
        "deleted": 204,
        "after": 404,
        "missing": "not_found",
    }
