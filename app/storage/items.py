"""What the table and the bucket hold: every key, image records in and out of items, and
an image's public JSON (built here, from the item, and nowhere else)."""

import hashlib
import json
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from app.domain.owners import owner_of
from app.domain.records import (
    PUBLIC_STATUS,
    SERVABLE_SCANS,
    ImageRecord,
    ScanState,
    ScanStatus,
    Status,
    VariantState,
    VariantStatus,
)
from app.domain.variants import OUTPUT_TYPES, VariantSpec
from app.storage.resources import DUE_ATTRIBUTE, ORIGINAL_NAME, PENDING_TAG, USERS_PREFIX

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

Item = dict[str, "AttributeValueTypeDef"]
Key = dict[str, "AttributeValueTypeDef"]

PENDING_TAGGING = "=".join(PENDING_TAG)


_ORIGINAL = re.compile(rf"^{USERS_PREFIX}([0-9a-f]+)/([0-9a-f]+)/{ORIGINAL_NAME}$")


def owner_path(owner: str) -> str:
    """Where every object of the owner with this prefix is (the key prefix)."""
    return f"{USERS_PREFIX}{owner}/"


# Remembered: a page of variants names each image's prefix on every request, and
# checking the id measured as a third of a variant's JSON (docs/benchmarks.md).
@lru_cache(maxsize=4096)
def _image_path(image_id: str) -> str:
    owner = owner_of(image_id)
    if owner is None:
        raise ValueError(f"not an image id this service issued: {image_id!r}")
    return f"{owner_path(owner)}{image_id}/"


# u/<owner>/<image id>/original, and the variants beside it: one prefix per user (a
# CloudFront policy's resource), one per image (deleted together).
def object_key(image_id: str) -> str:
    """Server-chosen key: never derived from the client's filename."""
    return f"{_image_path(image_id)}{ORIGINAL_NAME}"


def image_of(key: str) -> str | None:
    """The image an original's key names; None for any other key."""
    found = _ORIGINAL.fullmatch(key)
    if found is None or owner_of(found.group(2)) != found.group(1):
        return None
    return found.group(2)


def _variant_object(image_path: str, name: str, fingerprint: str, format_: str) -> str:
    """A variant's object: its name, the definition it was made to (a changed definition
    makes new objects, never served under an old URL), its format."""
    return f"{image_path}{name}-{fingerprint}.{format_}"


def variant_key(image_id: str, name: str, spec: VariantSpec) -> str:
    return _variant_object(_image_path(image_id), name, spec.fingerprint, spec.format)


def _made_key(image_id: str, name: str, state: VariantState) -> str | None:
    """Where a made variant's object is (its definition and format recorded with it)."""
    if state.spec is None or state.format is None:
        return None
    return _variant_object(_image_path(image_id), name, state.spec, state.format)


def variant_keys(
    image_id: str, made: Mapping[str, VariantState], configured: Mapping[str, VariantSpec]
) -> list[str]:
    """Every variant object an image may have: those its record says were made (under
    any definition, configured or removed since) and those the configuration names (a
    worker may have written them and stopped before recording them)."""
    keys = {variant_key(image_id, name, spec) for name, spec in configured.items()}
    keys.update(key for name, state in made.items() if (key := _made_key(image_id, name, state)))
    return sorted(keys)


def image_key(image_id: str) -> Key:
    return {"image_id": {"S": image_id}}


# Bookkeeping items share the table; '#' cannot occur in an image id, and they carry no
# user_id, so they never appear in the listing index.
def usage_key(user_id: str) -> Key:
    return image_key(f"usage#{user_id}")


def idempotency_key(user_id: str, key: str) -> Key:
    # Hashed together: user "a#b" with key "c" and user "a" with key "b#c" stay apart.
    digest = hashlib.sha256(json.dumps([user_id, key]).encode()).hexdigest()
    return image_key(f"idempotency#{digest}")


def bookmark_key(task: str) -> Key:
    return image_key(f"bookmark#{task}")


def sweep_shard(image_id: str) -> str:
    return image_id[:1]


