"""The worker's cost per image making thumb and preview: milliseconds and peak memory,
against the bare library doing the same work (the floor) and libvips (the anchor)."""

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.photos import encoded

IMAGES = {  # name: (kind, width, height); quick runs use a fortieth of the pixels
    "12 MP JPEG": ("jpeg", 4000, 3000),
    "40 MP JPEG": ("jpeg", 7300, 5475),
    "large PNG (12 MP RGBA)": ("png", 4000, 3000),
    "12 MP HEIC": ("heic", 4032, 3024),
}
KINDS = ("service", "inline", "floor", "vips")


def _measure(kind: str, path: Path, content_type: str, repeats: int) -> dict[str, Any] | None:
    if kind == "vips" and content_type == "image/heic":
        return None  # pyvips-binary ships no HEVC decoder (patents): pillow-heif does it
    result = subprocess.run(
        [sys.executable, "-m", "bench.worker_one", kind, str(path), content_type, str(repeats)],
        capture_output=True,
        text=True,
        check=True,
    )
    measured: dict[str, Any] = json.loads(result.stdout)
    return measured


def run(quick: bool = False) -> dict[str, Any]:
    """Each implementation in turn, several rounds (this machine is noisy: alternating
    keeps a slow moment from landing on one side only); medians per implementation."""
    repeats, rounds = (1, 1) if quick else (3, 3)
    results: dict[str, Any] = {"repeats": repeats, "rounds": rounds, "images": {}}
    with tempfile.TemporaryDirectory() as directory:
        for name, (format_, width, height) in IMAGES.items():
            scale = 0.15 if quick else 1.0
            data, content_type = encoded(format_, int(width * scale), int(height * scale))
            path = Path(directory) / name.replace(" ", "_")
            path.write_bytes(data)
            row: dict[str, Any] = {"bytes": len(data), "content_type": content_type}
            runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
            for _ in range(rounds):
                for kind in KINDS:
                    measured = _measure(kind, path, content_type, repeats)
                    if measured is not None:
                        runs[kind].append(measured)
            for implementation, measured_runs in runs.items():
                row[implementation] = (
                    {
                        field: statistics.median(run[field] for run in measured_runs)
                        for field in ("ms", "peak_mb", "added_mb")
                    }
                    if measured_runs
                    else None
                )
            row["ratio"] = row["service"]["ms"] / row["floor"]["ms"]
            # What running the render in a bounded child process costs over rendering here.
            row["budget_ratio"] = row["service"]["ms"] / row["inline"]["ms"]
            row["images_per_second_per_core"] = 1000 / row["service"]["ms"]
            results["images"][name] = row
    return results


if __name__ == "__main__":
    print(json.dumps(run(quick=True), indent=2))
