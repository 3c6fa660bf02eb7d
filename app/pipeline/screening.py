"""Screening an upload for malware before anything of it is served: the scanner's verdict
(clamd, app/pipeline/scanning.py) or GuardDuty's, recorded on the image; bytes found
infected removed with their variants, the quota given back, the operator told
(app/pipeline/audit.py)."""

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from app.config import Settings
from app.domain.records import (
    SERVABLE_SCANS,
    ImageRecord,
    ScanState,
    ScanStatus,
    format_timestamp,
)
from app.pipeline.audit import audit_infected
from app.pipeline.notifications import Uploaded
from app.pipeline.scanning import Scanner, ScannerUnavailable
from app.storage import Storage
from app.storage.objects import UploadedObject

GUARDDUTY_CLEAN = "NO_THREATS_FOUND"
GUARDDUTY_INFECTED = "THREATS_FOUND"
# GuardDuty's own tag, kept when the original is retagged: bucket policies that gate
# reads on it (as AWS suggests) must keep seeing it.
GUARDDUTY_TAG = "GuardDutyMalwareScanStatus"


def kept_tag(record: ImageRecord) -> tuple[str, str] | None:
    """The tag GuardDuty wrote on a clean original, for whoever retags it ready."""
    if record.scan.engine == GUARDDUTY_ENGINE and record.scan.status == ScanStatus.CLEAN:
        return GUARDDUTY_TAG, GUARDDUTY_CLEAN
    return None


GUARDDUTY_ENGINE = "GuardDuty Malware Protection for S3"