def to_item(record: ImageRecord) -> Item:
    """The whole record as an item (what from_item reads back)."""
    item: Item = {
        "image_id": {"S": record.id},
        "user_id": {"S": record.user_id},
        "created_at": {"S": record.created_at},
        "filename": {"S": record.filename},
        "content_type": {"S": record.content_type},
        "size": {"N": str(record.size)},
        "status": {"S": record.status},
        "tags": {"L": [{"S": tag} for tag in record.tags]},
    }
    for name in ("title", "description", "uploaded_at", "placeholder", "reason"):
        if (text := getattr(record, name)) is not None:
            item[name] = {"S": text}
    for name in ("width", "height"):
        if (number := getattr(record, name)) is not None:
            item[name] = {"N": str(number)}
    if record.variants:
        item["variants"] = variants_item(record.variants)
    if record.due_at is not None:
        item[DUE_ATTRIBUTE] = {"N": str(record.due_at)}
        item["sweep_shard"] = {"S": sweep_shard(record.id)}
    if record.scan != ScanState():
        item["scan"] = scan_item(record.scan)
    return item


def scan_item(scan: ScanState) -> "AttributeValueTypeDef":
    fields: dict[str, AttributeValueTypeDef] = {
        "status": {"S": scan.status},
        "attempts": {"N": str(scan.attempts)},
    }
    for name in ("signature", "reason", "engine", "scanned_at"):
        if (text := getattr(scan, name)) is not None:
            fields[name] = {"S": text}
    if scan.told:
        fields["told"] = {"BOOL": True}
    return {"M": fields}


_SCAN_STATUS = {status.value: status for status in ScanStatus}
_SKIPPED = ScanState()


def _scan(value: dict[str, Any] | None) -> ScanState:
    """An item's scan; none stored: confirmed with scanning off (or before it existed)."""
    if value is None:
        return _SKIPPED
    get = value["M"].get
    return ScanState(
        _SCAN_STATUS[get("status")["S"]],
        v["S"] if (v := get("signature")) else None,
        v["S"] if (v := get("reason")) else None,
        v["S"] if (v := get("engine")) else None,
        v["S"] if (v := get("scanned_at")) else None,
        int(v["N"]) if (v := get("attempts")) else 0,
        bool(v["BOOL"]) if (v := get("told")) else False,
    )


_VARIANT_NUMBERS = ("width", "height", "bytes")
_VARIANT_TEXTS = ("reason", "spec", "format")


def variants_item(variants: Mapping[str, VariantState]) -> "AttributeValueTypeDef":
    def one(state: VariantState) -> "AttributeValueTypeDef":
        fields: dict[str, AttributeValueTypeDef] = {"status": {"S": state.status}}
        for name in _VARIANT_NUMBERS:
            if (number := getattr(state, name)) is not None:
                fields[name] = {"N": str(number)}
        for name in _VARIANT_TEXTS:
            if (text := getattr(state, name)) is not None:
                fields[name] = {"S": text}
        return {"M": fields}

    return {"M": {name: one(state) for name, state in variants.items()}}


# Enum members by value through a dict: calling the Enum costs a microsecond each, and a
# list page reads dozens of them (docs/benchmarks.md).
_STATUS = {status.value: status for status in Status}
_VARIANT_STATUS = {status.value: status for status in VariantStatus}


# A list page converts dozens of items per request, so these stay lean: optional
# attributes read inline (a helper call per field measured as a fifth of the time), no
# str()/Enum() calls (docs/benchmarks.md).
def _variants(value: dict[str, Any] | None) -> dict[str, VariantState]:
    if value is None:
        return {}
    found = {}
    for name, entry in value["M"].items():
        get = entry["M"].get
        found[name] = VariantState(
            _VARIANT_STATUS[get("status")["S"]],
            int(v["N"]) if (v := get("width")) else None,
            int(v["N"]) if (v := get("height")) else None,
            int(v["N"]) if (v := get("bytes")) else None,
            v["S"] if (v := get("reason")) else None,
            v["S"] if (v := get("spec")) else None,
            v["S"] if (v := get("format")) else None,
        )
    return found


def from_item(item: dict[str, Any]) -> ImageRecord:
    get = item.get
    return ImageRecord(
        item["image_id"]["S"],
        item["user_id"]["S"],
        item["filename"]["S"],
        item["content_type"]["S"],
        int(item["size"]["N"]),
        _STATUS[item["status"]["S"]],
        item["created_at"]["S"],
        title=v["S"] if (v := get("title")) else None,
        description=v["S"] if (v := get("description")) else None,
        tags=[tag["S"] for tag in v["L"]] if (v := get("tags")) else [],
        uploaded_at=v["S"] if (v := get("uploaded_at")) else None,
        width=int(v["N"]) if (v := get("width")) else None,
        height=int(v["N"]) if (v := get("height")) else None,
        due_at=int(v["N"]) if (v := get(DUE_ATTRIBUTE)) else None,
        variants=_variants(get("variants")),
        placeholder=v["S"] if (v := get("placeholder")) else None,
        reason=v["S"] if (v := get("reason")) else None,
        scan=_scan(get("scan")),
    )


