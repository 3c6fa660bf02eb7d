"""Malware scanning's cost: clamd's time per image and per MB on the tests' own
definitions (EICAR and a marker: tests/clamav.py; the official database is not
reachable here, its figures are ClamAV's published ones, docs/benchmarks.md), and the
upload-to-thumb time under `make run` with scanning on against off, interleaved."""

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from app.pipeline import clamd, clamd_daemon
from bench.e2e import _thumb_latency, make_run, percentile
from bench.photos import encoded
from tests.clamav import SIGNATURES, clamd_missing, write_database

IMAGES = {  # name: (kind, width, height), as the worker benchmark's
    "12 MP JPEG": ("jpeg", 4000, 3000),
    "40 MP JPEG": ("jpeg", 7300, 5475),
    "large PNG (12 MP RGBA)": ("png", 4000, 3000),
}


def _scan_times(address: str, quick: bool) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    repeats = 2 if quick else 5
    for name, (kind, width, height) in IMAGES.items():
        scale = 0.3 if quick else 1.0
        data, _ = encoded(kind, int(width * scale), int(height * scale))
        samples = []
        for _ in range(repeats):
            # Bytes never seen before: clamd answers bytes it has passed from a cache.
            fresh = data + os.urandom(16)
            started = time.perf_counter()
            reply = clamd.instream(address, fresh, timeout=120)
            samples.append(time.perf_counter() - started)
            assert reply == clamd.Reply(), reply
        ms = statistics.median(samples) * 1000
        rows[name] = {"bytes": len(data), "ms": ms, "ms_per_mb": ms / (len(data) / 1e6)}
    return rows


def run(quick: bool = False) -> dict[str, Any]:
    missing = clamd_missing()
    if missing:
        return {"skipped": missing}
    with tempfile.TemporaryDirectory() as directory:
        database = write_database(Path(directory) / "db", SIGNATURES)
        own = clamd_daemon.start(database, 64 << 20, wait_seconds=60)
        scans = _scan_times(own.address, quick)
        rounds, per_round, size = (1, 3, (800, 600)) if quick else (3, 10, (3000, 2000))
        latencies: dict[str, list[float]] = {"off": [], "on": []}
        for _ in range(rounds):
            for mode in ("off", "on"):
                extra = (
                    {"IMAGES_SCAN": "clamav", "IMAGES_CLAMAV_DATABASE": str(database)}
                    if mode == "on"
                    else {}
                )
                with make_run(extra) as (base, token):
                    latencies[mode] += _thumb_latency(base, token, per_round, size)
    summary = {
        mode: {"p50_s": statistics.median(taken), "p95_s": percentile(taken, 0.95)}
        for mode, taken in latencies.items()
    }
    return {
        "engine": own.engine,
        "signatures": len(SIGNATURES),
        "scans": scans,
        "photos": len(latencies["on"]),
        "photo_pixels": size[0] * size[1],
        "thumb": summary,
        "ratio_p50": summary["on"]["p50_s"] / summary["off"]["p50_s"],
        "ratio_p95": summary["on"]["p95_s"] / summary["off"]["p95_s"],
    }


if __name__ == "__main__":
    print(run(quick=True))
