"""Decode an original once and make its variants: WebP, fitted, never upscaled, turned
upright, stripped of metadata, first frame only. Only the worker imports this module
(it is the only code that imports Pillow): the API's cold start never pays for it.

Pillow was chosen by measuring (docs/benchmarks.md): with JPEG draft mode (the decoder
shrinks by 1/2, 1/4 or 1/8 while decoding) it is faster than single-threaded libvips on
the same work and needs a third of the memory; pillow-heif adds HEIC.
"""

import io
from dataclasses import dataclass

import pillow_heif
from PIL import Image, ImageOps

from app import placeholder
from app.budget import OverBudget, Refused, run_bounded
from app.imaging import jpeg_scans

pillow_heif.register_heif_opener()
# Every plugin now, not on first use: a render runs in a forked child (app/budget.py),
# which must never need the import lock some other thread of the parent may hold.
Image.init()

# Progressive encoders write about ten scans (libjpeg's simple progression: 10; mozjpeg's
# optimised ones a few more). Each scan costs a pass over every block of the image, so a
# small file repeating a cheap one would decode for minutes.
MAX_JPEG_SCANS = 100

# Fits in the box, longest side first: (name, box side).
VARIANTS: tuple[tuple[str, int], ...] = (("preview", 1600), ("thumb", 320))
WEBP_QUALITY, WEBP_METHOD = 80, 4  # libwebp's default effort
# What Pillow calls each accepted type: the decoder is chosen by the declared type,
# never guessed from the bytes.
FORMATS = {
    "image/jpeg": "JPEG",
    "image/png": "PNG",
    "image/gif": "GIF",
    "image/webp": "WEBP",
    "image/heic": "HEIF",
    "image/heif": "HEIF",
    "image/avif": "AVIF",
}


class Undecodable(Exception):
    """The header passed, but the image does not decode: permanent, never retried."""


@dataclass(frozen=True, slots=True)
class Rendition:
    name: str
    data: bytes
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class Rendered:
    variants: tuple[Rendition, ...]
    placeholder: str


def _fit(width: int, height: int, side: int) -> tuple[int, int]:
    scale = min(side / width, side / height, 1.0)  # never upscaled
    return max(1, round(width * scale)), max(1, round(height * scale))


def _displayable(image: Image.Image) -> Image.Image:
    """RGB, or RGBA where there is transparency; 16-bit and CMYK made displayable.
    Already RGB or RGBA (nearly every photo) is kept as it is: a copy costs time."""
    if image.mode in ("RGB", "RGBA"):
        return image
    has_alpha = image.mode in ("LA", "PA", "La", "RGBa") or (
        image.mode == "P" and "transparency" in image.info
    )
    if image.mode.startswith("I"):  # 16/32-bit greyscale: keep the top 8 bits
        image = image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    return image.convert("RGBA" if has_alpha else "RGB")


def render(data: bytes, content_type: str, max_pixels: int) -> Rendered:
    """The variants of `data` (largest first) and its placeholder, or Undecodable."""
    if content_type == "image/jpeg" and jpeg_scans(data, MAX_JPEG_SCANS) > MAX_JPEG_SCANS:
        raise Undecodable(f"The JPEG has more than {MAX_JPEG_SCANS} scans")
    try:
        with Image.open(io.BytesIO(data), formats=[FORMATS[content_type]]) as image:
            if image.width * image.height > max_pixels:
                raise Undecodable(f"{image.width}x{image.height} is over the pixel limit")
            if image.format == "JPEG":
                # Decode at 1/2, 1/4 or 1/8 scale, as long as that still covers the
                # largest variant: Pillow asks for the box, not for the scale.
                image.draft(image.mode, _fit(image.width, image.height, VARIANTS[0][1]))
            image.load()
            icc = image.info.get("icc_profile")
            # In place: without an orientation to apply, that costs nothing (a copy would).
            ImageOps.exif_transpose(image, in_place=True)
            upright = _displayable(image)
    except Undecodable:
        raise
    except MemoryError:
        raise  # the worker's problem, not the image's: let the message be retried
    except Exception as exc:  # whatever the decoder says, it is about the bytes
        raise Undecodable(f"The image does not decode: {exc}") from exc
    renditions = []
    current = upright
    for name, side in VARIANTS:
        # Each variant from the last: cheaper, and as sharp. reducing_gap first shrinks
        # by whole factors (fast), then resamples the rest with Lanczos.
        size = _fit(upright.width, upright.height, side)
        if size != current.size:
            current = current.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        out = io.BytesIO()
        # Only what is passed is written: no EXIF (GPS), no XMP, no comments. The colour
        # profile stays, so colours stay as the camera meant them.
        extra = {"icc_profile": icc} if icc else {}
        current.save(out, "WEBP", quality=WEBP_QUALITY, method=WEBP_METHOD, **extra)
        renditions.append(Rendition(name, out.getvalue(), current.width, current.height))
    small = current.convert("RGB")
    small.thumbnail((placeholder.MAX_SIDE, placeholder.MAX_SIDE))
    return Rendered(
        tuple(renditions), placeholder.encode(small.tobytes(), small.width, small.height)
    )


def render_bounded(
    data: bytes, content_type: str, max_pixels: int, cpu_seconds: int, memory_bytes: int
) -> Rendered:
    """`render` in a child process within a CPU-time and memory budget (wall-clock: three
    times the CPU time, for a share of a core): an image that takes more is Undecodable,
    with the reason, instead of stalling the worker and the batch behind it."""

    def work() -> list[bytes]:
        rendered = render(data, content_type, max_pixels)
        parts = [rendered.placeholder.encode()]
        for variant in rendered.variants:
            parts += [variant.name.encode(), f"{variant.width} {variant.height}".encode()]
            parts.append(variant.data)
        return parts

    try:
        parts = run_bounded(work, Undecodable, cpu_seconds, memory_bytes, 3 * cpu_seconds)
    except Refused as refused:
        raise Undecodable(str(refused)) from refused
    except OverBudget as over:
        raise Undecodable(f"The image does not decode within its budget: it {over}") from over
    placeholder_text, *variants = parts
    if len(variants) != 3 * len(VARIANTS):
        raise Undecodable("The render gave an incomplete answer")
    renditions = []
    for at in range(0, len(variants), 3):
        name, size, encoded = variants[at : at + 3]
        width, height = (int(side) for side in size.split())
        renditions.append(Rendition(name.decode(), encoded, width, height))
    return Rendered(tuple(renditions), placeholder_text.decode())
