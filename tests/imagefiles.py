"""Real image bytes for tests, made with Pillow (a dev dependency only)."""

import io

from PIL import Image

FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/gif": "GIF", "image/webp": "WEBP"}


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
