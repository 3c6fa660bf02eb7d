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

from pydantic import SecretStr

from app.config import Settings
from app.domain.owners import owner_prefix
from app.images.cursors import CursorCodec
from app.images.maintenance import Maintenance
from app.images.service import ImageService
from app.pipeline.confirmation import Confirmation
from app.storage import Storage
from app.storage.clients import AwsClients

if TYPE_CHECKING:
    from app.pipeline.scanning import ClamdScanner
    from app.pipeline.worker import Worker

Clock = Callable[[], datetime]
# How long a clamd started here may take to load its definitions: seconds for a test
# database, up to a minute for the official ones on a small machine.
OWN_CLAMD_START_SECONDS = 120


def utcnow() -> datetime:
    return datetime.now(UTC)


def _key(settings: Settings, own: SecretStr | None, name: str, purpose: bytes) -> bytes:
    """A key of its own, or one derived from the JWT secret for this purpose alone
    (derived, not reused: a MAC made with it must never double as a token signature)."""
    if own is not None:
        return own.get_secret_value().encode()
    if settings.jwt_secret is None:
        raise RuntimeError(f"set {name} (or IMAGES_JWT_SECRET)")
    return hmac.new(
        settings.jwt_secret.get_secret_value().encode(), purpose, hashlib.sha256
    ).digest()


def cursor_secret(settings: Settings) -> bytes:
    """The key list cursors are signed with."""
    return _key(settings, settings.cursor_secret, "IMAGES_CURSOR_SECRET", b"images/list-cursor")


def owner_secret(settings: Settings) -> bytes:
    """The key users' prefixes are derived with."""
    return _key(settings, settings.owner_secret, "IMAGES_OWNER_SECRET", b"images/owner-prefix")


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
        secret = owner_secret(self.settings)
        return ImageService(
            self.storage,
            self.settings,
            self.confirmation,
            cursors,
            clock=self.clock,
            owners=lambda user_id: owner_prefix(secret, user_id),
        )

    @cached_property
    def worker(self) -> "Worker":
        from app.pipeline.worker import Worker  # noqa: PLC0415 - Pillow, for the worker only

        return Worker(
            self.confirmation, self.storage, self.settings, self.scanner, clock=self.clock
        )

    @cached_property
    def scanner(self) -> "ClamdScanner | None":
        """clamd, when scanning with ClamAV: IMAGES_CLAMD's, or one started here on
        IMAGES_CLAMAV_DATABASE (ClamdNotStarted says why it could not be). GuardDuty
        needs none: it scans in S3."""
        from app.pipeline import clamd_daemon  # noqa: PLC0415 - for the worker only
        from app.pipeline.scanning import ClamdScanner  # noqa: PLC0415

        settings = self.settings
        if settings.scan != "clamav":
            return None
        if settings.clamd is not None:
            return ClamdScanner(settings.clamd, settings.scan_timeout_seconds)
        own = clamd_daemon.start(
            settings.clamav_database, settings.max_upload_bytes, OWN_CLAMD_START_SECONDS
        )
        return ClamdScanner(own.address, settings.scan_timeout_seconds, revive=own.revive)


def build(
    settings: Settings, clients: AwsClients | None = None, clock: Clock | None = None
) -> Services:
    """Everything, from settings. AWS clients are made on their first use."""
    return Services(settings, clients or AwsClients(settings), clock or utcnow)
