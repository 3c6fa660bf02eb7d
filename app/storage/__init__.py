"""The only code that talks to AWS: one module per store, bundled for the service."""

from dataclasses import dataclass

from app.config import Settings
from app.storage.clients import AwsClients
from app.storage.listing import ImageListing
from app.storage.objects import ImageObjects
from app.storage.queue import UploadQueue
from app.storage.table import ImageTable


@dataclass(frozen=True, slots=True)
class Storage:
    table: ImageTable
    objects: ImageObjects
    listing: ImageListing
    queue: UploadQueue

    @classmethod
    def connect(cls, clients: AwsClients, settings: Settings) -> "Storage":
        """Build the stores over shared clients (which are themselves built lazily)."""
        return cls(
            ImageTable(clients, settings),
            ImageObjects(clients, settings),
            ImageListing(clients, settings),
            UploadQueue(clients, settings),
        )
