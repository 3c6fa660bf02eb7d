"""Real image bytes for tests, made with Pillow (a dev dependency only)."""

import io
import random
import re
import struct
import zlib

import pillow_heif
from PIL import Image

from app.domain.formats import FORMATS as ACCEPTED

pillow_heif.register_heif_opener()  # HEIC/HEIF; Pillow itself reads and writes AVIF

# Every accepted format, as Pillow writes it: the service's own table, so a format added
# there is made, uploaded, confirmed and rendered by every test that goes through them.
FORMATS = {format_.content_type: format_.decoder for format_ in ACCEPTED}


def make_image(
    content_type: str = "image/png",
    width: int = 32,
    height: int = 24,
    color: str = "teal",
    **save_options: object,
) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, FORMATS[content_type], **save_options)
    return buffer.getvalue()


def noisy_image(content_type: str = "image/png", width: int = 200, height: int = 200) -> bytes:
    """Random pixels: an image that barely compresses (a big file from few pixels)."""
    buffer = io.BytesIO()
    pixels = random.Random(width * height).randbytes(width * height * 3)  # noqa: S311 - pixels
    Image.frombytes("RGB", (width, height), pixels).save(buffer, FORMATS[content_type])
    return buffer.getvalue()


def not_a_png(size: int = 200) -> bytes:
    """A PNG signature, then HTML: what confirm must refuse (and the worker too)."""
    return b"\x89PNG\r\n\x1a\n<html>not an image</html>".ljust(size, b" ")


def undecodable_png(width: int = 40, height: int = 30) -> bytes:
    """A PNG whose every header check passes (signature, IHDR, chunk CRCs, the zlib
    header) but whose pixel data is not a deflate stream: only decoding finds out."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    garbage = b"\x78\x9c" + bytes(range(256)) * 4  # a zlib header, then no valid deflate
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", garbage) + chunk(b"IEND", b"")
    )


def _box(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", 8 + len(body)) + kind + body


def _full_box(kind: bytes, body: bytes, version: int = 0, flags: int = 0) -> bytes:
    return _box(kind, bytes([version]) + flags.to_bytes(3, "big") + body)


def isobmff(
    brand: bytes = b"heic",
    compatible: bytes = b"mif1",
    width: int | None = 64,
    height: int = 48,
    quarter_turns: int = 0,
    crop: tuple[int, int] | None = None,
) -> bytes:
    """A minimal HEIF/AVIF header, box by box: ftyp, then meta with the primary item's
    properties (ispe; clap and irot if asked), then an empty mdat."""
    properties = []
    if width is not None:
        properties.append(_full_box(b"ispe", struct.pack(">II", width, height)))
    if crop is not None:
        properties.append(
            _box(b"clap", struct.pack(">IIIIiIiI", crop[0], 1, crop[1], 1, 0, 1, 0, 1))
        )
    if quarter_turns:
        properties.append(_box(b"irot", bytes([quarter_turns])))
    associations = bytes([len(properties)]) + bytes(0x80 | i for i in range(1, len(properties) + 1))
    ipma = _full_box(b"ipma", struct.pack(">IH", 1, 1) + associations)
    meta = _full_box(
        b"meta",
        _full_box(b"hdlr", bytes(4) + b"pict" + bytes(12) + b"\0")
        + _full_box(b"pitm", struct.pack(">H", 1))
        + _box(b"iprp", _box(b"ipco", b"".join(properties)) + ipma),
    )
    ftyp = _box(b"ftyp", brand + bytes(4) + compatible + brand)
    return ftyp + meta + _box(b"mdat", b"")


def png_of_size(size: int) -> bytes:
    """A valid PNG of exactly `size` bytes: a small image, padded with a private
    ancillary chunk (decoders skip it) before IEND."""
    image = make_image("image/png", width=16, height=12)
    iend = image[-12:]
    padding = size - len(image) - 12
    if padding < 0:
        raise ValueError(f"a PNG cannot be as small as {size} bytes")
    body = bytes(padding)
    chunk = (
        struct.pack(">I", padding) + b"prVt" + body + struct.pack(">I", zlib.crc32(b"prVt" + body))
    )
    return image[:-12] + chunk + iend


def _segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of each JPEG segment; a scan's entropy data runs to the next."""
    marker = re.compile(rb"\xff[\x01-\xcf\xd8-\xfe]")
    found, offset = [], 2
    while match := marker.search(data, offset):
        kind = data[match.start() + 1]
        if kind == 0xD9:
            found.append((kind, match.start(), match.end()))
            break
        (length,) = struct.unpack(">H", data[match.end() : match.end() + 2])
        found.append((kind, match.start(), match.end() + length))
        offset = match.end() + length
    return found


