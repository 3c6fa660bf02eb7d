"""The worker, off the request path: S3 tells an SQS queue that bytes arrived under
images/; for each, it confirms the upload if the client has not (exactly confirm's
checks, through the same conditional write) and makes the image's variants.

On AWS, Lambda calls `app.worker.handler` with batches from the queue and retries only
what it reports failed (`batchItemFailures`); a message that keeps failing goes to the
dead-letter queue. Elsewhere `python -m app worker`, and a thread of `make run`,
long-poll the queue and call the same function with the same event.

Every step is safe to repeat: SQS delivers at least once.
"""

import json
import logging
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any
from urllib.parse import unquote_plus

from app.config import Settings
from app.confirmation import Confirmation, Superseded
from app.errors import InvalidImage, NotFound, ServiceError
from app.logs import configure_logging
from app.models import (
    UNCONFIRMED,
    VARIANT_BOXES,
    ImageRecord,
    Status,
    VariantState,
    VariantStatus,
)
from app.render import Undecodable, render_bounded
from app.storage import Storage
from app.storage.clients import AwsClients
from app.storage.objects import UploadedObject
from app.storage.queue import UploadQueue
from app.storage.table import Recorded
from app.tracing import enable_xray

log = logging.getLogger(__name__)

_UPLOAD_KEY = re.compile(r"^images/([A-Za-z0-9_-]{1,64})$")


@dataclass(frozen=True, slots=True)
class Uploaded:
    """An original S3 reports created: its image and the ETag of the bytes it announced."""

    image_id: str
    etag: str


def _at(value: object, *path: str) -> object:
    """value[path[0]][path[1]]..., or None where any step is not an object."""
    for name in path:
        if not isinstance(value, dict):
            return None
        value = value.get(name)
    return value


def uploads_in(body: str, bucket: str) -> list[Uploaded]:
    """The originals an S3 event notification reports created in our bucket. Anything
    else, whatever its shape (S3's test event, another bucket, a key we never issue, JSON
    that is not S3's), is ignored: retrying it could never succeed."""
    try:
        event = json.loads(body)
    except (ValueError, RecursionError):
        log.warning("not an S3 event notification, ignored")
        return []
    records = _at(event, "Records")
    found = []
    for record in records if isinstance(records, list) else []:
        name, key, etag = (
            _at(record, "eventName"),
            _at(record, "s3", "object", "key"),
            _at(record, "s3", "object", "eTag"),
        )
        if not (isinstance(name, str) and name.startswith("ObjectCreated:")):
            continue
        if _at(record, "s3", "bucket", "name") != bucket:
            continue
        if not isinstance(key, str) or not isinstance(etag, str):
            continue
        # S3 sends keys URL-encoded, spaces as '+'; and ETags without their quotes.
        match = _UPLOAD_KEY.match(unquote_plus(key))
        if match:
            found.append(Uploaded(match.group(1), f'"{etag.strip(chr(34))}"'))
    return found


