"""The container checks that decide whether bytes are really the declared image."""

import struct

import pytest

from app.domain.containers import Dimensions, Header, NeedsBytes
from app.domain.errors import InvalidImage
from app.domain.formats import inspect
from tests.imagefiles import FORMATS, isobmff, make_image, tiff


def inspect_image(prefix: bytes, content_type: str, total_size: int) -> Dimensions:
    """The dimensions the check for `content_type` reads from the first bytes."""
    return inspect(Header(prefix, total_size), content_type)


TYPES = list(FORMATS)


@pytest.mark.parametrize("content_type", TYPES)
def test_inspect_reads_dimensions(content_type: str) -> None:
    data = make_image(content_type, width=123, height=45)

    assert inspect_image(data, content_type, len(data)) == Dimensions(123, 45)


@pytest.mark.parametrize("content_type", TYPES)
def test_inspect_reads_dimensions_from_a_prefix(content_type: str) -> None:
    data = make_image(content_type, width=640, height=480)

    assert inspect_image(data[:1024], content_type, len(data)) == Dimensions(640, 480)


def test_inspect_reads_lossless_and_extended_webp() -> None:
    lossless = make_image("image/webp", width=9, height=7, lossless=True)
    with_exif = make_image("image/webp", width=9, height=7, exif=b"Exif\0\0MM")

    assert inspect_image(lossless, "image/webp", len(lossless)) == Dimensions(9, 7)
    assert inspect_image(with_exif, "image/webp", len(with_exif)) == Dimensions(9, 7)


def test_inspect_reads_progressive_jpeg() -> None:
    data = make_image("image/jpeg", width=50, height=60, progressive=True)

    assert inspect_image(data, "image/jpeg", len(data)) == Dimensions(50, 60)


# image/heif names the family: it takes HEIC and AVIF bytes, and HEIC bytes are HEIF.
SAME_FAMILY = {
    ("image/heif", "image/heic"),
    ("image/heic", "image/heif"),
    ("image/heif", "image/avif"),
}


@pytest.mark.parametrize(
    ("declared", "actual"),
    [(d, a) for d in TYPES for a in TYPES if d != a and (d, a) not in SAME_FAMILY],
)
def test_inspect_refuses_other_format(declared: str, actual: str) -> None:
    data = make_image(actual)

    with pytest.raises(InvalidImage):
        inspect_image(data, declared, len(data))


MAGIC = {
    "image/png": b"\x89PNG\r\n\x1a\n",
    "image/jpeg": b"\xff\xd8\xff",
    "image/gif": b"GIF89a",
    "image/webp": b"RIFF\x00\x01\x00\x00WEBP",
    "image/heic": b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic",
    "image/heif": b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1heic",
    "image/avif": b"\x00\x00\x00\x18ftypavif\x00\x00\x00\x00mif1avif",
    "image/tiff": b"II*\x00\x08\x00\x00\x00",  # the first directory right after
}
TAILS = {
    "zeros": b"\0" * 4096,
    "html": b"<html><body><script>alert(document.cookie)</script></body></html>" * 40,
    "spaces": b" " * 4096,
}


@pytest.mark.parametrize("content_type", TYPES)
@pytest.mark.parametrize("tail", list(TAILS))
def test_inspect_refuses_magic_followed_by_junk(content_type: str, tail: str) -> None:
    data = MAGIC[content_type] + TAILS[tail]

    with pytest.raises(InvalidImage):
        inspect_image(data, content_type, len(data))


@pytest.mark.parametrize("content_type", TYPES)
def test_inspect_refuses_truncated_header(content_type: str) -> None:
    data = make_image(content_type)

    with pytest.raises(InvalidImage):
        inspect_image(data[:12], content_type, len(data))


def test_inspect_refuses_png_with_corrupted_header_crc() -> None:
    data = bytearray(make_image("image/png"))
    data[20] ^= 0xFF  # inside IHDR's width

    with pytest.raises(InvalidImage):
        inspect_image(bytes(data), "image/png", len(data))


def test_inspect_refuses_webp_whose_riff_size_lies() -> None:
    data = make_image("image/webp")

    with pytest.raises(InvalidImage):
        inspect_image(data, "image/webp", len(data) + 100)


