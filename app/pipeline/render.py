"""Decode an original once and make its variants as configured (app/domain/variants.py):
each fitted to its box (scale-down, contain or cover), turned upright, stripped of
metadata, first frame only, in its format. Only the worker imports this module (it is
the only code that imports Pillow): the API's cold start never pays for it.

Pillow was chosen by measuring (docs/benchmarks.md): with JPEG draft mode (the decoder
shrinks by 1/2, 1/4 or 1/8 while decoding) it is faster than single-threaded libvips on
the same work and needs a third of the memory; pillow-heif adds HEIC.
"""

import io
from collections.abc import Mapping
from dataclasses import dataclass

import pillow_heif
from PIL import Image, ImageOps

from app.domain.containers import jpeg_scans
from app.domain.formats import BY_TYPE
from app.domain.variants import VariantSpec
from app.pipeline import placeholder
from app.pipeline.budget import OverBudget, Refused, run_bounded

pillow_heif.register_heif_opener()
# Every plugin now, not on first use: a render runs in a forked child (budget.py), which
# must never need the import lock some other thread of the parent may hold.
Image.init()

# Progressive encoders write about ten scans (libjpeg's simple progression: 10; mozjpeg's
# optimised ones a few more). Each scan costs a pass over every block of the image, so a
# small file repeating a cheap one would decode for minutes.
MAX_JPEG_SCANS = 100
WEBP_METHOD = 4  # libwebp's default effort
_ORIENTATION = 0x0112
# Only what is passed is written: no EXIF (GPS), no XMP, no comments. The colour profile
# stays, so colours stay as the camera meant them.
_ENCODERS: dict[str, tuple[str, dict[str, object]]] = {
    "webp": ("WEBP", {"method": WEBP_METHOD}),
    "avif": ("AVIF", {}),
    "jpeg": ("JPEG", {"optimize": True}),
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


def _scale(spec: VariantSpec, width: int, height: int) -> float:
    """How much the image is resized for this variant (before any crop)."""
    inside = min(spec.width / width, spec.height / height)
    if spec.fit == "cover":
        return max(spec.width / width, spec.height / height)
    if spec.fit == "scale-down":
        return min(inside, 1.0)  # never enlarged
    return inside


def _sized(width: int, height: int, scale: float) -> tuple[int, int]:
    return max(1, round(width * scale)), max(1, round(height * scale))


def _centre(size: tuple[int, int], spec: VariantSpec) -> tuple[int, int, int, int]:
    """The box of `spec`'s size in the middle of an image of `size` (cover's crop)."""
    left, top = (size[0] - spec.width) // 2, (size[1] - spec.height) // 2
    return left, top, left + spec.width, top + spec.height


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


def _decoded(
    data: bytes, content_type: str, max_pixels: int, variants: Mapping[str, VariantSpec]
) -> tuple[Image.Image, bytes | None]:
    """The image upright and displayable, decoded no larger than its largest variant
    needs, and its colour profile."""
    try:
        with Image.open(io.BytesIO(data), formats=[BY_TYPE[content_type].decoder]) as image:
            if image.width * image.height > max_pixels:
                raise Undecodable(f"{image.width}x{image.height} is over the pixel limit")
            # The boxes apply to the image upright: a quarter turn swaps its sides.
            turned = image.getexif().get(_ORIENTATION, 1) in (5, 6, 7, 8)
            width, height = (image.height, image.width) if turned else image.size
            largest = max(_scale(spec, width, height) for spec in variants.values())
            if image.format == "JPEG" and largest < 1:
                # Decode at 1/2, 1/4 or 1/8 scale, as long as that still covers the
                # largest variant: Pillow asks for the size, not for the scale.
                image.draft(image.mode, _sized(image.width, image.height, largest))
            image.load()
            icc = image.info.get("icc_profile")
            # In place: without an orientation to apply, that costs nothing (a copy would).
            ImageOps.exif_transpose(image, in_place=True)
            return _displayable(image), icc
    except Undecodable:
        raise
    except MemoryError:
        raise  # the render's budget turns it into the image's problem (budget.py)
    except Exception as exc:  # whatever the decoder says, it is about the bytes
        raise Undecodable(f"The image does not decode: {exc}") from exc


def _encoded(image: Image.Image, spec: VariantSpec, icc: bytes | None) -> bytes:
    if spec.format == "jpeg" and image.mode != "RGB":
        flat = Image.new("RGB", image.size, "white")  # JPEG has no transparency
        flat.paste(image, mask=image.getchannel("A") if image.mode == "RGBA" else None)
        image = flat
    out = io.BytesIO()
    encoder, options = _ENCODERS[spec.format]
    if icc:
        options = {**options, "icc_profile": icc}
    image.save(out, encoder, quality=spec.quality, **options)
    return out.getvalue()


def render(
    data: bytes, content_type: str, max_pixels: int, variants: Mapping[str, VariantSpec]
) -> Rendered:
    """`variants` of `data` (by name) and its placeholder, or Undecodable."""
    decoder = BY_TYPE[content_type].decoder
    if decoder == "JPEG" and jpeg_scans(data, MAX_JPEG_SCANS) > MAX_JPEG_SCANS:
        raise Undecodable(f"The JPEG has more than {MAX_JPEG_SCANS} scans")
    upright, icc = _decoded(data, content_type, max_pixels, variants)
    # Largest first, each from the last uncropped one that still covers it: cheaper, and
    # as sharp. reducing_gap first shrinks by whole factors (fast), then resamples the
    # rest with Lanczos.
    by_scale = sorted(
        variants.items(),
        key=lambda pair: _scale(pair[1], upright.width, upright.height),
        reverse=True,
    )
    renditions, current, current_scale = [], upright, 1.0
    for name, spec in by_scale:
        scale = _scale(spec, upright.width, upright.height)
        source = current if scale <= current_scale else upright
        size = _sized(upright.width, upright.height, scale)
        resized = (
            source
            if size == source.size
            else source.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        )
        if spec.fit == "cover":
            made = resized.crop(_centre(resized.size, spec))
        else:
            made, current, current_scale = resized, resized, scale
        renditions.append(Rendition(name, _encoded(made, spec, icc), made.width, made.height))
    small = current.convert("RGB")
    small.thumbnail((placeholder.MAX_SIDE, placeholder.MAX_SIDE))
    return Rendered(
        tuple(renditions), placeholder.encode(small.tobytes(), small.width, small.height)
    )


def render_bounded(
    data: bytes,
    content_type: str,
    variants: Mapping[str, VariantSpec],
    *,
    max_pixels: int,
    cpu_seconds: int,
    memory_bytes: int,
) -> Rendered:
    """`render` in a child process within a CPU-time and memory budget (wall-clock: three
    times the CPU time, for a share of a core): an image that takes more is Undecodable,
    with the reason, instead of stalling the worker and the batch behind it."""

    def work() -> list[bytes]:
        rendered = render(data, content_type, max_pixels, variants)
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
    placeholder_text, *made = parts
    if len(made) != 3 * len(variants):
        raise Undecodable("The render gave an incomplete answer")
    renditions = []
    for at in range(0, len(made), 3):
        name, size, encoded = made[at : at + 3]
        width, height = (int(side) for side in size.split())
        renditions.append(Rendition(name.decode(), encoded, width, height))
    return Rendered(tuple(renditions), placeholder_text.decode())
