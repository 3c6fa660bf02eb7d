"""schemathesis's own CLI against the live service, as an outside client would run it:
`st run` on /openapi.json with every check, authenticated, all four phases."""

import re
import subprocess
import sys
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.over_http import auth

pytestmark = pytest.mark.http

ROOT = Path(__file__).resolve().parent.parent
ST = Path(sys.executable).parent / "st"


def test_st_run_passes_every_check(api: httpx.Client, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            str(ST),
            "--config-file", str(ROOT / "schemathesis.toml"),
            "--no-color",
            "run", f"{api.base_url}/openapi.json",
            "--checks", "all",
            "--header", f"Authorization: {auth('live-fuzz')['Authorization']}",
            "--phases", "examples,coverage,fuzzing,stateful",
            "--max-examples", "25",
            "--seed", "20261122",
            "--workers", "1",
            "--generation-database", "none",
            "--report-dir", str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=False,  # the output is the message
        cwd=tmp_path,
        timeout=240,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    cases = re.search(r"(\d+) generated, (\d+) passed", result.stdout)
    assert cases is not None, result.stdout[-3000:]
    assert int(cases[1]) == int(cases[2]) > 400  # every generated case ran, and passed
    assert re.search(r"Stateful \(in [^)]*\)\s+Scenarios:\s+\d+", result.stdout), result.stdout
