"""Malware scanning: the verdict on an upload's bytes, before anything is served. With
IMAGES_SCAN=clamav the worker streams each confirmed upload to clamd; with guardduty,
GuardDuty scans in S3 and its verdicts come through the same queue
(app/pipeline/notifications.py); with off, images are served once verified (`skipped`).

A scanner that is down is never taken for a clean verdict: the message is retried with
backoff and the image waits, unserved.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from app.domain.errors import Unavailable
from app.pipeline import clamd
from app.pipeline.clamd_daemon import ClamdNotStarted


class ScannerUnavailable(Unavailable):
    """The scanner could not be asked: try again later (never treat as clean)."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a scanner said of some bytes: malware (`signature`), that it could not judge
    them (`error`), or clean (neither). `engine`: the scanner and its definitions."""

    engine: str
    signature: str | None = None
    error: str | None = None


class Scanner(Protocol):
    def examine(self, data: bytes) -> Verdict: ...


class ClamdScanner:
    """clamd, by `unix:///path/to/socket` or `tcp://host:3310` (IMAGES_CLAMD)."""

    def __init__(
        self, address: str, timeout: float, revive: Callable[[], None] | None = None
    ) -> None:
        self._address = address
        self._timeout = timeout
        self._revive = revive
        self._engine: str | None = None

    def _unavailable(self, exc: Exception) -> ScannerUnavailable:
        self._engine = None  # it may come back with other definitions
        if self._revive is not None:
            try:
                self._revive()
            except ClamdNotStarted as failed:  # the scan is retried either way
                exc = failed
        return ScannerUnavailable(f"The malware scanner is unreachable ({exc})")

    def engine(self) -> str:
        """ClamAV's version and its definitions' (asked once per process)."""
        if self._engine is None:
            try:
                self._engine = clamd.version(self._address, self._timeout)
            except clamd.ClamdUnavailable as exc:
                raise self._unavailable(exc) from exc
        return self._engine

    def examine(self, data: bytes) -> Verdict:
        engine = self.engine()
        try:
            reply = clamd.instream(self._address, data, self._timeout)
        except clamd.ClamdUnavailable as exc:
            raise self._unavailable(exc) from exc
        return Verdict(engine, reply.signature, reply.error)
