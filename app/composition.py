"""The composition root: the one place the service's objects are built from settings and
wired together, for every entry point (uvicorn's factory, both Lambda handlers, the
worker and every `python -m app` command). One clock, one set of AWS clients (built on
first use), one Confirmation shared by the API, the worker and the sweep."""

import hashlib
import hmac
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING

from app.config import Settings
from app.images.cursors import CursorCodec
from app.images.maintenance import Maintenance
from app.images.service import ImageService
from app.pipeline.confirmation import Confirmation
from app.storage import Storage
from app.storage.clients import AwsClients

if TYPE_CHECKING:
    from app.pipeline.worker import Worker

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


def cursor_secret(settings: Settings) -> bytes:
    """The key list cursors are signed with: its own, or one derived from the JWT secret."""
    if settings.cursor_secret is not None:
        return settings.cursor_secret.get_secret_value().encode()
    if settings.jwt_secret is None:
        raise RuntimeError("set IMAGES_CURSOR_SECRET (or IMAGES_JWT_SECRET) to sign cursors")
    # Derived, not reused: a cursor MAC must never double as a valid token signature.
    return hmac.new(
        settings.jwt_secret.get_secret_value().encode(), b"images/list-cursor", hashlib.sha256
    ).digest()


class Services:
    """The service graph. What only some entry points use is built on first use: the
    image API (it needs the cursor key, which commands have no use for) and the worker
    (it imports Pillow, which the API function must never pay for)."""

    def __init__(self, settings: Settings, clients: AwsClients, clock: Clock) -> None:
        self.settings = settings
        self.clients = clients
        self.clock = clock
        self.storage = Storage.connect(clients, settings)
        self.confirmation = Confirmation(self.storage, settings, clock)
        self.maintenance = Maintenance(self.storage, settings, self.confirmation, clock)

    @cached_property
    def images(self) -> ImageService:
        cursors = CursorCodec(cursor_secret(self.settings))
        return ImageService(self.storage, self.settings, self.confirmation, cursors, self.clock)

    @cached_property
    def worker(self) -> "Worker":
        from app.pipeline.worker import Worker  # noqa: PLC0415 - Pillow, for the worker only

        return Worker(self.confirmation, self.storage, self.settings)


def build(
    settings: Settings, clients: AwsClients | None = None, clock: Clock | None = None
) -> Services:
    """Everything, from settings. AWS clients are made on their first use."""
    return Services(settings, clients or AwsClients(settings), clock or utcnow)
