"""BlurHash: a placeholder of about 25 characters that a client paints as a blur of the
image's colours before any image arrives (https://blurha.sh; the gallery decodes it).

Encoded from a small RGB rendition (at most 32 pixels a side): a few thousand
multiply-adds, a few milliseconds next to the decode that precedes it.
"""

import math

_BASE83 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~"
_TO_LINEAR = [
    (v / 255) / 12.92 if v / 255 <= 0.04045 else ((v / 255 + 0.055) / 1.055) ** 2.4
    for v in range(256)
]
MAX_SIDE = 32


def _to_srgb(value: float) -> int:
    v = min(1.0, max(0.0, value))
    if v <= 0.0031308:
        return int(v * 12.92 * 255 + 0.5)
    return int((1.055 * v ** (1 / 2.4) - 0.055) * 255 + 0.5)


def _base83(value: int, length: int) -> str:
    return "".join(_BASE83[(value // 83 ** (length - i - 1)) % 83] for i in range(length))


def _quantise(value: float, maximum: float) -> int:
    return max(0, min(18, math.floor(math.copysign(abs(value / maximum) ** 0.5, value) * 9 + 9.5)))


def components_for(width: int, height: int) -> tuple[int, int]:
    """Four by three for landscape, three by four for portrait."""
    return (4, 3) if width >= height else (3, 4)


def encode(rgb: bytes, width: int, height: int) -> str:
    """The BlurHash of `width` x `height` pixels of packed 8-bit RGB."""
    if len(rgb) != width * height * 3 or not 0 < width <= MAX_SIDE or not 0 < height <= MAX_SIDE:
        raise ValueError("encode a small RGB rendition")
    x_components, y_components = components_for(width, height)
    linear = [_TO_LINEAR[byte] for byte in rgb]
    factors: list[tuple[float, float, float]] = []
    for j in range(y_components):
        cos_y = [math.cos(math.pi * j * y / height) for y in range(height)]
        for i in range(x_components):
            cos_x = [math.cos(math.pi * i * x / width) for x in range(width)]
            red = green = blue = 0.0
            for y in range(height):
                row, weight_y = y * width * 3, cos_y[y]
                for x in range(width):
                    basis, at = cos_x[x] * weight_y, row + x * 3
                    red += basis * linear[at]
                    green += basis * linear[at + 1]
                    blue += basis * linear[at + 2]
            scale = (1 if i == j == 0 else 2) / (width * height)
            factors.append((red * scale, green * scale, blue * scale))
    dc, ac = factors[0], factors[1:]
    text = _base83((x_components - 1) + (y_components - 1) * 9, 1)
    maximum = 1.0
    if ac:
        largest = max(abs(channel) for factor in ac for channel in factor)
        quantised = max(0, min(82, math.floor(largest * 166 - 0.5)))
        maximum = (quantised + 1) / 166
        text += _base83(quantised, 1)
    else:
        text += _base83(0, 1)
    text += _base83((_to_srgb(dc[0]) << 16) + (_to_srgb(dc[1]) << 8) + _to_srgb(dc[2]), 4)
    for red, green, blue in ac:
        text += _base83(
            _quantise(red, maximum) * 361
            + _quantise(green, maximum) * 19
            + _quantise(blue, maximum),
            2,
        )
    return text
