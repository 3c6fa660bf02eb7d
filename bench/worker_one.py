"""One worker measurement in a fresh process (peak memory is per process):
`python -m bench.worker_one service|inline|floor|vips FILE CONTENT_TYPE REPEATS` prints
JSON. *service* is what the worker runs (the render in a child process within its
budget); *inline* the same render in this process, so the two show the budget's cost."""

import io
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable

LIMIT = 40_000_000


def _service() -> Callable[[bytes, str], None]:
    from app.config import Settings
    from app.pipeline.render import render_bounded

    settings = Settings()

    def run(data: bytes, content_type: str) -> None:
        render_bounded(
            data,
            content_type,
            settings.variants,
            max_pixels=LIMIT,
            cpu_seconds=settings.render_cpu_seconds,
            memory_bytes=settings.render_memory_bytes,
        )

    return run


def _inline() -> Callable[[bytes, str], None]:
    from app.domain.variants import DEFAULT_VARIANTS
    from app.pipeline.render import render

    def run(data: bytes, content_type: str) -> None:
        render(data, content_type, LIMIT, DEFAULT_VARIANTS)

    return run


def _peak_mb() -> float:
    """The process's peak resident memory (VmHWM), or its render children's if higher
    (a forked child's resident set counts the pages it shares with this one too). The
    process's own ru_maxrss would not do: on Linux it survives exec, so a child starts
    with its parent's high-water mark."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    for line in open("/proc/self/status").read().splitlines():  # noqa: SIM115
        if line.startswith("VmHWM:"):
            return max(int(line.split()[1]) / 1024, children)
    return max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, children)


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # resets VmHWM to the current resident size


def _floor() -> Callable[[bytes, str], None]:
    """The bare library doing the same decode (JPEG draft included), resizes and encodes:
    no turning upright, no mode conversion, no placeholder, no checks."""
    import pillow_heif
    from PIL import Image

    pillow_heif.register_heif_opener()

    def fit(width: int, height: int, side: int) -> tuple[int, int]:
        scale = min(side / width, side / height, 1.0)
        return max(1, round(width * scale)), max(1, round(height * scale))

    def run(data: bytes, _content_type: str) -> None:
        with Image.open(io.BytesIO(data)) as image:
            if image.format == "JPEG":
                image.draft(image.mode, fit(image.width, image.height, 1600))
            image.load()
            current = image
            for side in (1600, 320):
                size = fit(image.width, image.height, side)
                current = current.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
                current.save(io.BytesIO(), "WEBP", quality=80, method=4)

    return run


def _vips() -> Callable[[bytes, str], None]:
    """libvips (the speed anchor): shrink-on-load thumbnail, then the smaller from it; one
    thread, so that every figure is per core."""
    os.environ["VIPS_CONCURRENCY"] = "1"
    import pyvips

    def run(data: bytes, _content_type: str) -> None:
        preview = pyvips.Image.thumbnail_buffer(data, 1600, height=1600, size="down")
        preview = preview.copy_memory()
        preview.webpsave_buffer(Q=80, effort=4, keep="none")
        preview.thumbnail_image(320, height=320, size="down").webpsave_buffer(
            Q=80, effort=4, keep="none"
        )

    return run


def main(kind: str, path: str, content_type: str, repeats: int) -> None:
    data = open(path, "rb").read()  # noqa: SIM115
    work = {"service": _service, "inline": _inline, "floor": _floor, "vips": _vips}[kind]()
    _reset_peak()
    before = _peak_mb()
    times = []
    for _ in range(repeats + 1):  # the first warms caches and allocators
        started = time.perf_counter()
        work(data, content_type)
        times.append(time.perf_counter() - started)
    peak = _peak_mb()
    print(
        json.dumps(
            {"ms": statistics.median(times[1:]) * 1000, "peak_mb": peak, "added_mb": peak - before}
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
