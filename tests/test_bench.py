"""The tiny version of every benchmark (`make bench` runs the real one), so they keep
working; the exact counts they report are asserted, the timings are not."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.http  # the benchmarks start servers; the report is made once

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    out = tmp_path_factory.mktemp("bench")
    before = _checkout_data()
    subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--out", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=240,
        env={**os.environ, "AWS_EC2_METADATA_DISABLED": "true"},
    )
    (out / "checkout-data-untouched").write_text(str(_checkout_data() == before))
    return out, json.loads((out / "benchmarks.json").read_text())


def _checkout_data() -> list[tuple[str, int]]:
    """What the checkout's .data/ (a newcomer's `make run` gallery) holds, and when each
    file last changed."""
    data = ROOT / ".data"
    return sorted((str(p), p.stat().st_mtime_ns) for p in data.rglob("*")) if data.exists() else []


def test_bench_never_touches_the_checkouts_gallery(report: tuple[Path, dict[str, object]]) -> None:
    out, _ = report

    assert (out / "checkout-data-untouched").read_text() == "True"


def test_bench_writes_report_and_plots(report: tuple[Path, dict[str, object]]) -> None:
    out, _ = report

    text = (out / "benchmarks.md").read_text()
    for section in (
        "Cold start",
        "Warm overhead",
        "Throughput",
        "List cost at scale",
        "Presigning",
        "Worker",
        "A page with thumbs",
        "A page with CDN URLs",
        "End to end under `make run`",
        "restart time",
        "Scanning",
    ):
        assert f"{section}" in text
    for plot in ("bench-warm.png", "bench-scale.png", "bench-throughput.png", "bench-worker.png"):
        assert (out / plot).read_bytes().startswith(b"\x89PNG")


def test_bench_list_page_is_one_query_at_any_size(report: tuple[Path, dict[str, object]]) -> None:
    _, results = report

    sizes = results["scale"]["sizes"]  # type: ignore[index]
    assert [row["unfiltered"]["queries_per_page"] for row in sizes.values()] == [1.0, 1.0]


def test_bench_presigning_builds_no_client(report: tuple[Path, dict[str, object]]) -> None:
    _, results = report

    presigned = results["presign"]  # type: ignore[index]
    assert (presigned["sessions_built"], presigned["clients_built"]) == (0, 0)
    assert presigned["urls"] == 100


def test_bench_measures_every_endpoint_and_scenario(
    report: tuple[Path, dict[str, object]],
) -> None:
    _, results = report

    assert set(results["warm"]["endpoints"]) == {  # type: ignore[index]
        "create",
        "get",
        "download",
        "list",
        "list-thumbs",
        "confirm",
        "delete",
    }
    scenarios = results["throughput"]["scenarios"]  # type: ignore[index]
    assert set(scenarios) == {"create-upload", "download-url", "list"}
    assert all(row["service_rps"] > 0 and row["floor_rps"] > 0 for row in scenarios.values())
    assert results["cold_start"]["ratio"] > 0  # type: ignore[index]


def test_bench_reports_the_worker_cold_start_before_and_after(
    report: tuple[Path, dict[str, object]],
) -> None:
    out, results = report

    cold = results["cold_start"]  # type: ignore[index]
    assert cold["worker_ms"] > 0
    assert cold["worker_floor_ms"] > 0
    assert cold["worker_with_fastapi_ms"] > 0
    assert "| worker | before | floor |" in (out / "benchmarks.md").read_text()


def test_bench_prices_a_cdn_page_with_either_key_type(
    report: tuple[Path, dict[str, object]],
) -> None:
    _, results = report

    kinds = results["cdn"]["kinds"]  # type: ignore[index]
    assert set(kinds) == {"ecdsa", "rsa"}
    assert all(
        set(row["p50_ms"]) == {"plain", "remembered", "first_sight"} for row in kinds.values()
    )


def test_bench_scans_with_a_real_clamd_on_and_off(
    report: tuple[Path, dict[str, object]],
) -> None:
    _, results = report

    run = results["scan"]  # type: ignore[index]
    if "skipped" in run:
        pytest.skip(run["skipped"])
    assert set(run["scans"]) == {"12 MP JPEG", "40 MP JPEG", "large PNG (12 MP RGBA)"}
    assert run["thumb"]["on"]["p50_s"] > 0
    assert run["ratio_p50"] > 0


def test_bench_worker_measures_every_image_against_the_floor(
    report: tuple[Path, dict[str, object]],
) -> None:
    _, results = report

    images = results["worker"]["images"]  # type: ignore[index]
    assert set(images) == {"12 MP JPEG", "40 MP JPEG", "large PNG (12 MP RGBA)", "12 MP HEIC"}
    assert all(row["ratio"] > 0 and row["service"]["peak_mb"] > 0 for row in images.values())
    assert images["12 MP HEIC"]["vips"] is None  # no HEVC decoder in pyvips-binary
    assert images["12 MP JPEG"]["vips"]["ms"] > 0


def test_bench_end_to_end_makes_thumbs_and_takes_a_batch_without_5xx(
    report: tuple[Path, dict[str, object]],
) -> None:
    _, results = report

    e2e = results["e2e"]  # type: ignore[index]
    assert e2e["thumb_p50_s"] > 0
    assert e2e["batch"]["server_errors"] == 0
    assert e2e["batch"]["ready"] == e2e["batch"]["uploads"]


def test_bench_restart_brings_every_image_back(report: tuple[Path, dict[str, object]]) -> None:
    _, results = report

    restarted = results["restart"]  # type: ignore[index]
    assert restarted["images"] > 0
    assert restarted["kept"]["with_thumbs"] == restarted["images"]
    assert restarted["floor"]["with_thumbs"] == 0
    assert restarted["recorder"]["requests"] > restarted["images"]


def test_bench_only_measures_the_named_sections_again_and_keeps_the_rest(
    report: tuple[Path, dict[str, object]], tmp_path: Path
) -> None:
    out, results = report
    for name in ("benchmarks.json", "benchmarks.md"):
        shutil.copy(out / name, tmp_path / name)

    subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--out", str(tmp_path), "--only", "presign"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=120,
        env={**os.environ, "AWS_EC2_METADATA_DISABLED": "true"},
    )
    again = json.loads((tmp_path / "benchmarks.json").read_text())

    assert {name: again[name] for name in results if name != "presign"} == {
        name: value for name, value in results.items() if name != "presign"
    }
    assert again["presign"] != results["presign"]
    assert "`make bench ONLY=presign`" in (tmp_path / "benchmarks.md").read_text()
