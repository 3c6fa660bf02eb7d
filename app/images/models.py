"""The public contract, as pydantic models: what clients send and get back, what OpenAPI
publishes. An image's JSON is built in one place (app/storage/items.py, image_json) and
these models describe it; a test holds the two to each other."""

import re
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from app.domain.errors import Code
from app.domain.formats import ContentType
from app.domain.records import PublicStatus, ScanStatus, VariantStatus

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
        if not _RFC3339.fullmatch(value):
            raise ValueError("use an RFC 3339 date-time with offset, e.g. 2026-01-31T12:00:00Z")
        try:  # RFC 3339 allows "t" and "z"; year 1 at +01:00 is before the first UTC instant
            return datetime.fromisoformat(value.upper()).astimezone(UTC)
        except (ValueError, OverflowError) as exc:
            raise ValueError("date-time out of range") from exc
    return value


Rfc3339 = Annotated[datetime, BeforeValidator(_rfc3339)]


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


class Variant(BaseModel):
    """A derived image, as configured (IMAGES_VARIANTS) and as made."""

    status: VariantStatus = Field(
        description="`pending`: not made yet (work still to do); `ready`; `failed`: it "
        "cannot be made from this image (`reason` says why)"
    )
    content_type: str
    width: int | None
    height: int | None
    bytes: int | None
    reason: str | None
    url: str | None = Field(description="Short-lived URL, while `ready`")


# Times are RFC 3339 in UTC with microseconds, exactly as stored (they sort as text).
Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]


class Scan(BaseModel):
    """Whether the bytes were found free of malware."""

    status: ScanStatus
    signature: str | None = Field(description="What the scanner found (status `infected`)")
    reason: str | None = Field(description="Why the scanner could not judge (status `failed`)")


class Image(BaseModel):
    """An image as its owner sees it; storage internals (bucket, key, owner) never appear."""

    id: str
    filename: str
    content_type: ContentType
    size: int
    status: PublicStatus
    reason: str | None = Field(
        description="Why the uploaded bytes were refused (status `rejected`): PUT valid "
        "bytes again while the upload URL lives, then confirm; or start a new upload. "
        "Bytes found infected are removed for good"
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
    variants: dict[str, Variant] = Field(
        description="Every configured variant by name (`thumb` and `preview` always)"
    )
    scan: Scan = Field(
        description="The malware scan of its bytes: nothing is served (no URL, no "
        "download) before it is `clean` (or `skipped`: scanning was off)"
    )


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


class ValidationIssue(BaseModel):
    """One refused field: where, what, and pydantic's name for the kind."""

    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """Every error: `detail` for people (for a refused request, each refused field),
    `code` for programs, to branch on."""

    detail: str | list[ValidationIssue]
    code: Code
