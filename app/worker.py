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
from app.confirmation import Confirmation
from app.errors import InvalidImage, NotFound, ServiceError
from app.logs import configure_logging
from app.models import VARIANT_BOXES, ImageRecord, Status, VariantState, VariantStatus
from app.render import Undecodable, render
from app.storage import Storage
from app.storage.clients import AwsClients
from app.storage.objects import ObjectHead
from app.tracing import enable_xray

log = logging.getLogger(__name__)

_UPLOAD_KEY = re.compile(r"^images/([A-Za-z0-9_-]{1,64})$")


def uploaded_images(body: str, bucket: str) -> list[str]:
    """Image ids an S3 event notification reports created in our bucket. Anything else
    (S3's test event, another bucket, a key we never issue) is ignored, not retried."""
    try:
        records = json.loads(body).get("Records", [])
    except (ValueError, AttributeError):
        log.warning("not an S3 event notification, ignored")
        return []
    found = []
    for record in records if isinstance(records, list) else []:
        s3 = record.get("s3", {}) if isinstance(record, dict) else {}
        if not str(record.get("eventName", "")).startswith("ObjectCreated:"):
            continue
        if s3.get("bucket", {}).get("name") != bucket:
            continue
        # S3 sends keys URL-encoded, spaces as '+'.
        match = _UPLOAD_KEY.match(unquote_plus(str(s3.get("object", {}).get("key", ""))))
        if match:
            found.append(match.group(1))
    return found


@dataclass(frozen=True, slots=True)
class _Uploaded:
    content_type: str
    data: ObjectHead


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
                for image_id in uploaded_images(message["body"], self._settings.bucket):
                    outcome = self.process(image_id)
                    log.info("worker: %s %s", image_id, outcome)
            except Exception:
                log.exception("worker: message %s failed, to be retried", message["messageId"])
                failures.append({"itemIdentifier": message["messageId"]})
        return {"batchItemFailures": failures}

    def process(self, image_id: str) -> str:
        """Confirm (if needed) and make the variants of one image; what happened."""
        found = self._confirmed(image_id)
        if isinstance(found, str):
            return found
        variants, placeholder = self._variants(image_id, found.content_type, found.data)
        # Before the image leaves the sweep's index: nothing would retag it afterwards.
        self._objects.tag_ready(image_id)
        if not self._table.record_variants(image_id, variants, placeholder):
            self._objects.delete(image_id)  # deleted meanwhile: remove what we wrote
            return "deleted meanwhile"
        return "done"

    def _confirmed(self, image_id: str) -> "_Uploaded | str":
        """The ready image and its bytes, or why there is nothing (more) to do."""
        record = self._table.get(image_id)
        if record is None:
            # No record will ever point at these bytes (a PUT that raced a delete).
            self._objects.delete(image_id)
            return "orphan removed"
        if record.status == Status.DELETING:
            return "being deleted"
        if record.status == Status.READY and record.due_at is None:
            return "already done"  # a redelivered message
        head = self._objects.read(image_id, self._settings.max_upload_bytes)
        if head is None:
            return "no bytes"  # deleted meanwhile, or a refused upload already removed
        if record.status == Status.PENDING:
            refused = self._auto_confirm(record, head)
            if refused:
                return refused
        return _Uploaded(record.content_type, head)

    def _auto_confirm(self, record: ImageRecord, head: ObjectHead) -> str:
        """Exactly what POST .../confirm does; why it refused, or "" when now ready."""
        try:
            self._confirmation.confirm(record, head)
        except InvalidImage as exc:
            return f"refused: {exc.detail}"  # bytes deleted; the client may PUT again
        except NotFound:
            return "not confirmable"  # past its deadline, or deleted meanwhile
        return ""

    def _variants(
        self, image_id: str, content_type: str, head: ObjectHead
    ) -> tuple[dict[str, VariantState], str | None]:
        if head.total_size > self._settings.max_upload_bytes:
            rendered = None
            reason = f"{head.total_size} bytes is over the upload limit"
        else:
            try:
                rendered = render(head.data, content_type, self._settings.max_pixels)
                reason = ""
            except Undecodable as exc:
                rendered, reason = None, str(exc)
        if rendered is None:
            failed = VariantState(VariantStatus.FAILED, reason=reason)
            return dict.fromkeys(VARIANT_BOXES, failed), None
        for variant in rendered.variants:
            self._objects.put_variant(image_id, variant.name, variant.data)
        made = {
            variant.name: VariantState(
                VariantStatus.READY, variant.width, variant.height, len(variant.data)
            )
            for variant in rendered.variants
        }
        return made, rendered.placeholder


def build(settings: Settings, clients: AwsClients | None = None) -> Worker:
    """The worker over shared clients (built lazily, on the first message)."""
    storage = Storage.connect(clients or AwsClients(settings), settings)
    return Worker(Confirmation(storage, settings, lambda: datetime.now(UTC)), storage, settings)


def poll(worker: Worker, clients: AwsClients, settings: Settings, stop: threading.Event) -> None:
    """Long-poll the queue and hand each batch to `worker.handle`, as Lambda's event
    source mapping does: what it reports done is deleted, the rest comes back after the
    visibility timeout (and, past the redrive limit, goes to the dead-letter queue)."""
    sqs = clients.sqs
    queue_url: str | None = None
    while not stop.is_set():
        try:
            if queue_url is None:
                queue_url = sqs.get_queue_url(QueueName=settings.queue)["QueueUrl"]
            received = sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=settings.worker_poll_seconds,
            )
            messages = received.get("Messages", [])
            if not messages:
                continue
            result = worker.handle(
                {
                    "Records": [
                        {"messageId": m["MessageId"], "body": m["Body"], "eventSource": "aws:sqs"}
                        for m in messages
                    ]
                }
            )
            failed = {failure["itemIdentifier"] for failure in result["batchItemFailures"]}
            done = [m for m in messages if m["MessageId"] not in failed]
            if done:
                sqs.delete_message_batch(
                    QueueUrl=queue_url,
                    Entries=[
                        {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
                        for n, m in enumerate(done)
                    ],
                )
        except (ServiceError, OSError, ValueError) as exc:  # AWS or the network: wait, retry
            log.warning("worker: polling failed, retrying: %r", exc)
            stop.wait(1)
        except Exception:  # botocore's own errors, anything unforeseen: never stop polling
            log.exception("worker: polling failed, retrying")
            stop.wait(1)


def start_in_background(settings: Settings, clients: AwsClients) -> threading.Event:
    """`make run`: the worker in a daemon thread of this process. Set the event to stop."""
    stop = threading.Event()
    thread = threading.Thread(
        target=poll, args=(build(settings, clients), clients, settings, stop), daemon=True
    )
    thread.start()
    return stop


@cache
def _lambda_worker() -> Worker:
    settings = Settings()
    configure_logging(settings.log_level)
    if settings.xray:
        enable_xray()
    return build(settings)


def handler(event: dict[str, Any], _context: Any) -> dict[str, Any]:
    """AWS Lambda: `app.worker.handler` (template.yaml overrides the image's command).
    The worker is built on the first invocation of an environment, then reused."""
    return _lambda_worker().handle(event)
