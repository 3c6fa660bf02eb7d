"""Variants: fitted and never upscaled, upright, stripped of metadata, colour profile and
transparency kept, first frame only; every accepted type; undecodable bytes refused."""

import io
import struct
import time

import blurhash
import pytest
from PIL import Image, ImageCms

from app.domain.containers import jpeg_scans
from app.domain.variants import DEFAULT_VARIANTS
from app.pipeline import placeholder
from app.pipeline.render import (
    MAX_JPEG_SCANS,
    Rendered,
    Rendition,
    Undecodable,
    render,
    render_bounded,
)
from tests.imagefiles import (
    FORMATS,
    jpeg_with_a_thumbnail_inside,
    make_image,
    many_scans_jpeg,
    undecodable_png,
)

LIMIT = 40_000_000
VARIANTS = DEFAULT_VARIANTS


def _variant(rendered: Rendered, name: str) -> Rendition:
    return next(variant for variant in rendered.variants if variant.name == name)


def _opened(variant: Rendition) -> Image.Image:
    return Image.open(io.BytesIO(variant.data))


def _riff_chunks(data: bytes) -> list[bytes]:
    assert data[:4] == b"RIFF"
    assert data[8:12] == b"WEBP"
    chunks, offset = [], 12
    while offset + 8 <= len(data):
        kind, size = data[offset : offset + 4], struct.unpack_from("<I", data, offset + 4)[0]
        chunks.append(kind)
        offset += 8 + size + (size & 1)
    return chunks


@pytest.mark.parametrize("content_type", list(FORMATS))
def test_every_accepted_type_renders_to_webp(content_type: str) -> None:
    rendered = render(
        make_image(content_type, width=900, height=600), content_type, LIMIT, VARIANTS
    )

    assert [(v.name, v.width, v.height) for v in rendered.variants] == [
        ("preview", 900, 600),
        ("thumb", 320, 213),
    ]
    assert {_opened(v).format for v in rendered.variants} == {"WEBP"}


def test_large_image_fits_the_boxes() -> None:
    rendered = render(
        make_image("image/jpeg", width=4000, height=3000), "image/jpeg", LIMIT, VARIANTS
    )

    assert (_variant(rendered, "preview").width, _variant(rendered, "preview").height) == (
        1600,
        1200,
    )
    assert (_variant(rendered, "thumb").width, _variant(rendered, "thumb").height) == (320, 240)


def test_small_image_is_never_upscaled() -> None:
    rendered = render(make_image("image/png", width=40, height=10), "image/png", LIMIT, VARIANTS)

    assert [(v.width, v.height) for v in rendered.variants] == [(40, 10), (40, 10)]


def test_exif_orientation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: shown turned 90 degrees clockwise
    data = make_image("image/jpeg", width=600, height=400, exif=exif)

    rendered = render(data, "image/jpeg", LIMIT, VARIANTS)

    assert (_variant(rendered, "preview").width, _variant(rendered, "preview").height) == (400, 600)


def test_metadata_is_stripped() -> None:
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif.get_ifd(0x8825)[2] = (52.0, 31.0, 12.0)  # GPS latitude
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'
    data = make_image("image/jpeg", width=300, height=200, exif=exif, xmp=xmp, comment=b"secret")

    rendered = render(data, "image/jpeg", LIMIT, VARIANTS)

    for variant in rendered.variants:
        assert _riff_chunks(variant.data)[0] in (b"VP8 ", b"VP8L", b"VP8X")
        assert not {b"EXIF", b"XMP "} & set(_riff_chunks(variant.data))
        assert b"PhoneMaker" not in variant.data
        assert b"secret" not in variant.data


def test_colour_profile_is_kept() -> None:
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = make_image("image/jpeg", width=300, height=200, icc_profile=profile)

    rendered = render(data, "image/jpeg", LIMIT, VARIANTS)

    assert _opened(_variant(rendered, "thumb")).info.get("icc_profile") == profile


