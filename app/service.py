"""The rules of the image API: ownership, limits, verification and the order of writes."""

import hashlib
import json
import logging
import math
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from app.config import Settings
from app.confirmation import Confirmation, Superseded
from app.errors import (
    Conflict,
    IdempotencyMismatch,
    InvalidImage,
    TooLarge,
    image_not_found,
)
from app.filenames import content_disposition, download_name
from app.models import (
    UNCONFIRMED,
    URL_FIELDS,
    VARIANT_BOXES,
    CreateImageRequest,
    CreateImageResponse,
    DownloadLink,
    Image,
    ImageRecord,
    ListQuery,
    Status,
    UploadInstructions,
    VariantStatus,
    format_timestamp,
)
from app.pagination import CursorCodec
from app.storage import Storage
from app.storage.listing import ListFilter
from app.storage.table import Replay, claim_for

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def fingerprint(request: CreateImageRequest, data: bytes | None = None) -> str:
    """What makes two requests "the same" for an Idempotency-Key: the validated fields
    (so key order, whitespace and tag case do not matter), and the bytes if any."""
    fields = request.model_dump(mode="json")
    if data is not None:
        fields["sha256"] = hashlib.sha256(data).hexdigest()
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


class ImageService:
    def __init__(
        self,
        storage: Storage,
        settings: Settings,
        cursors: CursorCodec,
        clock: Clock | None = None,
    ) -> None:
        self._table = storage.table
        self._objects = storage.objects
        self._listing = storage.listing
        self._settings = self.settings = settings
        self._cursors = cursors
        self.clock = clock or _utcnow
        # Read at call time, so that a clock replaced later (tests, a bench) applies too.
        self.confirmation = Confirmation(storage, settings, lambda: self.clock())  # noqa: PLW0108

    def now(self) -> int:
        return int(self.clock().timestamp())

    def _owned(self, user_id: str, image_id: str) -> ImageRecord:
        record = self._table.get(image_id)
        # Someone else's image, one being deleted, and no image at all look the same.
        if record is None or record.user_id != user_id or record.status == Status.DELETING:
            raise image_not_found()
        return record

    def create(
        self, user_id: str, request: CreateImageRequest, idempotency_key: str | None = None
    ) -> tuple[CreateImageResponse, bool]:
        """The pending image and where to PUT its bytes; True if this replays an earlier
        request with the same Idempotency-Key (same image, fresh URL)."""
        # The API refuses a size over the published maximum first, as a field out of range.
        if request.size > self._settings.largest_upload:
            raise TooLarge(f"size {request.size} exceeds {self._settings.largest_upload} bytes")
        moment = self.clock()
        record, replayed = self._register(
            user_id, request, idempotency_key, fingerprint(request), moment
        )
        ttl = self._settings.upload_url_ttl_seconds
        if record.status in UNCONFIRMED and record.due_at is not None:
            # A replay must not sign a URL that outlives the upload's deadline: the sweep
            # gives up, past it, an upload whose bytes are not there, sure that none can
            # come.
            ttl = min(ttl, math.floor(record.due_at - moment.timestamp()))
            if ttl < 1:
                raise Conflict(
                    "The upload this Idempotency-Key started has run out of time; use a new key"
                )
        url, headers = self._objects.presign_put(record.id, record.content_type, record.size, ttl)
        upload = UploadInstructions(
            url=url, headers=headers, expires_at=moment + timedelta(seconds=ttl)
        )
        return CreateImageResponse(image=record.public(), upload=upload), replayed

    def upload_direct(
        self,
        user_id: str,
        request: CreateImageRequest,
        data: bytes,
        idempotency_key: str | None = None,
    ) -> tuple[Image, bool]:
        """The one-request upload for small files: verified before anything is written,
        then stored exactly as a presigned upload and its confirm would store it. A replay
        finishes whatever the first attempt did not."""
        limit = self._settings.largest_direct_upload
        if len(data) > limit:
            raise TooLarge(f"size {len(data)} exceeds the limit of {limit} bytes")
        dims = self.confirmation.verify(
            data[: self._settings.verify_max_bytes], request, len(data), ""
        )
        record, replayed = self._register(
            user_id, request, idempotency_key, fingerprint(request, data), self.clock()
        )
        if record.status != Status.READY:
            # Already there when a replay follows an attempt that stopped after the PUT.
            self._objects.put(record.id, data, record.content_type)
            record = self.confirmation.mark_ready(record, dims)
        return self._image(record), replayed

    def _register(
        self,
        user_id: str,
        request: CreateImageRequest,
        idempotency_key: str | None,
        request_fingerprint: str,
        moment: datetime,
    ) -> tuple[ImageRecord, bool]:
        """Write the pending record, reserving its quota; or, for a used key, the image the
        key created."""
        now = int(moment.timestamp())
        record = ImageRecord(
            id=uuid.uuid4().hex,
            user_id=user_id,
            filename=request.filename,
            content_type=request.content_type,
            size=request.size,
            status=Status.PENDING,
            created_at=format_timestamp(moment),
            title=request.title,
            description=request.description,
            tags=request.tags,
            due_at=now + self._settings.upload_deadline_seconds,
        )
        claim = None
        if idempotency_key is not None:
            expires = now + self._settings.idempotency_ttl_seconds
            claim = claim_for(user_id, idempotency_key, request_fingerprint, expires)
        try:
            self._table.reserve(record, now, claim)
        except Replay as replay:
            if replay.fingerprint != request_fingerprint:
                raise IdempotencyMismatch(
                    "This Idempotency-Key was used with a different request; use a new key"
                ) from replay
            earlier = self._table.get(replay.target)
            if earlier is None or earlier.status == Status.DELETING:
                raise Conflict(
                    "The image this Idempotency-Key created has been deleted; use a new key"
                ) from replay
            return earlier, True
        return record, False

    def confirm(self, user_id: str, image_id: str) -> Image:
        record = self._owned(user_id, image_id)
        if record.status != Status.READY:
            upload = self._objects.read_prefix(image_id, self._settings.verify_prefix_bytes)
            if upload is None:
                # No bytes (any more): a delete or a rejection may have just removed them,
                # which the record now says. One more read, only on this path.
                current = self._owned(user_id, image_id)
                if current.status == Status.REJECTED:
                    raise InvalidImage(current.reason or "The uploaded bytes were refused")
                raise Conflict(
                    "Nothing uploaded yet: PUT the bytes to the upload URL, then confirm"
                )
            try:
                record = self.confirmation.confirm(record, upload)
            except Superseded:
                # These bytes were refused, but another confirm made the image ready with
                # others (or it was deleted): answer what the image is now.
                record = self._owned(user_id, image_id)
        return self._image(record)

    def _image(self, record: ImageRecord) -> Image:
        return Image.model_validate(self.public([record])[0])

    def public(self, records: list[ImageRecord]) -> list[dict[str, Any]]:
        """Records as their owner sees them, URLs included."""
        return self._signed([record.public() for record in records])

    def _signed(self, images: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Images' JSON with short-lived URLs of their ready variants, filled in place
        (signed together: a page of them costs a fraction of a millisecond)."""
        wanted = [
            (image["id"], name)
            for image in images
            for name in VARIANT_BOXES
            if image["variants"][name]["status"] == VariantStatus.READY
        ]
        urls = self._objects.variant_urls(wanted, self._settings.download_url_ttl_seconds)
        by_id = {image["id"]: image for image in images}
        for (image_id, name), url in zip(wanted, urls, strict=True):
            by_id[image_id][URL_FIELDS[name]] = url
        return images

    def get(self, user_id: str, image_id: str) -> Image:
        return self._image(self._owned(user_id, image_id))

    def download(self, user_id: str, image_id: str, variant: str = "original") -> DownloadLink:
        record = self._owned(user_id, image_id)
        if record.status == Status.REJECTED:
            raise Conflict(f"The upload was refused: {record.reason}")
        if record.status != Status.READY:
            raise Conflict("The image is not confirmed yet")
        ttl = self._settings.download_url_ttl_seconds
        if variant == "original":
            name = download_name(record.filename, record.content_type)
            url = self._objects.presign_get(
                image_id, record.content_type, content_disposition(name), ttl
            )
        else:
            state = record.variant(variant)
            if state.status != VariantStatus.READY:
                why = f": {state.reason}" if state.reason else ", retry in a few seconds"
                raise Conflict(f"The {variant} is {state.status}{why}")
            url = self._objects.variant_urls([(image_id, variant)], ttl)[0]
        return DownloadLink(url=url, expires_at=self.clock() + timedelta(seconds=ttl))

    def list(self, user_id: str, query: ListQuery) -> dict[str, Any]:
        """One page, as the JSON of ImageList (built directly from the items: image_json)."""
        where = ListFilter(
            status=query.status,
            content_type=query.content_type,
            tag=query.tag,
            created_from=format_timestamp(query.created_after) if query.created_after else None,
            created_to=format_timestamp(query.created_before) if query.created_before else None,
        )
        start = self._cursors.decode(query.cursor, user_id, where) if query.cursor else None
        if where.created_from and where.created_to and where.created_from > where.created_to:
            return {"items": [], "next_cursor": None}  # an empty range, not an error
        images, position = self._listing.query(
            user_id, where, query.limit, start, self._settings.list_read_budget
        )
        cursor = self._cursors.encode(user_id, where, position) if position else None
        return {"items": self._signed(images), "next_cursor": cursor}

    def delete(self, user_id: str, image_id: str) -> None:
        """Hide, then remove bytes, then remove the record (giving its quota back): a
        crash at any step leaves a hidden record that a retried DELETE (or the sweep)
        finishes; never a listed image without bytes, never bytes without a record."""
        now = self.now()
        marked = self._table.mark_deleting(
            image_id, user_id, due_at=now + self._settings.finish_grace_seconds
        )
        if marked is not None:
            self.finish_delete(marked)

    def finish_delete(self, marked: ImageRecord) -> None:
        """Steps 2 and 3 of a delete, for a record already marked; safe to repeat."""
        self._objects.delete(marked.id)
        self._table.delete_record(marked, self.now())
