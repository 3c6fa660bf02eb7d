"""Confirming an upload: the same checks and the same writes whoever asks, the client
(POST .../confirm, POST /images/direct), the worker (when the bytes arrive) or the sweep
(bytes PUT in time whose worker never came). The conditional writes decide between
them, so they never disagree or count twice."""

import logging
from collections.abc import Callable
from datetime import datetime

from app.config import Settings
from app.errors import InvalidImage, Unavailable, image_not_found
from app.imaging import Dimensions, HeaderTooShort, inspect_image
from app.models import CreateImageRequest, ImageRecord, Status, format_timestamp
from app.storage import Storage
from app.storage.objects import UploadedObject

log = logging.getLogger(__name__)


class Superseded(Exception):
    """The bytes checked were refused, but the image no longer depends on them: it was
    confirmed with other bytes meanwhile, or deleted. The image's record says which."""


class Confirmation:
    def __init__(self, storage: Storage, settings: Settings, clock: Callable[[], datetime]) -> None:
        self._table = storage.table
        self._objects = storage.objects
        self._settings = settings
        self._clock = clock

    def verify(
        self,
        head: bytes,
        declared: ImageRecord | CreateImageRequest,
        total_size: int,
        stored_type: str,
    ) -> Dimensions:
        """The bytes are the declared size and type, and not absurdly many pixels.
        HeaderTooShort: `head` ends before the header does."""
        if total_size != declared.size:
            raise InvalidImage(f"Uploaded {total_size} bytes but declared {declared.size}")
        if stored_type and stored_type != declared.content_type:
            raise InvalidImage(f"Uploaded as {stored_type} but declared {declared.content_type}")
        dims = inspect_image(head, declared.content_type, total_size)
        if dims.width * dims.height > self._settings.max_pixels:
            raise InvalidImage(
                f"{dims.width}x{dims.height} is more than {self._settings.max_pixels} pixels"
            )
        return dims

    def confirm(self, record: ImageRecord, upload: UploadedObject) -> ImageRecord:
        """Verify what was uploaded and make the image ready, or reject it (InvalidImage,
        with the reason kept on the record). Superseded: these bytes were refused, but
        they are no longer the image's (it was confirmed with others, or deleted)."""
        try:
            dims = self._dimensions(record, upload)
        except InvalidImage as refused:
            if not self._reject(record, upload, refused.detail):
                raise Superseded(record.id) from refused
            raise
        return self.mark_ready(record, dims)

    def _dimensions(self, record: ImageRecord, upload: UploadedObject) -> Dimensions:
        """Verify, reading further when a header (a large ICC profile, XMP, EXIF) runs
        past the bytes read so far: up to `verify_max_bytes`, a few ranged reads."""
        most = self._settings.verify_max_bytes
        while True:
            try:
                return self.verify(
                    upload.data[:most], record, upload.total_size, upload.content_type
                )
            except HeaderTooShort:
                if upload.whole or len(upload.data) >= most:
                    raise InvalidImage(
                        f"The {record.content_type} header runs past the first {most} bytes"
                    ) from None
            longer = self._objects.read_prefix(record.id, min(most, 8 * len(upload.data)))
            if longer is None or longer.etag != upload.etag:
                # Deleted or replaced between two reads: nothing to judge; retry.
                raise Unavailable("The uploaded bytes changed while they were checked; retry")
            upload = longer

    def _reject(self, record: ImageRecord, upload: UploadedObject, reason: str) -> bool:
        """Reason first, bytes second: a failure in between leaves the reason with the bad
        bytes still there, and the next check (a redelivery, confirm, the sweep) ends
        the same. Only the bytes that were checked go, and only while the record is
        still unconfirmed: never the variants, never a newer upload, never a ready
        image's bytes. The upload stays open for valid bytes, and its record for its
        owner to read why, for at least the grace period after the first refusal.
        False when the record is not unconfirmed any more (nothing was done)."""
        now = int(self._clock().timestamp())
        keep_until = record.due_at or now
        if record.status == Status.PENDING:
            # A first refusal only: a repeated one keeps the time it had, so that refused
            # bytes that could not be deleted never keep the upload open for ever.
            keep_until = max(keep_until, now + self._settings.finish_grace_seconds)
        if not self._table.mark_rejected(record, reason, keep_until):
            return False
        self._objects.delete_original(record.id, upload.etag)
        return True

    def mark_ready(self, record: ImageRecord, dims: Dimensions) -> ImageRecord:
        """Record first, tag second: a confirm that fails in between leaves a ready record
        with a pending tag, which the sweep retags long before the lifecycle rule acts;
        the other order could leave a refused upload tagged ready, out of its reach."""
        moment = self._clock()
        now = int(moment.timestamp())
        ready = self._table.mark_ready(
            record,
            format_timestamp(moment),
            dims.width,
            dims.height,
            now=now,
            finish_by=now + self._settings.finish_grace_seconds,
        )
        try:
            present = self._objects.tag_ready(ready.id)
        except Unavailable as exc:
            # The image is ready: that is the answer. The sweep retags it.
            log.warning("%s is ready but untagged, left to the sweep (%r)", ready.id, exc)
            return ready
        if not present:
            raise image_not_found()  # deleted while we were confirming it
        return ready
