"""Container checks: prove that an object's header really is an image of the declared
type, and read its dimensions as a decoder shows them, without decoding a pixel.

Hand-written rather than Pillow's: the API function never imports an imaging library
(its cold start, docs/benchmarks.md), decompression bombs cost nothing, and each check
reads structure past the magic number, so "magic bytes + HTML" is refused. Which check
a declared type gets is app/domain/formats.py's business.
"""

import re
import struct
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Dimensions:
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class Header:
    """What a check reads: the object's first bytes, its whole size, and windows further
    in that a check asked for (offset -> bytes; see NeedsBytes)."""

    data: bytes
    size: int
    windows: Mapping[int, bytes] = field(default_factory=dict)


class Malformed(Exception):
    """Not a valid header of the type: the bytes are not that image."""


class Truncated(Malformed):
    """The header runs past the bytes given."""


class NeedsBytes(Exception):
    """The check needs `length` bytes at `offset`, past the first bytes (a TIFF's
    directory, which writers put after the image data): read them, ask again."""

    def __init__(self, offset: int, length: int) -> None:
        super().__init__(offset, length)
        self.offset = offset
        self.length = length


Check = Callable[[Header], Dimensions]


def _need(data: bytes, end: int) -> None:
    if len(data) < end:
        raise Truncated("header is truncated")


def png(header: Header) -> Dimensions:
    data, total_size = header.data, header.size
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise Malformed("not a PNG signature")
    offset, dims, seen_idat = 8, None, False
    # Walk every chunk that lies wholly in the prefix; each must carry a valid CRC.
    while offset + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, offset)
        kind = data[offset + 4 : offset + 8]
        if length > 0x7FFFFFFF or not kind.isalpha():
            raise Malformed("bad PNG chunk")
        end = offset + 12 + length
        if end > len(data):
            break
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack_from(">I", data, end - 4)
        if zlib.crc32(kind + body) != crc:
            raise Malformed("PNG chunk CRC mismatch")
        if dims is None:
            if kind != b"IHDR" or length != 13:
                raise Malformed("PNG does not start with IHDR")
            width, height, depth, color, compression, filt, interlace = struct.unpack(
                ">IIBBBBB", body
            )
            valid_depths = {
                0: {1, 2, 4, 8, 16},
                2: {8, 16},
                3: {1, 2, 4, 8},
                4: {8, 16},
                6: {8, 16},
            }
            if depth not in valid_depths.get(color, set()) or compression or filt or interlace > 1:
                raise Malformed("invalid IHDR")
            dims = Dimensions(width, height)
        elif kind == b"IDAT" and not seen_idat:
            seen_idat = True
            # Image data is a zlib stream: its two-byte header has a checksum of its own.
            if length >= 2 and (body[0] & 0x0F != 8 or (body[0] << 8 | body[1]) % 31):
                raise Malformed("IDAT is not a zlib stream")
        elif kind == b"IEND":
            if not seen_idat:
                raise Malformed("PNG has no image data")
            return dims
        offset = end
    if dims is None:
        raise Malformed("PNG header is truncated")
    if len(data) >= total_size:
        raise Malformed("PNG ends without IEND")
    return dims


_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


# TIFF field types by size in bytes: BYTE, ASCII, SHORT, LONG, RATIONAL, ... (TIFF 6.0).
_TIFF_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8}
_ORIENTATION = 0x0112


def _tiff_entries(tiff: bytes, offset: int, order: str) -> dict[int, int]:
    """The IFD at `offset` of a TIFF structure: tag -> its first value, for the tags
    holding one SHORT or LONG (sizes, orientation). Bounded: an entry count past what the
    bytes hold is malformed, not followed."""
    _need(tiff, offset + 2)
    (count,) = struct.unpack_from(f"{order}H", tiff, offset)
    _need(tiff, offset + 2 + 12 * count)
    found = {}
    for at in range(offset + 2, offset + 2 + 12 * count, 12):
        tag, kind, number = struct.unpack_from(f"{order}HHI", tiff, at)
        if number == 1 and kind == 3:
            found[tag] = struct.unpack_from(f"{order}H", tiff, at + 8)[0]
        elif number == 1 and kind == 4:
            found[tag] = struct.unpack_from(f"{order}I", tiff, at + 8)[0]
    return found


def _tiff_header(tiff: bytes) -> tuple[str, int]:
    """Byte order and the first IFD's offset of a TIFF structure."""
    _need(tiff, 8)
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None or struct.unpack_from(f"{order}H", tiff, 2)[0] != 42:
        raise Malformed("not a TIFF header")
    return order, struct.unpack_from(f"{order}I", tiff, 4)[0]


