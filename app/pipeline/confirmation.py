"""Confirming an upload: the same checks and the same writes whoever asks, the client
(POST .../confirm, POST /images/direct), the worker (when the bytes arrive) or the sweep
(bytes PUT in time whose worker never came). The conditional writes decide between
them, so they never disagree or count twice."""

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from app.config import Settings
from app.domain import formats
from app.domain.containers import Dimensions, Header, NeedsBytes
from app.domain.errors import InvalidImage, Unavailable, image_not_found
from app.domain.formats import HeaderTooShort
from app.domain.records import ImageRecord, ScanState, ScanStatus, Status, format_timestamp
from app.storage import Storage
from app.storage.objects import UploadedObject

log = logging.getLogger(__name__)

# Reads a check may ask for past the first bytes (a longer prefix, a TIFF's directory).
MOST_EXTRA_READS = 4


class Declared(Protocol):
    """What the client said it uploads: a record, or a direct upload's request."""

    @property
    def size(self) -> int: ...

    @property
    def content_type(self) -> str: ...


class Superseded(Exception):
    """The bytes checked were refused, but the image no longer depends on them: it was
    confirmed with other bytes meanwhile, or deleted. The image's record says which."""


class Confirmation:
    def __init__(self, storage: Storage, settings: Settings, clock: Callable[[], datetime]) -> None:
        self._table = storage.table
        self._objects = storage.objects
        self._settings = settings
        self._clock = clock

    def verify(self, header: Header, declared: Declared, stored_type: str) -> Dimensions:
        """The bytes are the declared size and type, and not absurdly many pixels.
        HeaderTooShort or NeedsBytes: read further and ask again."""
        if header.size != declared.size:
            raise InvalidImage(f"Uploaded {header.size} bytes but declared {declared.size}")
        if stored_type and stored_type != declared.content_type:
            raise InvalidImage(f"Uploaded as {stored_type} but declared {declared.content_type}")
        dims = formats.inspect(header, declared.content_type)
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
        """Verify, reading further when the header asks for it: a longer prefix (a large
        colour profile, XMP, EXIF before a JPEG's frame header), or a window further in
        (a TIFF's directory, after the image data). Bounded: at most MOST_EXTRA_READS
        reads, none past `verify_max_bytes` from the start, each of the bytes first read
        (If-Match their ETag)."""
        most = self._settings.verify_max_bytes
        data, windows = upload.data[:most], dict[int, bytes]()
        for _ in range(MOST_EXTRA_READS + 1):
            try:
                return self.verify(
                    Header(data, upload.total_size, windows), record, upload.content_type
                )
            except HeaderTooShort as short:
                if len(data) >= most:
                    raise InvalidImage(
                        f"The {record.content_type} header runs past the first {most} bytes"
                    ) from short
                offset, length = 0, min(most, 8 * len(data))
            except NeedsBytes as wanted:
                offset, length = wanted.offset, wanted.length
            more = (
                upload.data[offset : offset + length]
                if upload.whole
                else self._objects.read_range(record.id, upload.etag, offset, length)
            )
            if more is None:
                # Deleted or replaced between two reads: nothing to judge; retry.
                raise Unavailable("The uploaded bytes changed while they were checked; retry")
            if offset == 0:
                data = more
            else:
                windows[offset] = more
        raise InvalidImage(f"The {record.content_type} header asks for too many reads")

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
            # With scanning on, nothing is served until a scan says clean.
            scan=ScanState(
                ScanStatus.SKIPPED if self._settings.scan == "off" else ScanStatus.PENDING
            ),
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
