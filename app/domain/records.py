"""An image as the service keeps it: its record, its states, and its variants' states.
What a client sees of it is app/images/models.py's `Image`, built from the stored item
in one place (app/storage/items.py, JsonShape)."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

from app.domain.variants import VariantSpec

# What a client sees and may filter by.
PublicStatus = Literal["pending", "ready", "rejected"]


class Status(StrEnum):
    """A record's state. `deleting` is internal: such a record is never shown."""

    PENDING = "pending"
    READY = "ready"
    # The bytes were checked and refused (`reason` says why) and removed; the upload is
    # still open: valid bytes PUT while the URL lives are confirmed like any others.
    REJECTED = "rejected"
    # A scan found malware: the bytes and variants are removed, the quota given back;
    # the record stays, for its owner to read why, until they delete it.
    INFECTED = "infected"
    DELETING = "deleting"


# Not confirmed yet: what counts against the pending quota and what confirm may flip.
UNCONFIRMED = (Status.PENDING, Status.REJECTED)
# How each stored status reads to its owner (a record being deleted is never shown).
PUBLIC_STATUS: dict[str, PublicStatus] = {
    Status.PENDING: "pending",
    Status.READY: "ready",
    Status.REJECTED: "rejected",
    Status.INFECTED: "rejected",
    Status.DELETING: "pending",
}


class ScanStatus(StrEnum):
    """Whether an image's bytes were found free of malware (IMAGES_SCAN)."""

    PENDING = "pending"  # not scanned yet (or the scanner was down): nothing is served
    CLEAN = "clean"
    INFECTED = "infected"  # `signature` names what was found
    FAILED = "failed"  # the scanner could not judge these bytes (`reason`): never served
    SKIPPED = "skipped"  # scanning was off when it was confirmed


# What may be served: nothing before its scan says so.
SERVABLE_SCANS = (ScanStatus.CLEAN, ScanStatus.SKIPPED)


@dataclass(frozen=True, slots=True)
class ScanState:
    """An image's scan: its verdict, what found it (`engine`: the scanner and its
    definitions) and when, and how many times the scanner failed on it; for malware,
    whether the operator has been told."""

    status: ScanStatus = ScanStatus.SKIPPED
    signature: str | None = None
    reason: str | None = None
    engine: str | None = None
    scanned_at: str | None = None
    attempts: int = 0
    told: bool = False


class VariantStatus(StrEnum):
    PENDING = "pending"  # not made yet: work for the worker, whenever its message comes
    READY = "ready"
    FAILED = "failed"  # the image does not render (`reason` says why): never retried


@dataclass(slots=True)
class VariantState:
    """A variant as made (or not): `spec` is the fingerprint of the definition it was
    made to, `format` its encoding; both name its object."""

    status: VariantStatus
    width: int | None = None
    height: int | None = None
    bytes: int | None = None
    reason: str | None = None
    spec: str | None = None
    format: str | None = None


NOT_MADE = VariantState(VariantStatus.PENDING)


def format_timestamp(moment: datetime) -> str:
    """ISO-8601 UTC with microseconds: sorts as text, which is what the GSI range key needs
    (isoformat pads the year to four digits; strftime's %Y does not on glibc)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    utc = moment.astimezone(UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="microseconds") + "Z"


@dataclass(slots=True)
class ImageRecord:
    """One row of the images table, as the storage layer hands it to the services."""

    id: str
    user_id: str
    filename: str
    content_type: str
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
    # Every variant ever made for it, by name: those configured now and any since removed
    # from the configuration (their objects go with the image).
    variants: dict[str, VariantState] = field(default_factory=dict)
    placeholder: str | None = None
    # Why the last bytes checked were refused (status `rejected` or `infected`).
    reason: str | None = None
    scan: ScanState = field(default_factory=ScanState)

    @property
    def servable(self) -> bool:
        """Ready, and scanned clean (or confirmed with scanning off)."""
        return self.status == Status.READY and self.scan.status in SERVABLE_SCANS

    @property
    def was_confirmed(self) -> bool:
        """Ready, or being deleted after it was: what its quota was counted as."""
        return self.uploaded_at is not None

    def variant(self, name: str) -> VariantState:
        return self.variants.get(name, NOT_MADE)

    def to_make(self, configured: Mapping[str, VariantSpec]) -> list[str]:
        """The configured variants the worker still has to make: not made, or made to a
        definition since changed. One that failed for good stays failed."""
        return [
            name
            for name, spec in configured.items()
            if (state := self.variant(name)).status == VariantStatus.PENDING
            or (state.status == VariantStatus.READY and state.spec != spec.fingerprint)
        ]