def _exif_orientation(segment: bytes) -> int:
    """The Orientation an APP1 Exif segment gives (1: as stored), if any."""
    if not segment.startswith(b"Exif\0\0"):
        return 1
    try:
        tiff = segment[6:]
        order, first = _tiff_header(tiff)
        return _tiff_entries(tiff, first, order).get(_ORIENTATION, 1)
    except (Malformed, struct.error):
        return 1  # unreadable Exif: decoders show the image as stored


def _turned(dims: Dimensions, orientation: int) -> Dimensions:
    """As a decoder shows it: orientations 5 to 8 turn the image a quarter."""
    return Dimensions(dims.height, dims.width) if 5 <= orientation <= 8 else dims


def jpeg(header: Header) -> Dimensions:
    data = header.data
    if not data.startswith(b"\xff\xd8\xff"):
        raise Malformed("not a JPEG signature")
    offset, orientation = 2, 1
    while True:
        _need(data, offset + 4)
        if data[offset] != 0xFF:
            raise Malformed("JPEG segment does not start with a marker")
        while data[offset + 1] == 0xFF:  # fill bytes are allowed before a marker
            offset += 1
            _need(data, offset + 4)
        marker = data[offset + 1]
        if marker in (0xD9, 0xDA, 0x00):
            raise Malformed("JPEG image data before a frame header")
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            offset += 2
            continue
        (length,) = struct.unpack_from(">H", data, offset + 2)
        if length < 2:
            raise Malformed("bad JPEG segment length")
        if marker == 0xE1 and orientation == 1:
            _need(data, offset + 2 + length)
            orientation = _exif_orientation(data[offset + 4 : offset + 2 + length])
        if marker in _SOF_MARKERS:
            _need(data, offset + 10)
            precision, height, width, components = struct.unpack_from(">BHHB", data, offset + 4)
            if precision not in (8, 12, 16) or not 1 <= components <= 4:
                raise Malformed("invalid JPEG frame header")
            if length != 8 + 3 * components:
                raise Malformed("JPEG frame header length mismatch")
            return _turned(Dimensions(width, height), orientation)
        offset += 2 + length


# A marker in entropy-coded data: 0xFF, not followed by a stuffed 0x00, a restart marker
# (0xD0-0xD7) or another 0xFF (fill).
_MARKER = re.compile(rb"\xff[\x01-\xcf\xd8-\xfe]")
_SOS, _EOI, _TEM = 0xDA, 0xD9, 0x01


def jpeg_scans(data: bytes, most: int) -> int:
    """How many scans (SOS segments) the whole JPEG holds, counting no further than
    `most` + 1. Decoding costs time per scan over every block of the image, so a small
    progressive file repeating one cheap scan could take minutes to decode: this is
    checked before decoding. Segments are skipped by their length, entropy-coded data
    up to its next marker, as a decoder reads them."""
    offset, scans = 2, 0
    while scans <= most:
        found = _MARKER.search(data, offset)
        if found is None or data[found.start() + 1] == _EOI:
            break
        if data[found.start() + 1] == _TEM or found.end() + 2 > len(data):
            offset = found.end()
            continue
        if data[found.start() + 1] == _SOS:
            scans += 1
        (length,) = struct.unpack_from(">H", data, found.end())
        offset = found.end() + length
    return scans


def gif(header: Header) -> Dimensions:
    data = header.data
    if data[:6] not in (b"GIF87a", b"GIF89a"):
        raise Malformed("not a GIF signature")
    _need(data, 13)
    width, height, packed = struct.unpack_from("<HHB", data, 6)
    offset = 13 + (3 << ((packed & 0x07) + 1) if packed & 0x80 else 0)
    # Blocks until the first image descriptor: extensions (0x21) of sub-blocks, or 0x2C.
    while True:
        _need(data, offset + 1)
        block = data[offset]
        if block == 0x2C:
            _need(data, offset + 11)
            local = data[offset + 9]
            lzw_at = offset + 10 + (3 << ((local & 0x07) + 1) if local & 0x80 else 0)
            _need(data, lzw_at + 1)
            if not 2 <= data[lzw_at] <= 8:
                raise Malformed("invalid GIF LZW code size")
            return Dimensions(width, height)
        if block != 0x21:
            raise Malformed("unexpected GIF block")
        offset += 2
        while True:
            _need(data, offset + 1)
            size = data[offset]
            offset += 1 + size
            if size == 0:
                break


