"""The rules of the image API: ownership, limits, verification and the order of writes."""

import urllib.parse
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from app.config import Settings
from app.errors import Conflict, InvalidImage, TooLarge, image_not_found
from app.imaging import Dimensions, inspect_image
from app.models import (
    CreateImageRequest,
    CreateImageResponse,
    DownloadLink,
    Image,
    ImageList,
    ImageRecord,
    ListQuery,
    Status,
    UploadInstructions,
    format_timestamp,
)
from app.pagination import CursorCodec
from app.storage import Storage
from app.storage.items import PENDING_TAGGING
from app.storage.listing import ListFilter
from app.storage.resources import SWEEP_SHARDS

# How long a half-finished delete's marker lives before the sweep finishes it.
DELETE_MARKER_TTL = timedelta(hours=1)

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def content_disposition(filename: str) -> str:
    """`attachment` with an ASCII fallback and the exact name per RFC 6266 / RFC 5987.

    The fallback drops what could break the header or a path (quotes, backslashes,
    separators, control and non-ASCII characters); `filename*` carries every character.
    """
    fallback = "".join(
        char if " " <= char <= "~" and char not in '"\\/;%' else "_" for char in filename
    )
    encoded = urllib.parse.quote(filename, safe="")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"


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
        self._settings = settings
        self._cursors = cursors
        self._clock = clock or _utcnow

    def _owned(self, user_id: str, image_id: str) -> ImageRecord:
        record = self._table.get(image_id)
        # Someone else's image, one being deleted, and no image at all look the same.
        if record is None or record.user_id != user_id or record.status == Status.DELETING:
            raise image_not_found()
        return record

    def create(self, user_id: str, request: CreateImageRequest) -> CreateImageResponse:
        limit = min(self._settings.max_upload_bytes, self._settings.max_bytes_per_user)
        if request.size > limit:
            raise TooLarge(f"size {request.size} exceeds the limit of {limit} bytes")
        record, now = self._register(user_id, request)
        ttl = self._settings.upload_url_ttl_seconds
        url = self._objects.presign_put(record.id, record.content_type, record.size, ttl)
        return CreateImageResponse(
            image=record.public(),
            upload=UploadInstructions(
                url=url,
                headers={
                    "Content-Type": record.content_type,
                    "Content-Length": str(record.size),
                    "x-amz-tagging": PENDING_TAGGING,
                },
                expires_at=now + timedelta(seconds=ttl),
            ),
        )

    def upload_direct(self, user_id: str, request: CreateImageRequest, data: bytes) -> Image:
        """The one-request upload for small files: verified before anything is written,
        then stored exactly as a presigned upload and its confirm would store it."""
        limit = min(self._settings.max_direct_bytes, self._settings.max_bytes_per_user)
        if len(data) > limit:
            raise TooLarge(f"size {len(data)} exceeds the limit of {limit} bytes")
        dims = self._verify(data[: self._settings.verify_prefix_bytes], request, len(data), "")
        record, _ = self._register(user_id, request)
        self._objects.put(record.id, data, record.content_type)
        return self._mark_ready(record, dims)

    def _register(self, user_id: str, request: CreateImageRequest) -> tuple[ImageRecord, datetime]:
        """Write the pending record (quota and upload bound checked in the same call)."""
        now = self._clock()
        record = ImageRecord(
            id=uuid.uuid4().hex,
            user_id=user_id,
            filename=request.filename,
            content_type=request.content_type,
            size=request.size,
            status=Status.PENDING,
            created_at=format_timestamp(now),
            title=request.title,
            description=request.description,
            tags=request.tags,
        )
        pending_until = now + timedelta(seconds=self._settings.pending_ttl_seconds)
        self._table.put_pending(
            record, expires_at=int(pending_until.timestamp()), now=int(now.timestamp())
        )
        return record, now

    def confirm(self, user_id: str, image_id: str) -> Image:
        record = self._owned(user_id, image_id)
        if record.status == Status.READY:
            return record.public()
        head = self._objects.read_head(image_id, self._settings.verify_prefix_bytes)
        if head is None:
            raise Conflict("Nothing uploaded yet: PUT the bytes to the upload URL, then confirm")
        try:
            dims = self._verify(head.data, record, head.total_size, head.content_type)
        except InvalidImage:
            # Bad bytes never stay in the bucket. The record stays pending, so the client
            # may PUT again while its URL is valid; otherwise the sweep removes it.
            self._objects.delete(image_id)
            raise
        return self._mark_ready(record, dims)

    def _verify(
        self,
        head: bytes,
        declared: ImageRecord | CreateImageRequest,
        total_size: int,
        stored_type: str,
    ) -> Dimensions:
        """The bytes are the declared size and type, and not absurdly many pixels."""
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

    def _mark_ready(self, record: ImageRecord, dims: Dimensions) -> Image:
        if not self._objects.tag_confirmed(record.id):
            raise image_not_found()  # deleted while we were verifying it
        now = self._clock()
        ready = self._table.mark_ready(
            record, format_timestamp(now), dims.width, dims.height, int(now.timestamp())
        )
        return ready.public()

    def get(self, user_id: str, image_id: str) -> Image:
        return self._owned(user_id, image_id).public()

    def download(self, user_id: str, image_id: str) -> DownloadLink:
        record = self._owned(user_id, image_id)
        if record.status != Status.READY:
            raise Conflict("The image is not confirmed yet")
        ttl = self._settings.download_url_ttl_seconds
        url = self._objects.presign_get(image_id, content_disposition(record.filename), ttl)
        return DownloadLink(url=url, expires_at=self._clock() + timedelta(seconds=ttl))

    def list(self, user_id: str, query: ListQuery) -> ImageList:
        where = ListFilter(
            status=query.status,
            content_type=query.content_type,
            tag=query.tag,
            created_from=format_timestamp(query.created_after) if query.created_after else None,
            created_to=format_timestamp(query.created_before) if query.created_before else None,
        )
        start = self._cursors.decode(query.cursor, user_id, where) if query.cursor else None
        if where.created_from and where.created_to and where.created_from > where.created_to:
            return ImageList(items=[], next_cursor=None)  # an empty range, not an error
        records, position = self._listing.query(
            user_id, where, query.limit, start, self._settings.list_read_budget
        )
        return ImageList(
            items=[record.public() for record in records],
            next_cursor=self._cursors.encode(user_id, where, position) if position else None,
        )

    def delete(self, user_id: str, image_id: str) -> None:
        """Hide, then remove bytes, then remove the record: a crash at any step leaves a
        hidden record that a retried DELETE (or the sweep) finishes; never a listed image
        without bytes, never bytes without a record that points at them."""
        self._finish_delete(self._table.mark_deleting(image_id, user_id, self._marker_ttl()))

    def sweep(self) -> int:
        """Remove uploads never confirmed by their deadline, and finish stalled deletes,
        from both stores. Returns how many images were removed."""
        now = int(self._clock().timestamp())
        removed = 0
        for shard in SWEEP_SHARDS:
            for found in self._listing.abandoned(shard, now):
                marked = self._table.mark_deleting(
                    found.id, found.user_id, self._marker_ttl(), abandoned_before=now
                )
                removed += self._finish_delete(marked)
        return removed

    def _marker_ttl(self) -> int:
        return int((self._clock() + DELETE_MARKER_TTL).timestamp())

    def _finish_delete(self, marked: ImageRecord | None) -> int:
        if marked is None:
            return 0
        self._objects.delete(marked.id)
        self._table.delete_record(marked)
        return 1
