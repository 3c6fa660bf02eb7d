"""Upkeep that makes every interrupted flow converge: the sweep, and usage reconcile.

The sweep finishes what requests left unfinished, found through the sparse sweep index
(never a Scan). An upload past its deadline is confirmed (or rejected, with its reason)
if its bytes arrived, whatever became of the worker's message; one whose bytes never
came, and deletes that stopped halfway, are removed from both stores with their quota
given back. Ready images whose follow-up never reported done are retagged and
released; their variants stay pending, for the worker's message or a redrive. It works
within a time budget, one batch per shard in turn so a backlog in one shard cannot
starve the others, and remembers the shard it stopped at so the next run starts there.
"""

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from app.config import Settings
from app.domain.errors import InvalidImage, InvalidRequest, NotFound, ServiceError, Unavailable
from app.domain.records import UNCONFIRMED, ImageRecord, ScanStatus, Status
from app.images.deletion import finish_delete
from app.pipeline.confirmation import Confirmation, Superseded
from app.pipeline.notifications import BACKFILL as BACKFILL_EVENT
from app.pipeline.notifications import RESCAN as RESCAN_EVENT
from app.pipeline.notifications import announcement
from app.pipeline.screening import Screening, kept_tag
from app.storage import Storage
from app.storage.listing import SweepPosition
from app.storage.resources import SWEEP_SHARDS
from app.storage.table import Usage

log = logging.getLogger(__name__)

RECONCILE_ATTEMPTS = 5
SWEEP, BACKFILL, RESCAN = "sweep", "backfill", "rescan"


@dataclass
class SweepReport:
    removed: int = 0  # abandoned uploads and stalled deletes, gone from both stores
    confirmed: int = 0  # uploads whose bytes came in time but nobody confirmed: now ready
    rejected: int = 0  # such uploads whose bytes failed confirm's checks
    released: int = 0  # ready images retagged and let go of (their variants may wait)
    failed: int = 0  # items that could not be handled this time; the next run retries
    due_seen: int = 0  # due items read from the index
    complete: bool = True  # False: time ran out with due work left
    backlog_shards: list[str] = field(default_factory=list)  # shards with work left
    started_at_shard: str = SWEEP_SHARDS[0]
    seconds: float = 0.0


@dataclass
class BackfillReport:
    queued: int  # originals the worker was asked to look at again (variants, or a scan)
    complete: bool  # False: more are left, for the next run (it starts where this stopped)


@dataclass(frozen=True)
class Reconciliation:
    user: str
    before: Usage
    counted: Usage
    fixed: bool

    @property
    def drift(self) -> bool:
        return self.before.counts() != self.counted.counts()