def webp(header: Header) -> Dimensions:
    data, total_size = header.data, header.size
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise Malformed("not a WebP signature")
    _need(data, 30)
    (riff_size,) = struct.unpack_from("<I", data, 4)
    if riff_size + 8 != total_size:
        raise Malformed("WebP RIFF size does not match the object size")
    chunk = data[12:16]
    payload = data[20:]
    if chunk == b"VP8 ":
        # Frame tag (3 bytes, key frame bit clear) then the start code 9d 01 2a.
        if payload[0] & 0x01 or payload[3:6] != b"\x9d\x01\x2a":
            raise Malformed("invalid VP8 frame")
        width, height = struct.unpack_from("<HH", payload, 6)
        return Dimensions(width & 0x3FFF, height & 0x3FFF)
    if chunk == b"VP8L":
        (bits,) = struct.unpack_from("<I", payload, 1)
        if payload[0] != 0x2F or bits >> 29:
            raise Malformed("invalid VP8L header")
        return Dimensions((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8X":
        if payload[0] & 0xC1 or payload[1:4] != b"\0\0\0":
            raise Malformed("invalid VP8X header")
        width = int.from_bytes(payload[4:7], "little") + 1
        height = int.from_bytes(payload[7:10], "little") + 1
        following = payload[10:14]
        if len(following) == 4 and not all(
            c in b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 " for c in following
        ):
            raise Malformed("invalid chunk after VP8X")
        return Dimensions(width, height)
    raise Malformed("unknown WebP chunk")


# ISO BMFF brands (the `ftyp` box names the codec): what formats.py's rows accept.
HEVC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"})
AVIF_BRANDS = frozenset({b"avif", b"avis"})
HEIF_BRANDS = HEVC_BRANDS | AVIF_BRANDS | {b"mif1", b"msf1"}  # any image of the family


def _boxes(data: bytes, start: int, end: int) -> dict[bytes, tuple[int, int]]:
    """The boxes between start and end: type -> (body start, body end), first of each."""
    found: dict[bytes, tuple[int, int]] = {}
    offset = start
    while offset + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, offset)
        header = 8
        if size == 1:
            _need(data, offset + 16)
            (size,) = struct.unpack_from(">Q", data, offset + 8)
            header = 16
        elif size == 0:
            size = end - offset
        if size < header or not kind.isascii():
            raise Malformed("bad ISO BMFF box")
        found.setdefault(kind, (offset + header, min(offset + size, end)))
        offset += size
    return found


def _u32(data: bytes, offset: int) -> int:
    value: int = struct.unpack_from(">I", data, offset)[0]
    return value


def _u16(data: bytes, offset: int) -> int:
    value: int = struct.unpack_from(">H", data, offset)[0]
    return value


def _brands(data: bytes, ftyp: tuple[int, int]) -> set[bytes]:
    start, end = ftyp
    _need(data, start + 8)  # major brand, minor version, then compatible brands
    return {data[start : start + 4]} | {data[i : i + 4] for i in range(start + 8, end - 3, 4)}


def _primary_item(data: bytes, pitm: tuple[int, int]) -> int:
    start, _ = pitm
    return _u16(data, start + 4) if data[start] == 0 else _u32(data, start + 4)


def _property_list(data: bytes, ipco: tuple[int, int]) -> list[tuple[bytes, int]]:
    """ipco's boxes as (type, body start); ipma numbers them from 1."""
    properties = []
    offset, end = ipco
    while offset + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, offset)
        if size < 8:
            raise Malformed("bad property box")
        properties.append((kind, offset + 8))
        offset += size
    return properties


def _associated(data: bytes, ipma: tuple[int, int], item: int) -> list[int]:
    """The property indexes ipma associates with `item`."""
    start, _ = ipma
    version, flags = data[start], int.from_bytes(data[start + 1 : start + 4])
    offset, found = start + 8, []
    for _ in range(_u32(data, start + 4)):
        entry = _u16(data, offset) if version < 1 else _u32(data, offset)
        offset += 2 if version < 1 else 4
        indexes = []
        for _ in range(data[offset]):
            if flags & 1:
                indexes.append(_u16(data, offset + 1) & 0x7FFF)
                offset += 2
            else:
                indexes.append(data[offset + 1] & 0x7F)
                offset += 1
        offset += 1
        if entry == item:
            found = indexes
    return found