_SERVABLE = {status.value for status in SERVABLE_SCANS}
_NO_FIELDS: dict[str, Any] = {}
_NO_SCAN = _NO_FIELDS.get  # what a record without a scan reads
_UNRECORDED_SCAN = {status.value: "pending" for status in Status} | {Status.READY.value: "skipped"}


class JsonShape:
    """Builds an image's public JSON (`Image`, app/images/models.py) from its item, for
    the variants configured. A ready variant's `url` holds its object's key until the
    service signs it (every answer is signed): the key is where the URL points."""

    def __init__(self, configured: Mapping[str, VariantSpec]) -> None:
        self._configured = [(name, spec.content_type) for name, spec in configured.items()]

    def variants(
        self, image_id: str, made: dict[str, Any], servable: bool = True
    ) -> dict[str, Any]:
        """Each configured variant; the key of its object only if it may be served (made,
        and the image scanned clean: one made before the verdict is never handed out)."""
        variants: dict[str, dict[str, Any]] = {}
        path = None
        for name, content_type in self._configured:
            value = made.get(name)
            if value is None:
                variants[name] = {
                    "status": "pending",
                    "content_type": content_type,
                    "width": None,
                    "height": None,
                    "bytes": None,
                    "reason": None,
                    "url": None,
                }
                continue
            get = value["M"].get
            status = get("status")["S"]
            # A variant made to an earlier definition serves (its own object, in its own
            # format) until the worker has made it again.
            format_ = v["S"] if (v := get("format")) else None
            url = None
            if servable and status == "ready" and format_ and (spec := get("spec")):
                url = _variant_object(
                    path or (path := _image_path(image_id)), name, spec["S"], format_
                )
            variants[name] = {
                "status": status,
                "content_type": OUTPUT_TYPES[format_] if format_ else content_type,
                "width": int(v["N"]) if (v := get("width")) else None,
                "height": int(v["N"]) if (v := get("height")) else None,
                "bytes": int(v["N"]) if (v := get("bytes")) else None,
                "reason": v["S"] if (v := get("reason")) else None,
                "url": url,
            }
        return variants

    def image(self, item: dict[str, Any]) -> dict[str, Any]:
        """The JSON of `Image` from its item, in one pass: a list page converts dozens per
        request (building records only to read them back measured as a fifth of a
        page's own time, docs/benchmarks.md)."""
        get = item.get
        image_id = item["image_id"]["S"]
        status = item["status"]["S"]
        scan_get = scan["M"].get if (scan := get("scan")) else _NO_SCAN
        # None recorded: confirmed with scanning off (skipped), or not confirmed yet.
        scan_status = v["S"] if (v := scan_get("status")) else _UNRECORDED_SCAN[status]
        servable = status == "ready" and scan_status in _SERVABLE
        return {
            "id": image_id,
            "filename": item["filename"]["S"],
            "content_type": item["content_type"]["S"],
            "size": int(item["size"]["N"]),
            "status": PUBLIC_STATUS[status],
            "reason": v["S"] if (v := get("reason")) else None,
            "title": v["S"] if (v := get("title")) else None,
            "description": v["S"] if (v := get("description")) else None,
            # Most images have no tags, and a comprehension costs a call even when empty.
            "tags": [tag["S"] for tag in tags] if (v := get("tags")) and (tags := v["L"]) else [],
            "created_at": item["created_at"]["S"],
            "uploaded_at": v["S"] if (v := get("uploaded_at")) else None,
            "width": int(v["N"]) if (v := get("width")) else None,
            "height": int(v["N"]) if (v := get("height")) else None,
            "placeholder": v["S"] if (v := get("placeholder")) else None,
            "variants": self.variants(image_id, v["M"] if (v := get("variants")) else {}, servable),
            "scan": {
                "status": scan_status,
                "signature": v["S"] if (v := scan_get("signature")) else None,
                "reason": v["S"] if (v := scan_get("reason")) else None,
            },
        }
