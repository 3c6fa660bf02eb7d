"""The worker's messages: S3's event notifications of uploads, GuardDuty's scan results
(EventBridge events, with IMAGES_SCAN=guardduty), and those the service writes itself
for an original (the backfill: make what is missing; the rescan: scan it again).
Anything that is not about an upload of ours is ignored, whatever its shape."""

import json
import logging
from dataclasses import dataclass
from urllib.parse import quote_plus, unquote_plus

from app.storage.items import image_of, object_key

log = logging.getLogger(__name__)


# GuardDuty Malware Protection for S3's result event (its User Guide, "Monitoring S3
# object scans with Amazon EventBridge").
GUARDDUTY_SOURCE = "aws.guardduty"
GUARDDUTY_RESULT = "GuardDuty Malware Protection Object Scan Result"
RESCAN = "ObjectCreated:Rescan"
BACKFILL = "ObjectCreated:Backfill"


@dataclass(frozen=True, slots=True)
class GuardDutyVerdict:
    """`NO_THREATS_FOUND`, `THREATS_FOUND` (with the threats' names), or why GuardDuty did
    not judge: `UNSUPPORTED`, `ACCESS_DENIED`, `FAILED`."""

    result: str
    threats: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Uploaded:
    """An original a message is about: its image and the ETag of the bytes it names, and
    what is asked: confirm and make (an upload), scan again (`rescan`), or apply a
    scanner's `verdict`."""

    image_id: str
    etag: str
    rescan: bool = False
    verdict: GuardDutyVerdict | None = None


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
    if _at(event, "detail-type") == GUARDDUTY_RESULT and _at(event, "source") == GUARDDUTY_SOURCE:
        return _scan_result(event, bucket)
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
            found.append(Uploaded(image_id, _quoted(etag), rescan=name == RESCAN))
    return found


def _quoted(etag: str) -> str:
    return f'"{etag.strip(chr(34))}"'


def _scan_result(event: object, bucket: str) -> list[Uploaded]:
    """GuardDuty's verdict on an object of our bucket (the key as S3 has it: EventBridge
    does not URL-encode it)."""
    detail = _at(event, "detail")
    key, etag = _at(detail, "s3ObjectDetails", "objectKey"), _at(detail, "s3ObjectDetails", "eTag")
    if _at(detail, "s3ObjectDetails", "bucketName") != bucket or not isinstance(key, str):
        return []
    image_id = image_of(key)
    if image_id is None or not isinstance(etag, str):
        return []
    result = _at(detail, "scanResultDetails", "scanResultStatus")
    if not isinstance(result, str):
        scan_status = _at(detail, "scanStatus")
        result = scan_status if isinstance(scan_status, str) else "FAILED"
    threats = _at(detail, "scanResultDetails", "threats")
    names = tuple(
        str(name)
        for threat in (threats if isinstance(threats, list) else [])
        if (name := _at(threat, "name"))
    )
    return [Uploaded(image_id, _quoted(etag), verdict=GuardDutyVerdict(result, names))]


def announcement(bucket: str, image_id: str, etag: str, event_name: str = BACKFILL) -> str:
    """An event notification for an original, shaped as S3 writes one (the event names
    are ours: S3 has none for "make what is missing" or "scan it again")."""
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventName": event_name,
        "s3": {
            "bucket": {"name": bucket},
            "object": {"key": quote_plus(object_key(image_id), safe="/"), "eTag": etag.strip('"')},
        },
    }
    return json.dumps({"Records": [record]})
