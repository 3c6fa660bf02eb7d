"""Whose an image is, as its id and its objects' keys show it. Every object of a user
sits under one prefix derived from the user (an HMAC of their id, never the id itself),
so one CloudFront policy can cover exactly a user's own objects; the prefix ends every
image id, so any code holding an id knows where its objects are without a lookup."""

import hashlib
import hmac
import re
import secrets

OWNER_CHARS = 20  # 80 bits: two users sharing a prefix would share cookies
_RANDOM_BYTES = 12  # 96 bits, in the id's first characters: they spread the sweep's shards
IMAGE_ID_CHARS = 2 * _RANDOM_BYTES + OWNER_CHARS
# fullmatch, never match with `$`: `$` also matches before a final newline.
_IMAGE_ID = re.compile(rf"[0-9a-f]{{{IMAGE_ID_CHARS}}}")


def owner_prefix(secret: bytes, user_id: str) -> str:
    """The user's prefix: stable for as long as the secret is (never rotate it)."""
    return hmac.new(secret, user_id.encode(), hashlib.sha256).hexdigest()[:OWNER_CHARS]


def new_image_id(owner: str) -> str:
    return secrets.token_hex(_RANDOM_BYTES) + owner


def owner_of(image_id: str) -> str | None:
    """The owner prefix an image id ends with; None for an id this service never issued."""
    return image_id[-OWNER_CHARS:] if _IMAGE_ID.fullmatch(image_id) else None