def many_scans_jpeg(extra_scans: int, width: int = 4000, height: int = 3000) -> bytes:
    """A valid progressive JPEG that repeats its cheapest scan: each copy costs a few
    bytes and a pass over every block of the image, so a small file decodes for long."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "teal").save(buffer, "JPEG", progressive=True)
    data = buffer.getvalue()
    segments = _segments(data)
    scans = [
        data[start : segments[n + 1][1]]
        for n, (kind, start, _) in enumerate(segments)
        if kind == 0xDA
    ]
    end = segments[-1][1]  # the end-of-image marker
    return data[:end] + min(scans, key=len) * extra_scans + data[end:]


def jpeg_with_a_thumbnail_inside() -> bytes:
    """A baseline JPEG whose APP1 segment carries another JPEG (as EXIF thumbnails do)."""
    inner, outer = io.BytesIO(), io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(inner, "JPEG", progressive=True)
    Image.new("RGB", (64, 48), "teal").save(outer, "JPEG")
    data, thumbnail = outer.getvalue(), b"Exif\0\0" + inner.getvalue()
    app1 = b"\xff\xe1" + struct.pack(">H", len(thumbnail) + 2) + thumbnail
    return data[:2] + app1 + data[2:]


def tiff(
    width: int = 40,
    height: int = 30,
    order: str = "<",
    directory_last: bool = False,
    orientation: int | None = None,
) -> bytes:
    """An uncompressed RGB TIFF, written by hand to choose what writers differ in: byte
    order (II or MM), and where the directory sits (libtiff writes it after the image
    data, at the end of the file; Pillow before)."""
    pixels = bytes(range(256)) * (width * height * 3 // 256 + 1)
    pixels = pixels[: width * height * 3]
    bits = struct.pack(f"{order}HHH", 8, 8, 8)
    entries = [
        (256, 4, 1, width),  # ImageWidth, LONG
        (257, 4, 1, height),  # ImageLength
        (258, 3, 3, None),  # BitsPerSample: 8, 8, 8 (stored apart: six bytes)
        (259, 3, 1, 1),  # Compression: none
        (262, 3, 1, 2),  # PhotometricInterpretation: RGB
        (273, 4, 1, None),  # StripOffsets
        *([(274, 3, 1, orientation)] if orientation else []),
        (277, 3, 1, 3),  # SamplesPerPixel
        (278, 4, 1, height),  # RowsPerStrip
        (279, 4, 1, len(pixels)),  # StripByteCounts
    ]
    directory_size = 2 + 12 * len(entries) + 4
    if directory_last:
        bits_at, pixels_at = 8, 8 + len(bits)
        directory_at = pixels_at + len(pixels)
    else:
        directory_at = 8
        bits_at = directory_at + directory_size
        pixels_at = bits_at + len(bits)
    directory = struct.pack(f"{order}H", len(entries))
    placed = {258: bits_at, 273: pixels_at}
    for tag, kind, count, given in entries:
        value = placed.get(tag, given)
        packed = (
            struct.pack(f"{order}H", value) + b"\0\0"
            if kind == 3 and count == 1
            else (struct.pack(f"{order}I", value))
        )
        directory += struct.pack(f"{order}HHI", tag, kind, count) + packed
    directory += b"\0\0\0\0"  # no next directory
    byte_order = b"II" if order == "<" else b"MM"
    header = byte_order + struct.pack(f"{order}HI", 42, directory_at)
    if directory_last:
        return header + bits + pixels + directory
    return header + directory + bits + pixels