class Maintenance:
    def __init__(
        self,
        storage: Storage,
        settings: Settings,
        confirmation: Confirmation,
        clock: Callable[[], datetime],
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._confirmation = confirmation
        self.clock = clock
        self._storage = storage
        self._settings = settings
        self._monotonic = monotonic
        self._sleep = sleep
        # Only to tell the operator of malware: the sweep never scans.
        self._screening = Screening(storage, settings, None, clock)

    def _now(self) -> int:
        return int(self.clock().timestamp())

    def sweep(self, seconds: float | None = None) -> SweepReport:
        """Finish due work for at most `seconds` (None: until nothing is due)."""
        began = self._monotonic()
        deadline = math.inf if seconds is None else began + seconds
        table, listing = self._storage.table, self._storage.listing
        start = SWEEP_SHARDS.find(table.bookmark(SWEEP) or SWEEP_SHARDS[0]) % len(SWEEP_SHARDS)
        order = SWEEP_SHARDS[start:] + SWEEP_SHARDS[:start]
        report = SweepReport(started_at_shard=order[0])
        now = self._now()
        # Within one run each shard resumes after what it already read, so an item that
        # keeps failing is tried once per run, not forever.
        resume: dict[str, SweepPosition | None] = {}
        open_shards = list(order)
        stopped_at: str | None = None
        while open_shards and stopped_at is None:
            for shard in list(open_shards):
                if self._monotonic() >= deadline:
                    stopped_at = shard
                    break
                records, after = listing.due(
                    shard, now, self._settings.sweep_batch, resume.get(shard)
                )
                report.due_seen += len(records)
                for record in records:
                    if self._monotonic() >= deadline:
                        stopped_at = shard
                        break
                    self._settle(record, now, report)
                if stopped_at is not None:
                    break
                if after is None:
                    open_shards.remove(shard)
                else:
                    resume[shard] = after
        if stopped_at is not None:
            report.complete = False
            report.backlog_shards = sorted(open_shards)
            table.save_bookmark(SWEEP, stopped_at)
        report.seconds = self._monotonic() - began
        return report

    def _settle(self, record: ImageRecord, now: int, report: SweepReport) -> None:
        try:
            if record.status == Status.INFECTED:
                # Found infected, then stopped before its objects were gone: the record
                # is the check (nothing of an infected image may stay), so all of them go;
                # and the operator is told, if the delivery that found it could not.
                self._screening.tell(record)
                self._storage.objects.delete(record)
                self._storage.table.quarantined(record.id)
                report.released += 1
            elif record.status == Status.READY:
                # Confirmed, but nothing reported its follow-up done: retag (idempotent)
                # before the lifecycle rule could reap it, then release it.
                self._storage.objects.tag_ready(record.id, also=kept_tag(record))
                self._storage.table.release(record.id)
                report.released += 1
            elif record.status in UNCONFIRMED and self._confirm_late(record, report):
                return
            else:
                marked = self._storage.table.mark_deleting(
                    record.id,
                    record.user_id,
                    due_at=now + self._settings.finish_grace_seconds,
                    abandoned_before=now,
                )
                if marked is not None:
                    finish_delete(self._storage, marked, now)
                    report.removed += 1
        except ServiceError as exc:
            report.failed += 1
            log.warning("sweep could not finish %s, left for the next run: %r", record.id, exc)

    def _confirm_late(self, record: ImageRecord, report: SweepReport) -> bool:
        """Whether bytes were uploaded: then confirm's own checks decide (its message may be
        in the dead-letter queue; nobody confirmed), never the deadline. An upload URL
        expires by the deadline, so nothing can arrive after this looked."""
        upload = self._storage.objects.read_prefix(record.id, self._settings.verify_prefix_bytes)
        if upload is None:
            return False
        try:
            self._confirmation.confirm(record, upload)
        except InvalidImage:
            if record.status == Status.REJECTED:
                return False  # refused before and past its grace: the upload is given up
            report.rejected += 1
        except (NotFound, Superseded):
            pass  # confirmed with other bytes, or deleted, meanwhile
        else:
            report.confirmed += 1
        return True

    def backfill(self, most: int) -> BackfillReport:
        """Ask the worker, through its own queue, to make whatever variants up to `most`
        originals miss (new or changed definitions). Bounded and resumable: the next run
        starts after the last original this one queued. The worker takes every message
        as it takes S3's: one whose image lacks nothing is a redelivery (one GetItem)."""
        return self._announce(BACKFILL, most, BACKFILL_EVENT)

    def rescan(self, most: int) -> BackfillReport:
        """Ask the worker to scan up to `most` served originals again (after a definitions
        update): what it finds now is handled as at upload (infected: removed, quota
        given back, the operator told). Bounded and resumable like the backfill."""
        if self._settings.scan != "clamav":
            raise InvalidRequest(
                f"Rescanning needs IMAGES_SCAN=clamav (it is {self._settings.scan}): "
                "the worker asks clamd again; GuardDuty scans each object once"
            )
        return self._announce(RESCAN, most, RESCAN_EVENT)

    def _announce(self, task: str, most: int, event_name: str) -> BackfillReport:
        objects, table = self._storage.objects, self._storage.table
        queued, after = 0, table.bookmark(task) or ""
        while queued < most:
            originals, after_these = objects.originals(after, min(1000, most - queued))
            queued += self._storage.queue.send(
                [
                    announcement(self._settings.bucket, image_id, etag, event_name)
                    for image_id, etag in originals
                ]
            )
            if after_these is None:
                table.save_bookmark(task, None)
                return BackfillReport(queued, complete=True)
            after = after_these
        table.save_bookmark(task, after)
        return BackfillReport(queued, complete=False)

    def reconcile(self, user_id: str) -> Reconciliation:
        """Recount a user's usage from their records and correct the counters if they
        drifted. The listing index is eventually consistent, so this counts only once the
        counters have been still for a while, and writes only if they are still unchanged."""
        table = self._storage.table
        for _ in range(RECONCILE_ATTEMPTS):
            seen = table.usage(user_id)
            wait = seen.changed_at + self._settings.reconcile_settle_seconds - self._now()
            if wait > 0:
                self._sleep(wait)
                continue
            counted = self._count(user_id)
            if counted.counts() == seen.counts():
                return Reconciliation(user_id, seen, counted, fixed=False)
            if table.correct_usage(user_id, seen, counted, self._now()):
                log.warning("usage of %s drifted: %s, now %s", user_id, seen, counted)
                return Reconciliation(user_id, seen, counted, fixed=True)
        raise Unavailable(f"The usage of {user_id} kept changing; retry")

    def _count(self, user_id: str) -> Usage:
        images = size = pending = pending_bytes = 0
        for record in self._storage.listing.owned_by(user_id):
            if record.scan.status == ScanStatus.INFECTED:
                continue  # given back when the malware was found, deleting or not
            # A record being deleted is still counted until its delete gives it back.
            images += 1
            size += record.size
            if not record.was_confirmed:
                pending += 1
                pending_bytes += record.size
        return Usage(images, size, pending, pending_bytes)
