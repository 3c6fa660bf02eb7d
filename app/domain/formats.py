"""The accepted image formats, a row each. Everything the service knows of a format is
in its row, and everything that deals with formats reads the table: request validation
and the OpenAPI enum, confirm's container check, the worker's decoder, download names,
the command-line client, the gallery's file picker. Adding a format is a row here, and
its container check in app/domain/containers.py if none fits yet.
"""

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from app.domain import containers
from app.domain.containers import Check, Dimensions, Header, Malformed, NeedsBytes, Truncated
from app.domain.errors import InvalidImage


@dataclass(frozen=True, slots=True)
class Format:
    content_type: str
    label: str  # what people call it
    extensions: tuple[str, ...]  # the first is added to a download name without one
    check: Check  # proves a header is this format's and reads its size
    decoder: str  # what Pillow calls it: chosen by the declared type, never guessed
    # Whether bytes may be taken for this format when a client does not say which it
    # sends: a generic container (HEIF) would claim its specific kinds' bytes too.
    guessable: bool = True


FORMATS: tuple[Format, ...] = (
    Format("image/jpeg", "JPEG", (".jpg", ".jpeg", ".jpe", ".jfif"), containers.jpeg, "JPEG"),
    Format("image/png", "PNG", (".png",), containers.png, "PNG"),
    Format("image/gif", "GIF", (".gif",), containers.gif, "GIF"),
    Format("image/webp", "WebP", (".webp",), containers.webp, "WEBP"),
    # What iPhones and modern cameras write; browsers see their variants (WebP).
    Format("image/heic", "HEIC", (".heic",), containers.isobmff(containers.HEVC_BRANDS), "HEIF"),
    Format(
        "image/heif",
        "HEIF",
        (".heif", ".heic"),
        containers.isobmff(containers.HEIF_BRANDS),
        "HEIF",
        guessable=False,
    ),
    Format("image/avif", "AVIF", (".avif",), containers.isobmff(containers.AVIF_BRANDS), "AVIF"),
    # What scanners and some cameras write.
    Format("image/tiff", "TIFF", (".tif", ".tiff"), containers.tiff, "TIFF"),
)
BY_TYPE = {format_.content_type: format_ for format_ in FORMATS}
CONTENT_TYPES = tuple(BY_TYPE)

if TYPE_CHECKING:
    ContentType = str
else:
    # Built from the table: what pydantic validates and OpenAPI publishes as the enum.
    ContentType = Literal[CONTENT_TYPES]


class HeaderTooShort(InvalidImage):
    """The header runs past the first bytes given, which are fewer than the object's:
    read further and check again."""


def inspect(header: Header, content_type: str) -> Dimensions:
    """The dimensions of an image of `content_type` as a decoder shows it; InvalidImage
    (HeaderTooShort: read further) or NeedsBytes (read that window) otherwise."""
    try:
        dims = BY_TYPE[content_type].check(header)
    except NeedsBytes:
        raise
    except Truncated as exc:
        if len(header.data) < header.size:
            raise HeaderTooShort(f"The {content_type} header runs past its first bytes") from exc
        raise InvalidImage(f"The uploaded bytes are not a valid {content_type} image") from exc
    except (Malformed, struct.error, IndexError) as exc:
        raise InvalidImage(f"The uploaded bytes are not a valid {content_type} image") from exc
    if dims.width < 1 or dims.height < 1:
        raise InvalidImage("The uploaded image has no width or height")
    return dims


def guess(data: bytes) -> str | None:
    """The type whose header these bytes (a whole file) carry, for a client that did not
    say; generic containers never."""
    for format_ in FORMATS:
        if not format_.guessable:
            continue
        try:
            inspect(Header(data, len(data)), format_.content_type)
        except (InvalidImage, NeedsBytes):
            continue
        return format_.content_type
    return None
