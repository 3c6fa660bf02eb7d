"""Request and response models: the public HTTP contract, and the stored record."""

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

ContentType = Literal[
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/webp",
    # What iPhones and modern cameras write; browsers see their WebP variants.
    "image/heic",
    "image/heif",
    "image/avif",
]
CONTENT_TYPES: tuple[ContentType, ...] = get_args(ContentType)
# What a client sees and may filter by.
PublicStatus = Literal["pending", "ready", "rejected"]


class Status(StrEnum):
    """A record's state. `deleting` is internal: such a record is never shown."""

    PENDING = "pending"
    READY = "ready"
    # The bytes were checked and refused (`reason` says why) and removed; the upload is
    # still open: valid bytes PUT while the URL lives are confirmed like any others.
    REJECTED = "rejected"
    DELETING = "deleting"


# Not confirmed yet: what counts against the pending quota and what confirm may flip.
UNCONFIRMED = (Status.PENDING, Status.REJECTED)


# S3's ceiling for one PUT; the configurable limit (IMAGES_MAX_UPLOAD_BYTES) is lower.
S3_MAX_PUT_BYTES = 5 * 1024**3


def _encodable(value: str) -> str:
    # JSON allows lone surrogates ("\ud800"); they cannot be stored as UTF-8 in DynamoDB
    # or S3 metadata, so refuse them here rather than fail at write time.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("text must be valid Unicode (no lone surrogates)") from exc
    return value


Text = Annotated[str, AfterValidator(_encodable)]
# Any case in, lower case stored: "Cat" and "cat" are one tag.
Tag = Annotated[
    str,
    StringConstraints(min_length=1, max_length=50, pattern=r"^[A-Za-z0-9_-]+$"),
    AfterValidator(str.lower),
]
ImageId = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
]


_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")


def _rfc3339(value: object) -> object:
    # Pydantic would also take 1700000000 or "0.5" as Unix times, and naive times with
    # no offset; a filter on time must say which instant it means.
    if isinstance(value, str):
        if not _RFC3339.match(value):
            raise ValueError("use an RFC 3339 date-time with offset, e.g. 2026-01-31T12:00:00Z")
        try:  # RFC 3339 allows "t" and "z"; year 1 at +01:00 is before the first UTC instant
            return datetime.fromisoformat(value.upper()).astimezone(UTC)
        except (ValueError, OverflowError) as exc:
            raise ValueError("date-time out of range") from exc
    return value


Rfc3339 = Annotated[datetime, BeforeValidator(_rfc3339)]


