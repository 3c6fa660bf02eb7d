"""The only code that talks to AWS: one module per store, bundled for the service."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from app.config import Settings
from app.storage.cdn import CdnUrls, cdn_urls
from app.storage.clients import AwsClients
from app.storage.listing import ImageListing
from app.storage.objects import ImageObjects
from app.storage.queue import UploadQueue
from app.storage.table import ImageTable


class ReadUrls(Protocol):
    """Short-lived URLs to read objects by: S3-presigned (ImageObjects) or CloudFront-
    signed (CdnUrls). Variant URLs stay the same all window long (browsers cache them)."""

    def variant_urls(self, keys: Sequence[str], expires_in: int) -> list[str]: ...

    def original_url(
        self, image_id: str, content_type: str, content_disposition: str, expires_in: int
    ) -> str: ...


@dataclass(frozen=True, slots=True)
class Storage:
    table: ImageTable
    objects: ImageObjects
    listing: ImageListing
    queue: UploadQueue
    reads: ReadUrls
    cdn: CdnUrls | None

    @classmethod
    def connect(cls, clients: AwsClients, settings: Settings) -> "Storage":
        """Build the stores over shared clients (which are themselves built lazily)."""
        objects = ImageObjects(clients, settings)
        cdn = cdn_urls(settings, clients)
        return cls(
            ImageTable(clients, settings),
            objects,
            ImageListing(clients, settings),
            UploadQueue(clients, settings),
            reads=cdn or objects,
            cdn=cdn,
        )
