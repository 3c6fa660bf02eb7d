"""The worker, off the request path: S3 tells an SQS queue that an original arrived; for
each, it confirms the upload if the client has not (exactly confirm's checks, through
the same conditional write), has its bytes scanned for malware when scanning is on
(app/pipeline/scanning.py), and makes the image's variants from bytes found clean.

On AWS, Lambda calls `app.pipeline.lambda_handler.handler` with batches from the queue
and retries only what it reports failed (`batchItemFailures`); a message that keeps
failing goes to the dead-letter queue. Elsewhere `python -m app worker`, and a thread
of `make run`, long-poll the queue and hand the same function the same event (`poll`).

Every step is safe to repeat: SQS delivers at least once.
"""

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from app.config import Settings
from app.domain.errors import InvalidImage, NotFound, ServiceError
from app.domain.records import (
    UNCONFIRMED,
    ImageRecord,
    ScanStatus,
    Status,
    VariantState,
    VariantStatus,
)
from app.pipeline.confirmation import Confirmation, Superseded
from app.pipeline.notifications import Uploaded, uploads_in
from app.pipeline.render import Undecodable, render_bounded
from app.pipeline.scanning import Scanner, ScannerUnavailable
from app.pipeline.screening import Screening, kept_tag
from app.storage import Storage
from app.storage.objects import UploadedObject
from app.storage.queue import UploadQueue
from app.storage.table import Recorded

log = logging.getLogger(__name__)


# A message the scanner could not be asked about comes back after this many seconds,
# doubling with each receive (SQS's own redelivery would wait the visibility timeout).
_BACKOFF_SECONDS, _MOST_BACKOFF_SECONDS = 15, 900