class Worker:
    def __init__(self, confirmation: Confirmation, storage: Storage, settings: Settings) -> None:
        self._confirmation = confirmation
        self._table = storage.table
        self._objects = storage.objects
        self._settings = settings

    def handle(self, event: dict[str, Any]) -> dict[str, Any]:
        """An SQS batch: every message on its own, failures reported one by one so a bad
        image never makes its neighbours run again."""
        failures = []
        for message in event.get("Records", []):
            try:
                for upload in uploads_in(message["body"], self._settings.bucket):
                    outcome = self.process(upload)
                    log.info("worker: %s %s", upload.image_id, outcome)
            except Exception:
                log.exception("worker: message %s failed, to be retried", message["messageId"])
                failures.append({"itemIdentifier": message["messageId"]})
        return {"batchItemFailures": failures}

    def process(self, upload: Uploaded) -> str:
        """Confirm (if needed) and make the variants of one image; what happened."""
        record = self._table.get(upload.image_id)
        if record is None or record.status == Status.DELETING:
            return self._remove_unwanted(upload, record)
        if record.status == Status.READY and record.variants_made:
            return "already done"  # a redelivered message
        stored = self._objects.read(
            record.id, self._settings.max_upload_bytes, self._settings.verify_prefix_bytes
        )
        if stored is None:
            return "no bytes"  # deleted meanwhile, or a refused upload already removed
        if record.status in UNCONFIRMED:
            try:
                record = self._confirmation.confirm(record, stored)
            except InvalidImage as exc:
                return f"refused: {exc.detail}"  # the reason is on the record
            except (NotFound, Superseded):
                # Deleted, or confirmed with other bytes, meanwhile: those bytes' own
                # message makes their variants.
                return "superseded"
        return self._make_variants(record, stored)

    def _remove_unwanted(self, upload: Uploaded, record: ImageRecord | None) -> str:
        """No record will ever point at these bytes (a PUT that raced a delete): remove
        them, and only them (a conditional delete on the ETag S3 announced). With no
        record at all, variants too: one written as a delete ran would stay otherwise."""
        self._objects.delete_original(upload.image_id, upload.etag)
        if record is not None:
            return "being deleted"
        self._objects.delete_variants(upload.image_id)
        return "orphan removed"

    def _make_variants(self, record: ImageRecord, stored: UploadedObject) -> str:
        variants, placeholder = self._variants(record, stored)
        # Before the image leaves the sweep's index: nothing would retag it afterwards.
        self._objects.tag_ready(record.id)
        recorded = self._table.record_variants(record.id, variants, placeholder)
        if recorded == Recorded.GONE:
            self._objects.delete(record.id)  # deleted meanwhile: remove what we wrote
            return "deleted meanwhile"
        return "done" if recorded == Recorded.RECORDED else "made meanwhile"

    def _variants(
        self, record: ImageRecord, stored: UploadedObject
    ) -> tuple[dict[str, VariantState], str | None]:
        if not stored.whole:
            # Verified against the same limits, so only a misconfigured worker gets here:
            # the image stays as confirmed, only its variants cannot be made.
            rendered = None
            reason = f"{stored.total_size} bytes is over the worker's limit"
        else:
            try:
                rendered = render_bounded(
                    stored.data,
                    record.content_type,
                    self._settings.max_pixels,
                    self._settings.render_cpu_seconds,
                    self._settings.render_memory_bytes,
                )
                reason = ""
            except Undecodable as exc:
                rendered, reason = None, str(exc)
        if rendered is None:
            failed = VariantState(VariantStatus.FAILED, reason=reason)
            return dict.fromkeys(VARIANT_BOXES, failed), None
        for variant in rendered.variants:
            self._objects.put_variant(record.id, variant.name, variant.data)
        made = {
            variant.name: VariantState(
                VariantStatus.READY, variant.width, variant.height, len(variant.data)
            )
            for variant in rendered.variants
        }
        return made, rendered.placeholder


def build(settings: Settings, clients: AwsClients | None = None) -> tuple[Worker, Storage]:
    """The worker over shared clients (built lazily, on the first message)."""
    storage = Storage.connect(clients or AwsClients(settings), settings)
    worker = Worker(Confirmation(storage, settings, lambda: datetime.now(UTC)), storage, settings)
    return worker, storage


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
                        {"messageId": m.id, "body": m.body, "eventSource": "aws:sqs"}
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


def start_in_background(settings: Settings, clients: AwsClients) -> threading.Event:
    """`make run`: the worker in a daemon thread of this process. Set the event to stop."""
    stop = threading.Event()
    worker, storage = build(settings, clients)
    thread = threading.Thread(
        target=poll, args=(worker, storage.queue, settings, stop), daemon=True
    )
    thread.start()
    return stop


@cache
def _lambda_worker() -> Worker:
    settings = Settings()
    configure_logging(settings.log_level)
    if settings.xray:
        enable_xray()
    return build(settings)[0]


def handler(event: dict[str, Any], _context: Any) -> dict[str, Any]:
    """AWS Lambda: `app.worker.handler` (template.yaml overrides the image's command).
    The worker is built on the first invocation of an environment, then reused."""
    return _lambda_worker().handle(event)
