"""Photo-like test images: smooth gradients with sensor-like noise. Flat colour would
flatter every codec; pure noise would punish them. Seeded, so every run codes the same."""

import io

import numpy as np
import pillow_heif
from PIL import Image

pillow_heif.register_heif_opener()


def photo(width: int, height: int, alpha: bool = False) -> Image.Image:
    rng = np.random.default_rng(20261122)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    red = (np.sin(x / width * 9) + 1) * 90 + np.cos(y / height * 7) * 40 + 60
    green = (np.cos((x + y) / (width + height) * 13) + 1) * 100
    blue = (np.sin(y / height * 5 + x / width * 3) + 1) * 110
    pixels = np.stack([red, green, blue], -1) + rng.normal(0, 12, (height, width, 3))
    channels = np.clip(pixels, 0, 255).astype(np.uint8)
    if alpha:
        opacity = np.clip(x / width * 255, 0, 255).astype(np.uint8)[..., None]
        channels = np.concatenate([channels, opacity], -1)
    return Image.fromarray(channels)


def encoded(kind: str, width: int, height: int) -> tuple[bytes, str]:
    """(bytes, content type) of a photo of `kind`: jpeg, png (RGBA) or heic."""
    buffer = io.BytesIO()
    if kind == "jpeg":
        photo(width, height).save(buffer, "JPEG", quality=90)
        return buffer.getvalue(), "image/jpeg"
    if kind == "png":
        photo(width, height, alpha=True).save(buffer, "PNG")
        return buffer.getvalue(), "image/png"
    photo(width, height).save(buffer, "HEIF", quality=80)
    return buffer.getvalue(), "image/heic"