class Worker:
    def __init__(
        self,
        confirmation: Confirmation,
        storage: Storage,
        settings: Settings,
        scanner: Scanner | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._confirmation = confirmation
        self._table = storage.table
        self._objects = storage.objects
        self._queue = storage.queue
        self._settings = settings
        self._screening = Screening(storage, settings, scanner, clock)

    def handle(self, event: dict[str, Any]) -> dict[str, Any]:
        """An SQS batch: every message on its own, failures reported one by one so a bad
        image never makes its neighbours run again."""
        failures = []
        for message in event.get("Records", []):
            try:
                for upload in uploads_in(message["body"], self._settings.bucket):
                    outcome = self.process(upload)
                    log.info("worker: %s %s", upload.image_id, outcome)
            except ScannerUnavailable as exc:
                log.warning(
                    "worker: message %s waits for the scanner: %s", message["messageId"], exc
                )
                failures.append({"itemIdentifier": message["messageId"]})
                self._back_off(message)
            except Exception:
                log.exception("worker: message %s failed, to be retried", message["messageId"])
                failures.append({"itemIdentifier": message["messageId"]})
        return {"batchItemFailures": failures}

    def _back_off(self, message: dict[str, Any]) -> None:
        """Have the message come back sooner than the visibility timeout, later with each
        attempt: a scanner restarting (loading its definitions) is back in seconds, one
        that is down for long is not asked in a tight loop."""
        receipt = message.get("receiptHandle")
        if not receipt:
            return
        received = int(message.get("attributes", {}).get("ApproximateReceiveCount", 1))
        delay = min(_MOST_BACKOFF_SECONDS, _BACKOFF_SECONDS * 2 ** max(0, received - 1))
        try:
            self._queue.postpone(receipt, delay)
        except ServiceError as exc:  # then it comes back after the visibility timeout
            log.warning("worker: could not postpone message %s: %r", message["messageId"], exc)

    def process(self, upload: Uploaded) -> str:
        """Confirm (if needed), scan (if on) and make the variants of one image; what
        happened."""
        record = self._table.get(upload.image_id)
        if record is None or record.status in (Status.DELETING, Status.INFECTED):
            return self._remove_unwanted(upload, record)
        if self._done(record, upload):
            return "already done"  # a redelivered message
        # A confirmed image was checked against the limit of its day: one lowered since
        # must not make its bytes unreadable (a rescan would fail a clean image for good).
        limit = self._settings.max_upload_bytes
        if record.status not in UNCONFIRMED:
            limit = max(limit, record.size)
        stored = self._objects.read(record.id, limit, self._settings.verify_prefix_bytes)
        if stored is None:
            return "no bytes"  # deleted meanwhile, or a refused upload already removed
        confirmed = self._confirmed(record, stored)
        if isinstance(confirmed, str):
            return confirmed
        screened = self._screening.screened(confirmed, stored, upload)
        if isinstance(screened, str):
            return screened  # infected and removed, failed, or waiting for a verdict
        return self._make_variants(screened, stored)

    def _confirmed(self, record: ImageRecord, stored: UploadedObject) -> ImageRecord | str:
        """The record, confirmed with these bytes if nobody has; or why not."""
        if record.status not in UNCONFIRMED:
            return record
        try:
            return self._confirmation.confirm(record, stored)
        except InvalidImage as exc:
            return f"refused: {exc.detail}"  # the reason is on the record
        except (NotFound, Superseded):
            # Deleted, or confirmed with other bytes, meanwhile: those bytes' own message
            # makes their variants.
            return "superseded"

    def _done(self, record: ImageRecord, upload: Uploaded) -> bool:
        """Nothing left for this message: the image is served (or its scan failed for
        good) and every variant is made. A rescan or a verdict is never a redelivery."""
        if record.status != Status.READY or upload.rescan or upload.verdict is not None:
            return False
        if record.scan.status == ScanStatus.FAILED:
            return True
        return record.servable and not record.to_make(self._settings.variants)

    def _remove_unwanted(self, upload: Uploaded, record: ImageRecord | None) -> str:
        """No record will ever point at these bytes (a PUT that raced a delete): remove
        them, and only them (a conditional delete on the ETag S3 announced). With no
        record at all, variants too: one written as a delete ran would stay otherwise."""
        if record is not None and record.status == Status.INFECTED:
            self._screening.tell(record, upload.etag)
        self._objects.delete_original(upload.image_id, upload.etag)
        if record is not None:
            return "being deleted"
        self._objects.delete_variants(None, upload.image_id)
        return "orphan removed"

    def _make_variants(self, record: ImageRecord, stored: UploadedObject) -> str:
        names = record.to_make(self._settings.variants)
        if not names and record.due_at is None:
            return "nothing to make"  # a clean rescan of an image already made
        made, placeholder = self._variants(record, stored, names)
        # Before the image leaves the sweep's index: nothing would retag it afterwards.
        self._objects.tag_ready(record.id, also=kept_tag(record))
        recorded = self._table.record_variants(
            record.id, {**record.variants, **made}, placeholder or record.placeholder
        )
        if recorded == Recorded.GONE:
            self._objects.delete(record)  # deleted meanwhile: remove what we wrote
            return "deleted meanwhile"
        if recorded == Recorded.MADE_MEANWHILE:
            return "made meanwhile"
        # Objects made to a definition changed since: nothing points at them any more.
        self._objects.delete_made(
            record.id,
            {
                name: state
                for name, state in record.variants.items()
                if name in made and state.spec != made[name].spec
            },
        )
        return "done"

    def _variants(
        self, record: ImageRecord, stored: UploadedObject, names: list[str]
    ) -> tuple[dict[str, VariantState], str | None]:
        """Make `names` (writing their objects); their states and the placeholder."""
        configured = {name: self._settings.variants[name] for name in names}
        if not stored.whole:
            # Verified against the same limits, so only a misconfigured worker gets here:
            # the image stays as confirmed, only its variants cannot be made.
            failed = f"{stored.total_size} bytes is over the worker's limit"
            return {n: VariantState(VariantStatus.FAILED, reason=failed) for n in names}, None
        try:
            rendered = render_bounded(
                stored.data,
                record.content_type,
                configured,
                max_pixels=self._settings.max_pixels,
                cpu_seconds=self._settings.render_cpu_seconds,
                memory_bytes=self._settings.render_memory_bytes,
            )
        except Undecodable as exc:
            return {n: VariantState(VariantStatus.FAILED, reason=str(exc)) for n in names}, None
        made = {}
        for variant in rendered.variants:
            spec = configured[variant.name]
            self._objects.put_variant(record.id, variant.name, spec, variant.data)
            made[variant.name] = VariantState(
                VariantStatus.READY,
                variant.width,
                variant.height,
                len(variant.data),
                spec=spec.fingerprint,
                format=spec.format,
            )
        return made, rendered.placeholder


def poll(worker: Worker, queue: UploadQueue, settings: Settings, stop: threading.Event) -> None:
    """Long-poll the queue and hand each batch to `worker.handle`, as Lambda's event
    source mapping does: what it reports done is deleted, the rest comes back after the
    visibility timeout (and, past the redrive limit, goes to the dead-letter queue)."""
    while not stop.is_set():
        try:
            messages = queue.receive(settings.worker_poll_seconds)
            if not messages:
                continue
            result = worker.handle(
                {
                    "Records": [
                        {
                            "messageId": m.id,
                            "receiptHandle": m.receipt,
                            "body": m.body,
                            "attributes": {"ApproximateReceiveCount": str(m.received)},
                            "eventSource": "aws:sqs",
                        }
                        for m in messages
                    ]
                }
            )
            failed = {failure["itemIdentifier"] for failure in result["batchItemFailures"]}
            queue.done([m for m in messages if m.id not in failed])
        except ServiceError as exc:  # AWS or the network: wait, retry
            log.warning("worker: polling failed, retrying: %r", exc)
            stop.wait(1)
        except Exception:  # anything unforeseen: never stop polling
            log.exception("worker: polling failed, retrying")
            stop.wait(1)


def start_in_background(worker: Worker, queue: UploadQueue, settings: Settings) -> threading.Event:
    """`make run`: the worker in a daemon thread of this process. Set the event to stop."""
    stop = threading.Event()
    threading.Thread(target=poll, args=(worker, queue, settings, stop), daemon=True).start()
    return stop