def _displayed(data: bytes, properties: list[tuple[bytes, int]], indexes: list[int]) -> Dimensions:
    """The primary item's size as a decoder shows it: ispe, cropped by clap, turned by
    irot (the order transformative properties apply in)."""
    width = height = quarter_turns = 0
    crop: tuple[int, int] | None = None
    for index in indexes:
        if not 1 <= index <= len(properties):
            raise Malformed("property index out of range")
        kind, body = properties[index - 1]
        if kind == b"ispe":
            width, height = _u32(data, body + 4), _u32(data, body + 8)  # a FullBox
        elif kind == b"clap":
            # Encoders pad to whole coding blocks; the clean aperture crops back.
            w_num, w_den, h_num, h_den = struct.unpack_from(">IIII", data, body)
            if not w_den or not h_den:
                raise Malformed("bad clean aperture")
            crop = (w_num // w_den, h_num // h_den)
        elif kind == b"irot":
            quarter_turns = data[body] & 3
    if not width or not height:
        raise Malformed("the primary item has no ispe")
    if crop is not None:
        width, height = min(width, crop[0]), min(height, crop[1])
    return Dimensions(height, width) if quarter_turns % 2 else Dimensions(width, height)


def isobmff(brands: frozenset[bytes]) -> Check:
    """HEIF and AVIF: an `ftyp` brand among `brands`; the meta box's primary item carries
    the size. Encoders put all of it first ("fast start"); after the media data, the
    bytes before are read on to find it."""

    def check(header: Header) -> Dimensions:
        data = header.data
        top = _boxes(data, 0, len(data))
        if data[4:8] != b"ftyp":
            raise Malformed("ISO BMFF must start with ftyp")
        if not _brands(data, top[b"ftyp"]) & brands:
            raise Malformed("no accepted brand in ftyp")
        if b"meta" not in top:
            # The boxes walked ran past the bytes given (an mdat before the meta box).
            raise Truncated("no meta box in the bytes read")
        meta_start, meta_end = top[b"meta"]
        _need(data, meta_end)
        meta = _boxes(data, meta_start + 4, meta_end)  # meta is a FullBox
        if b"pitm" not in meta or b"iprp" not in meta:
            raise Malformed("no primary item or properties")
        iprp = _boxes(data, *meta[b"iprp"])
        if b"ipco" not in iprp or b"ipma" not in iprp:
            raise Malformed("no item properties")
        indexes = _associated(data, iprp[b"ipma"], _primary_item(data, meta[b"pitm"]))
        return _displayed(data, _property_list(data, iprp[b"ipco"]), indexes)

    return check


# --- TIFF (scanners, cameras): the size is in the first image file directory -------------

_IMAGE_WIDTH, _IMAGE_LENGTH = 256, 257
# Most entries a directory may have: the TIFF 6.0 baseline names about 40 tags; cameras
# write a few dozen more. Past this the directory is not read (nor bounded).
_MAX_TIFF_ENTRIES = 512
_MAX_IFD_BYTES = 2 + 12 * _MAX_TIFF_ENTRIES + 4


def _directory_bytes(header: Header, offset: int, length: int) -> bytes:
    """`length` bytes of the directory at `offset`: within the first bytes, or from a
    window read for it (writers such as libtiff put it after the image data, at the
    end). Asked for once, as much as any directory may take."""
    end = min(offset + length, header.size)
    if end <= len(header.data):
        return header.data[offset:end]
    window = header.windows.get(offset)
    if window is not None and len(window) >= end - offset:
        return window[: end - offset]
    if offset < len(header.data):
        raise Truncated("the directory runs past the first bytes")  # a longer prefix does
    raise NeedsBytes(offset, min(_MAX_IFD_BYTES, header.size - offset))


def tiff(header: Header) -> Dimensions:
    """Classic TIFF, either byte order (BigTIFF, which needs 64-bit offsets, is not
    taken): ImageWidth and ImageLength of the first directory, turned by its
    Orientation as a decoder shows it."""
    order, first = _tiff_header(header.data)
    if not 8 <= first < header.size:
        raise Malformed("the first directory lies outside the file")
    (count,) = struct.unpack(f"{order}H", _directory_bytes(header, first, 2))
    if not 1 <= count <= _MAX_TIFF_ENTRIES:
        raise Malformed("a directory of no or too many entries")
    entries = _tiff_entries(_directory_bytes(header, first, 2 + 12 * count), 0, order)
    width, height = entries.get(_IMAGE_WIDTH), entries.get(_IMAGE_LENGTH)
    if not width or not height:
        raise Malformed("no ImageWidth or ImageLength")
    return _turned(Dimensions(width, height), entries.get(_ORIENTATION, 1))
