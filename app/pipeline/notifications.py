"""S3's event notifications, the worker's messages: reading them (anything that is not an
upload of ours is ignored, whatever its shape), and writing one for an original, as the
backfill does to have the worker make what is missing."""

import json
import logging
from dataclasses import dataclass
from urllib.parse import quote_plus, unquote_plus

from app.storage.items import image_of, object_key

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Uploaded:
    """An original S3 reports created: its image and the ETag of the bytes it announced."""

    image_id: str
    etag: str


def _at(value: object, *path: str) -> object:
    """value[path[0]][path[1]]..., or None where any step is not an object."""
    for name in path:
        if not isinstance(value, dict):
            return None
        value = value.get(name)
    return value


def uploads_in(body: str, bucket: str) -> list[Uploaded]:
    """The originals an S3 event notification reports created in our bucket. Anything
    else, whatever its shape (S3's test event, another bucket, a key we never issue, JSON
    that is not S3's), is ignored: retrying it could never succeed."""
    try:
        event = json.loads(body)
    except (ValueError, RecursionError):
        log.warning("not an S3 event notification, ignored")
        return []
    records = _at(event, "Records")
    found = []
    for record in records if isinstance(records, list) else []:
        name, key, etag = (
            _at(record, "eventName"),
            _at(record, "s3", "object", "key"),
            _at(record, "s3", "object", "eTag"),
        )
        if not (isinstance(name, str) and name.startswith("ObjectCreated:")):
            continue
        if _at(record, "s3", "bucket", "name") != bucket:
            continue
        if not isinstance(key, str) or not isinstance(etag, str):
            continue
        # S3 sends keys URL-encoded, spaces as '+'; and ETags without their quotes.
        image_id = image_of(unquote_plus(key))
        if image_id:
            found.append(Uploaded(image_id, f'"{etag.strip(chr(34))}"'))
    return found


def announcement(bucket: str, image_id: str, etag: str) -> str:
    """An event notification for an original, shaped as S3 writes one (the `ObjectCreated`
    event name is ours: S3 has none for "make what is missing")."""
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Backfill",
        "s3": {
            "bucket": {"name": bucket},
            "object": {"key": quote_plus(object_key(image_id), safe="/"), "eTag": etag.strip('"')},
        },
    }
    return json.dumps({"Records": [record]})