def format_timestamp(moment: datetime) -> str:
    """ISO-8601 UTC with microseconds: sorts as text, which is what the GSI range key needs
    (isoformat pads the year to four digits; strftime's %Y does not on glibc)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    utc = moment.astimezone(UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="microseconds") + "Z"


class CreateImageRequest(BaseModel):
    """What a client declares before uploading; the signed PUT holds it to type and size."""

    model_config = ConfigDict(extra="forbid")

    filename: Annotated[Text, Field(min_length=1, max_length=255)]
    content_type: ContentType
    size: Annotated[int, Field(ge=1, le=S3_MAX_PUT_BYTES, description="Exact size in bytes")]
    title: Annotated[Text, Field(max_length=200)] | None = None
    description: Annotated[Text, Field(max_length=2000)] | None = None
    tags: Annotated[list[Tag], Field(max_length=20)] = []

    @field_validator("tags")
    @classmethod
    def _dedupe(cls, tags: list[str]) -> list[str]:
        return list(dict.fromkeys(tags))


# Derived sizes every ready image gets: WebP fitted in a square box of this side.
VariantName = Literal["thumb", "preview"]
VARIANT_BOXES: dict[VariantName, int] = {"preview": 1600, "thumb": 320}  # largest first
# Where an image's JSON carries each variant's presigned URL.
URL_FIELDS: dict[VariantName, str] = {"thumb": "thumb_url", "preview": "preview_url"}


class VariantStatus(StrEnum):
    PENDING = "pending"  # not made yet (the worker runs within seconds of the upload)
    READY = "ready"
    FAILED = "failed"  # the image does not decode; `reason` says why. Never retried.


class Variant(BaseModel):
    status: VariantStatus
    width: int | None = None
    height: int | None = None
    bytes: int | None = None
    reason: str | None = None


class Variants(BaseModel):
    thumb: Variant
    preview: Variant


# Times are RFC 3339 in UTC with microseconds, exactly as stored (they sort as text).
Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]


class Image(BaseModel):
    """An image as its owner sees it; storage internals (bucket, key, owner) never appear."""

    id: str
    filename: str
    content_type: ContentType
    size: int
    status: PublicStatus
    reason: str | None = Field(
        description="Why the uploaded bytes were refused (status `rejected`): PUT valid "
        "bytes again while the upload URL lives, then confirm; or start a new upload"
    )
    title: str | None
    description: str | None
    tags: list[str]
    created_at: Timestamp
    uploaded_at: Timestamp | None
    width: int | None
    height: int | None
    placeholder: str | None = Field(
        description="BlurHash (https://blurha.sh) of the image: paint it while loading"
    )
    variants: Variants
    thumb_url: str | None = Field(description="Short-lived URL of the ready thumb (WebP)")
    preview_url: str | None = Field(description="Short-lived URL of the ready preview (WebP)")


class UploadInstructions(BaseModel):
    method: Literal["PUT"] = "PUT"
    url: str
    headers: dict[str, str] = Field(description="Send exactly these headers with the PUT")
    expires_at: datetime


class CreateImageResponse(BaseModel):
    image: Image
    upload: UploadInstructions


class DownloadLink(BaseModel):
    url: str
    expires_at: datetime


class ImageList(BaseModel):
    items: list[Image]
    next_cursor: str | None


CURSOR_PATTERN = r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{22}$"


class ListQuery(BaseModel):
    """Filters for listing; every one is optional and all of them combine."""

    model_config = ConfigDict(extra="forbid")

    limit: Annotated[int, Field(ge=1, le=100)] = 20
    cursor: (
        Annotated[
            str,
            Field(
                min_length=24,
                max_length=1024,
                # What CursorCodec writes: a base64url payload, a dot, a 16-byte MAC.
                pattern=CURSOR_PATTERN,
                description="`next_cursor` of the previous page, unchanged",
            ),
        ]
        | None
    ) = None
    content_type: ContentType | None = None
    tag: Tag | None = None
    created_after: Rfc3339 | None = Field(default=None, description="Inclusive lower bound")
    created_before: Rfc3339 | None = Field(default=None, description="Inclusive upper bound")
    status: PublicStatus = "ready"


@dataclass(slots=True)
class VariantState:
    status: VariantStatus
    width: int | None = None
    height: int | None = None
    bytes: int | None = None
    reason: str | None = None

    def public(self) -> dict[str, Any]:
        return {
            # The plain value: pydantic_core's to_json serializes an Enum member several
            # times slower than a str, and a list page holds dozens (docs/benchmarks.md).
            "status": self.status.value,
            "width": self.width,
            "height": self.height,
            "bytes": self.bytes,
            "reason": self.reason,
        }


NOT_MADE = VariantState(VariantStatus.PENDING)
# How each stored status reads to the owner (a record being deleted is never shown).
PUBLIC_STATUS: dict[str, PublicStatus] = {
    Status.PENDING: "pending",
    Status.READY: "ready",
    Status.REJECTED: "rejected",
    Status.DELETING: "pending",
}


@dataclass(slots=True)
class ImageRecord:
    """One row of the images table, as the storage layer hands it to the service."""

    id: str
    user_id: str
    filename: str
    content_type: ContentType
    size: int
    status: Status
    created_at: str
    title: str | None = None
    description: str | None = None
    tags: list[str] = field(default_factory=list)
    uploaded_at: str | None = None
    width: int | None = None
    height: int | None = None
    # While set, the sweep owns whatever is unfinished once this Unix time has passed.
    due_at: int | None = None
    variants: dict[str, VariantState] = field(default_factory=dict)
    placeholder: str | None = None
    # Why the last bytes checked were refused (status `rejected`).
    reason: str | None = None

    @property
    def was_confirmed(self) -> bool:
        """Ready, or being deleted after it was: what its quota was counted as."""
        return self.uploaded_at is not None

    def variant(self, name: str) -> VariantState:
        return self.variants.get(name, NOT_MADE)

    @property
    def variants_made(self) -> bool:
        """Every variant is made, or failed for good: nothing is left for the worker."""
        return all(self.variant(name).status != VariantStatus.PENDING for name in VARIANT_BOXES)

    def public(self) -> dict[str, Any]:
        """The JSON of `Image` without its URLs (ImageService signs them in). A list page
        builds the same from its items in one pass: `app/storage/items.py` image_json."""
        variants = self.variants
        return {
            "id": self.id,
            "filename": self.filename,
            "content_type": self.content_type,
            "size": self.size,
            "status": PUBLIC_STATUS[self.status],
            "reason": self.reason,
            "title": self.title,
            "description": self.description,
            "tags": self.tags,
            "created_at": self.created_at,
            "uploaded_at": self.uploaded_at,
            "width": self.width,
            "height": self.height,
            "placeholder": self.placeholder,
            "variants": {
                "thumb": variants.get("thumb", NOT_MADE).public(),
                "preview": variants.get("preview", NOT_MADE).public(),
            },
            "thumb_url": None,
            "preview_url": None,
        }
