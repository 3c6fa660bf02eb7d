"""Opaque list cursors: signed, and bound to the caller and to the query they came from."""

import base64
import binascii
import hashlib
import hmac
import json

from app.domain.errors import BadCursor
from app.storage.listing import ListFilter, ListPosition

_MAC_BYTES = 16


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CursorCodec:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _mac(self, user_id: str, where: ListFilter, payload: bytes) -> bytes:
        # The filters are signed too: a cursor resumed under other filters could name a
        # start key outside the new key condition, which DynamoDB rejects.
        context = json.dumps(
            [
                user_id,
                where.status,
                where.content_type,
                where.tag,
                where.created_from,
                where.created_to,
            ]
        ).encode()
        digest = hmac.new(self._secret, context + b"\0" + payload, hashlib.sha256).digest()
        return digest[:_MAC_BYTES]

    def encode(self, user_id: str, where: ListFilter, position: ListPosition) -> str:
        payload = json.dumps(list(position), separators=(",", ":")).encode()
        return f"{_b64(payload)}.{_b64(self._mac(user_id, where, payload))}"

    def decode(self, cursor: str, user_id: str, where: ListFilter) -> ListPosition:
        try:
            payload_text, mac_text = cursor.split(".")
            payload, mac = _unb64(payload_text), _unb64(mac_text)
        except (ValueError, binascii.Error) as exc:
            raise BadCursor("Invalid cursor") from exc
        if not hmac.compare_digest(mac, self._mac(user_id, where, payload)):
            raise BadCursor("Invalid cursor")
        created_at, image_id = json.loads(payload)
        return str(created_at), str(image_id)
