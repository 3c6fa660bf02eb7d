"""What the table and the bucket hold: every key, and image records in and out of items."""

import hashlib
import json
from typing import TYPE_CHECKING, Any

from app.models import (
    NOT_MADE,
    PUBLIC_STATUS,
    VARIANT_BOXES,
    ImageRecord,
    Status,
    VariantState,
    VariantStatus,
)
from app.storage.resources import DUE_ATTRIBUTE, PENDING_TAG

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

Item = dict[str, "AttributeValueTypeDef"]
Key = dict[str, "AttributeValueTypeDef"]

PENDING_TAGGING = "=".join(PENDING_TAG)


def object_key(image_id: str) -> str:
    """Server-chosen key: never derived from the client's filename."""
    return f"images/{image_id}"


def variant_key(image_id: str, name: str) -> str:
    # Under their own prefix: the bucket notifies the worker of images/ only.
    return f"variants/{image_id}/{name}.webp"


def variant_keys(image_id: str) -> list[str]:
    return [variant_key(image_id, name) for name in VARIANT_BOXES]


def every_key(image_id: str) -> list[str]:
    return [object_key(image_id), *variant_keys(image_id)]


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


SWEEP_POSITION_KEY = image_key("sweep#position")


def sweep_shard(image_id: str) -> str:
    return image_id[:1]


def to_item(record: ImageRecord) -> Item:
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
    if record.reason is not None:
        item["reason"] = {"S": record.reason}
    if record.title is not None:
        item["title"] = {"S": record.title}
    if record.description is not None:
        item["description"] = {"S": record.description}
    if record.due_at is not None:
        item[DUE_ATTRIBUTE] = {"N": str(record.due_at)}
        item["sweep_shard"] = {"S": sweep_shard(record.id)}
    return item


def variants_item(variants: dict[str, VariantState]) -> "AttributeValueTypeDef":
    def one(state: VariantState) -> "AttributeValueTypeDef":
        fields: dict[str, AttributeValueTypeDef] = {"status": {"S": state.status}}
        for name in ("width", "height", "bytes"):
            value = getattr(state, name)
            if value is not None:
                fields[name] = {"N": str(value)}
        if state.reason is not None:
            fields["reason"] = {"S": state.reason}
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
        )
    return found


def _variant_json(value: dict[str, Any] | None) -> dict[str, Any]:
    if value is None:
        return NOT_MADE.public()
    get = value["M"].get
    return {
        "status": get("status")["S"],
        "width": int(v["N"]) if (v := get("width")) else None,
        "height": int(v["N"]) if (v := get("height")) else None,
        "bytes": int(v["N"]) if (v := get("bytes")) else None,
        "reason": v["S"] if (v := get("reason")) else None,
    }


def image_json(item: dict[str, Any]) -> dict[str, Any]:
    """`from_item(item).public()` in one pass, for list pages: building the record and
    its variants only to read them back measured as a fifth of a page's own time
    (docs/benchmarks.md). A property test holds the two equal for every item shape."""
    get = item.get
    made = v["M"] if (v := get("variants")) else {}
    return {
        "id": item["image_id"]["S"],
        "filename": item["filename"]["S"],
        "content_type": item["content_type"]["S"],
        "size": int(item["size"]["N"]),
        "status": PUBLIC_STATUS[item["status"]["S"]],
        "reason": v["S"] if (v := get("reason")) else None,
        "title": v["S"] if (v := get("title")) else None,
        "description": v["S"] if (v := get("description")) else None,
        "tags": [tag["S"] for tag in v["L"]] if (v := get("tags")) else [],
        "created_at": item["created_at"]["S"],
        "uploaded_at": v["S"] if (v := get("uploaded_at")) else None,
        "width": int(v["N"]) if (v := get("width")) else None,
        "height": int(v["N"]) if (v := get("height")) else None,
        "placeholder": v["S"] if (v := get("placeholder")) else None,
        "variants": {
            "thumb": _variant_json(made.get("thumb")),
            "preview": _variant_json(made.get("preview")),
        },
        "thumb_url": None,
        "preview_url": None,
    }


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
    )