class Screening:
    def __init__(
        self,
        storage: Storage,
        settings: Settings,
        scanner: Scanner | None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._table = storage.table
        self._objects = storage.objects
        self._settings = settings
        self._scanner = scanner
        self._clock = clock or (lambda: datetime.now(UTC))

    def screened(
        self, record: ImageRecord, stored: UploadedObject, upload: Uploaded
    ) -> ImageRecord | str:
        """The record once its bytes' verdict is known and recorded (or none is wanted),
        or what happened instead: infected and removed, failed, waiting for a verdict."""
        if upload.verdict is not None:
            if self._settings.scan != "guardduty":
                # Only the mode's own engine judges: a verdict that reaches the queue
                # otherwise (a rule left from another mode) must not mark bytes clean.
                return f"GuardDuty's verdict ignored: scanning is {self._settings.scan}"
            return self._apply_guardduty(record, stored, upload)
        if record.scan.status == ScanStatus.FAILED:
            return f"scan failed: {record.scan.reason}"
        wanted = record.scan.status == ScanStatus.PENDING or (
            upload.rescan and record.scan.status in SERVABLE_SCANS
        )
        if not wanted:
            return record
        waiting = self._why_not_now(stored)
        if waiting is not None:
            return waiting if stored.whole else self._scan_failed(record, waiting, final=True)
        return self._scan(record, stored)

    def _why_not_now(self, stored: UploadedObject) -> str | None:
        if not stored.whole:
            return "over the worker's size limit"
        if self._settings.scan == "guardduty":
            return "waiting for GuardDuty's verdict"  # its result event comes to this queue
        if self._scanner is None:
            # Scanning is off now, but the image was confirmed while it was on: it stays
            # unserved (never assumed clean) until a scanner looks at it.
            return "waiting for a scanner"
        return None

    def _scan(self, record: ImageRecord, stored: UploadedObject) -> ImageRecord | str:
        assert self._scanner is not None  # noqa: S101 - _why_not_now checked
        verdict = self._scanner.examine(stored.data)
        if verdict.signature is not None:
            return self._quarantine(record, stored, verdict.signature, verdict.engine)
        if verdict.error is not None:
            attempts = record.scan.attempts + 1
            final = attempts >= self._settings.scan_attempts
            outcome = self._scan_failed(record, verdict.error, final, attempts, verdict.engine)
            if not final:
                raise ScannerUnavailable(f"The scanner could not judge {record.id}: retry")
            return outcome
        return self._clean(record, verdict.engine)

    def _clean(self, record: ImageRecord, engine: str) -> ImageRecord | str:
        state = ScanState(ScanStatus.CLEAN, engine=engine, scanned_at=self._now_text())
        if not self._table.mark_scanned(record, state):
            return "deleted meanwhile"
        return replace(record, scan=state)

    def _scan_failed(
        self,
        record: ImageRecord,
        reason: str,
        final: bool,
        attempts: int = 1,
        engine: str | None = None,
    ) -> str:
        """Record why the scanner could not judge: for good (`failed`, never served), or
        as an attempt of a scan still `pending`."""
        state = ScanState(
            ScanStatus.FAILED if final else ScanStatus.PENDING,
            reason=reason,
            engine=engine,
            scanned_at=self._now_text(),
            attempts=attempts,
        )
        self._table.mark_scanned(record, state)
        return f"scan failed: {reason}" if final else f"scan attempt {attempts} failed: {reason}"

    def _quarantine(
        self, record: ImageRecord, stored: UploadedObject, signature: str, engine: str
    ) -> str:
        """Malware: the record says so and gives its quota back first (the sweep finishes
        the rest should this stop), then the original (the bytes scanned: If-Match) and
        every variant go. Deleted, not moved aside: nothing here needs the bytes again,
        and a copy kept is a copy someone could serve; the audit line keeps what an
        investigation needs (user, image, signature, size, ETag)."""
        now = self._clock()
        state = ScanState(
            ScanStatus.INFECTED, signature=signature, engine=engine, scanned_at=self._now_text()
        )
        moment = int(now.timestamp())
        # In the sweep's index until no upload URL signed before this can still PUT bytes
        # back under the key (replays sign none after): the sweep then removes every
        # object of the image, whatever became of this worker or of the PUT's message.
        due = moment + self._settings.upload_url_ttl_seconds + self._settings.finish_grace_seconds
        if not self._table.mark_infected(record, state, moment, due_at=due):
            return "deleted meanwhile"
        # Told once, by the delivery that marked it: duplicate deliveries (routine with
        # S3 and SQS) would count one upload twice toward the alarm. Should it stop before
        # it says it told (its process dies, the answer is lost), whoever next finds the
        # record infected tells (`tell`): at least once, never lost.
        audit_infected(record, signature, engine, stored.etag)
        self._table.mark_told(record.id)
        self._objects.delete_variants(record, record.id)
        self._objects.delete_original(record.id, stored.etag)
        return f"infected: {signature}"

    def tell(self, record: ImageRecord, etag: str = "") -> None:
        """Tell the operator of an infected image, unless the delivery that marked it did."""
        if record.scan.told:
            return
        scan = record.scan
        audit_infected(record, scan.signature or "malware", scan.engine or "", etag)
        self._table.mark_told(record.id)

    def _apply_guardduty(
        self, record: ImageRecord, stored: UploadedObject, upload: Uploaded
    ) -> ImageRecord | str:
        """GuardDuty's verdict, on the bytes it names (an older verdict on bytes since
        replaced says nothing about these)."""
        verdict = upload.verdict
        assert verdict is not None  # noqa: S101 - the caller checked
        if stored.etag != upload.etag:
            return "verdict on other bytes"
        if record.scan.status not in (ScanStatus.PENDING, *SERVABLE_SCANS):
            return f"already {record.scan.status}"
        engine = GUARDDUTY_ENGINE
        if verdict.result == GUARDDUTY_INFECTED:
            return self._quarantine(record, stored, ", ".join(verdict.threats) or "malware", engine)
        # GuardDuty tags the object too, rewriting its whole tag set from what it read:
        # should that have been before confirm tagged it ready, it would be pending again
        # and the lifecycle rule would reap it. Its result comes after its tagging.
        self._objects.tag_ready(record.id, also=(GUARDDUTY_TAG, verdict.result))
        if verdict.result != GUARDDUTY_CLEAN:
            return self._scan_failed(record, f"GuardDuty: {verdict.result}", True, 1, engine)
        return self._clean(record, engine)

    def _now_text(self) -> str:
        return format_timestamp(self._clock())
