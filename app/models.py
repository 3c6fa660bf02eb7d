"""Request and response models: the public HTTP contract, and the stored record."""

from dataclasses import dataclass, field
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
    model_validator,
)

ContentType = Literal["image/jpeg", "image/png", "image/gif", "image/webp"]
CONTENT_TYPES: tuple[ContentType, ...] = ("image/jpeg", "image/png", "image/gif", "image/webp")
Status = Literal["pending", "ready"]
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


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


Text = Annotated[str, AfterValidator(_encodable)]
Tag = Annotated[
    str,
    BeforeValidator(_lower),
    StringConstraints(min_length=1, max_length=50, pattern=r"^[a-z0-9_-]+$"),
]
ImageId = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
]


def format_timestamp(moment: datetime) -> str:
    """ISO-8601 UTC with microseconds: sorts as text, which is what the GSI range key needs."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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


class Image(BaseModel):
    """An image as its owner sees it; storage internals (bucket, key, owner) never appear."""

    id: str
    filename: str
    content_type: ContentType
    size: int
    status: Status
    title: str | None
    description: str | None
    tags: list[str]
    created_at: datetime
    uploaded_at: datetime | None
    width: int | None
    height: int | None


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


class ListQuery(BaseModel):
    """Filters for listing; every one is optional and all of them combine."""

    model_config = ConfigDict(extra="forbid")

    limit: Annotated[int, Field(ge=1, le=100)] = 20
    cursor: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    content_type: ContentType | None = None
    tag: Tag | None = None
    created_after: datetime | None = Field(default=None, description="Inclusive lower bound")
    created_before: datetime | None = Field(default=None, description="Inclusive upper bound")
    status: Status = "ready"

    @model_validator(mode="after")
    def _ordered_range(self) -> "ListQuery":
        if (
            self.created_after
            and self.created_before
            and format_timestamp(self.created_after) > format_timestamp(self.created_before)
        ):
            raise ValueError("created_after must not be later than created_before")
        return self


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """One row of the images table, as the storage layer hands it to the service."""

    id: str
    user_id: str
    filename: str
    content_type: ContentType
    size: int
    status: str  # "pending", "ready" or "deleting" (internal, never shown)
    created_at: str
    title: str | None = None
    description: str | None = None
    tags: list[str] = field(default_factory=list)
    uploaded_at: str | None = None
    width: int | None = None
    height: int | None = None

    def public(self) -> Image:
        return Image(
            id=self.id,
            filename=self.filename,
            content_type=self.content_type,
            size=self.size,
            status="ready" if self.status == "ready" else "pending",
            title=self.title,
            description=self.description,
            tags=self.tags,
            created_at=datetime.fromisoformat(self.created_at),
            uploaded_at=datetime.fromisoformat(self.uploaded_at) if self.uploaded_at else None,
            width=self.width,
            height=self.height,
        )