def test_transparency_is_kept() -> None:
    image = Image.new("RGBA", (200, 100), (255, 0, 0, 255))
    image.paste((0, 0, 255, 0), (100, 0, 200, 100))  # right half fully transparent
    buffer = io.BytesIO()
    image.save(buffer, "PNG")

    thumb = _opened(_variant(render(buffer.getvalue(), "image/png", LIMIT, VARIANTS), "thumb"))

    assert thumb.mode == "RGBA"
    assert thumb.getpixel((thumb.width - 5, thumb.height // 2))[3] == 0
    assert thumb.getpixel((5, thumb.height // 2))[3] == 255


def test_first_frame_of_an_animation() -> None:
    frames = [Image.new("RGB", (60, 40), color) for color in ("red", "blue", "green")]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)

    thumb = _opened(_variant(render(buffer.getvalue(), "image/gif", LIMIT, VARIANTS), "thumb"))

    assert getattr(thumb, "n_frames", 1) == 1
    red, green, blue = thumb.convert("RGB").getpixel((30, 20))
    assert red > 200 > green + blue


@pytest.mark.parametrize(
    "mode",
    ["CMYK", "L", "I;16", "P", "LA"],
    ids=["cmyk", "grey", "16-bit", "palette", "grey-alpha"],
)
def test_unusual_modes_render(mode: str) -> None:
    image = Image.new(mode, (80, 60))
    content_type = "image/jpeg" if mode in ("CMYK", "L") else "image/png"
    buffer = io.BytesIO()
    image.save(buffer, FORMATS[content_type])

    rendered = render(buffer.getvalue(), content_type, LIMIT, VARIANTS)

    assert _opened(_variant(rendered, "thumb")).mode in ("RGB", "RGBA")


def test_bytes_that_do_not_decode_are_undecodable() -> None:
    with pytest.raises(Undecodable, match="does not decode"):
        render(undecodable_png(), "image/png", LIMIT, VARIANTS)


def test_another_format_than_declared_is_undecodable() -> None:
    with pytest.raises(Undecodable):
        render(make_image("image/png"), "image/jpeg", LIMIT, VARIANTS)


def test_more_pixels_than_allowed_is_undecodable() -> None:
    with pytest.raises(Undecodable, match="pixel limit"):
        render(make_image("image/png", width=100, height=100), "image/png", 9_999, VARIANTS)


def test_placeholder_is_a_blurhash_of_the_image() -> None:
    rendered = render(
        make_image("image/png", width=64, height=48, color="teal"), "image/png", LIMIT, VARIANTS
    )

    pixels = blurhash.decode(rendered.placeholder, 8, 6)
    assert len(rendered.placeholder) == 28  # 4x3 components
    for row in pixels:
        for red, green, blue in row:
            assert red < 20
            assert 110 < green < 145
            assert 110 < blue < 145


def test_placeholder_encoder_matches_the_reference_implementation() -> None:
    pixels = [
        [[(x * 37 + y * 11) % 256, (x * 5) % 256, (y * 23) % 256] for x in range(32)]
        for y in range(24)
    ]
    packed = bytes(value for row in pixels for pixel in row for value in pixel)

    assert placeholder.encode(packed, 32, 24) == blurhash.encode(
        pixels, components_x=4, components_y=3
    )


# --- Bounded: scans counted before decoding, each render within a CPU budget -------------

MiB = 1024 * 1024
GiB = 1024 * MiB


def test_a_jpeg_repeating_a_cheap_scan_is_refused_before_it_decodes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """0.7 MB, 44,000 scans of a few bytes each: left to decode, minutes of CPU."""
    hostile = many_scans_jpeg(44_000)

    def decode(*_: object, **__: object) -> None:
        raise AssertionError("decoded")

    monkeypatch.setattr(Image, "open", decode)

    with pytest.raises(Undecodable, match=f"more than {MAX_JPEG_SCANS} scans"):
        render(hostile, "image/jpeg", LIMIT, VARIANTS)


def test_scans_of_a_thumbnail_inside_the_jpeg_are_not_its_own() -> None:
    assert jpeg_scans(jpeg_with_a_thumbnail_inside(), MAX_JPEG_SCANS) == 1


def test_a_progressive_jpeg_renders_within_the_scan_limit() -> None:
    data = make_image("image/jpeg", width=900, height=600, progressive=True)

    rendered = render(data, "image/jpeg", LIMIT, VARIANTS)

    assert 1 < jpeg_scans(data, MAX_JPEG_SCANS) <= MAX_JPEG_SCANS
    assert _variant(rendered, "thumb").width == 320


def test_a_render_over_its_cpu_budget_is_undecodable_with_the_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whatever else makes a decode slow: the budget stops it, in the child process."""
    monkeypatch.setattr("app.pipeline.render.MAX_JPEG_SCANS", 10**6)  # let the slow file through
    slow = many_scans_jpeg(40_000)  # several seconds of decoding
    started = time.monotonic()

    with pytest.raises(Undecodable, match="more than 1 s of CPU time"):
        render_bounded(
            slow, "image/jpeg", VARIANTS, max_pixels=LIMIT, cpu_seconds=1, memory_bytes=GiB
        )

    assert time.monotonic() - started < 4


def test_a_render_over_its_memory_budget_is_undecodable_with_the_reason() -> None:
    # 40 MP: 120 MB of pixels, far more than anything this process has freed before (the
    # child may reuse what the parent's allocator kept).
    big = make_image("image/png", width=8000, height=5000)

    with pytest.raises(Undecodable, match="more memory"):
        render_bounded(
            big, "image/png", VARIANTS, max_pixels=LIMIT, cpu_seconds=10, memory_bytes=64 * MiB
        )


def test_a_bounded_render_is_the_render() -> None:
    data = make_image("image/jpeg", width=900, height=600)

    bounded = render_bounded(
        data, "image/jpeg", VARIANTS, max_pixels=LIMIT, cpu_seconds=10, memory_bytes=GiB
    )

    assert bounded == render(data, "image/jpeg", LIMIT, VARIANTS)