def test_inspect_refuses_empty_object() -> None:
    with pytest.raises(InvalidImage):
        inspect_image(b"", "image/png", 0)


def test_inspect_reads_heic_dimensions_after_the_clean_aperture() -> None:
    """Encoders pad HEVC to whole coding blocks: 37x21 is stored as 64x64 plus a crop."""
    data = make_image("image/heic", width=37, height=21)

    assert inspect_image(data, "image/heic", len(data)) == Dimensions(37, 21)


@pytest.mark.parametrize(("turns", "expected"), [(0, (64, 48)), (1, (48, 64)), (2, (64, 48))])
def test_inspect_turns_heif_dimensions_by_irot(turns: int, expected: tuple[int, int]) -> None:
    data = isobmff(quarter_turns=turns)

    assert inspect_image(data, "image/heic", len(data)) == Dimensions(*expected)


def test_inspect_crops_before_turning() -> None:
    data = isobmff(width=64, height=48, crop=(50, 40), quarter_turns=3)

    assert inspect_image(data, "image/heic", len(data)) == Dimensions(40, 50)


@pytest.mark.parametrize(
    ("declared", "brand"),
    [("image/heic", b"avif"), ("image/avif", b"heic"), ("image/heif", b"isom")],
)
def test_inspect_refuses_heif_of_another_brand(declared: str, brand: bytes) -> None:
    data = isobmff(brand=brand, compatible=brand)

    with pytest.raises(InvalidImage):
        inspect_image(data, declared, len(data))


def test_inspect_refuses_heif_without_image_size() -> None:
    data = isobmff(width=None)

    with pytest.raises(InvalidImage):
        inspect_image(data, "image/heic", len(data))


def test_inspect_refuses_heif_whose_meta_lies_beyond_the_prefix() -> None:
    data = isobmff()

    with pytest.raises(InvalidImage):
        inspect_image(data[:40], "image/heic", len(data))


# --- TIFF: the size from the first directory, wherever the writer put it ---------------


@pytest.mark.parametrize("order", ["<", ">"], ids=["little-endian", "big-endian"])
def test_tiff_in_either_byte_order_gives_its_size(order: str) -> None:
    data = tiff(123, 45, order=order)

    assert inspect_image(data[:1024], "image/tiff", len(data)) == Dimensions(123, 45)


def test_tiff_whose_directory_follows_the_image_data_asks_for_it() -> None:
    """What libtiff writes: the directory at the end, past the first bytes read."""
    data = tiff(640, 480, directory_last=True)
    offset = struct.unpack_from("<I", data, 4)[0]

    with pytest.raises(NeedsBytes) as asked:
        inspect_image(data[:1024], "image/tiff", len(data))
    window = data[asked.value.offset : asked.value.offset + asked.value.length]
    dims = inspect(Header(data[:1024], len(data), {asked.value.offset: window}), "image/tiff")

    assert asked.value.offset == offset
    assert dims == Dimensions(640, 480)


def test_tiff_turned_a_quarter_gives_its_size_upright() -> None:
    data = tiff(400, 300, orientation=6)

    assert inspect_image(data, "image/tiff", len(data)) == Dimensions(300, 400)


@pytest.mark.parametrize(
    "data",
    [
        b"II*\0" + struct.pack("<I", 10**9) + b"\0" * 100,  # a directory past the file
        b"II*\0" + struct.pack("<I", 8) + struct.pack("<H", 60000) + b"\0" * 100,
        b"II*\0" + struct.pack("<I", 8) + struct.pack("<H", 0) + b"\0" * 100,
        b"II+\0" + struct.pack("<HHQ", 8, 0, 16) + b"\0" * 100,  # BigTIFF
        tiff()[:8] + tiff()[8:].replace(struct.pack("<HHI", 256, 4, 1), b"\0" * 8, 1),
        b"MM\0*" + b"\0" * 100,
    ],
    ids=[
        "directory-outside",
        "too-many-entries",
        "no-entries",
        "bigtiff",
        "no-width",
        "no-directory",
    ],
)
def test_tiff_that_cannot_be_bounded_or_read_is_refused(data: bytes) -> None:
    with pytest.raises(InvalidImage):
        inspect_image(data, "image/tiff", len(data))
