"""The rules of the image API: ownership, limits, verification and the order of writes."""

import hashlib
import json
import logging
import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from app.config import Settings
from app.domain.containers import Header
from app.domain.errors import (
    Code,
    Conflict,
    IdempotencyMismatch,
    InvalidImage,
    InvalidRequest,
    TooLarge,
    TooMany,
    image_infected,
    image_not_found,
)
from app.domain.filenames import content_disposition, download_name
from app.domain.owners import new_image_id
from app.domain.records import UNCONFIRMED, ImageRecord, ScanStatus, Status, format_timestamp
from app.images.cursors import CursorCodec
from app.images.deletion import finish_delete
from app.images.models import (
    CreateImageRequest,
    CreateImageResponse,
    DownloadLink,
    Image,
    ListQuery,
    UploadInstructions,
)
from app.pipeline.confirmation import Confirmation, Superseded
from app.storage import Storage
from app.storage.cdn import SignedCookies
from app.storage.items import JsonShape, to_item
from app.storage.listing import ListFilter
from app.storage.table import OverQuota, Replay, Usage, claim_for

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
ORIGINAL = "original"


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
        confirmation: Confirmation,
        cursors: CursorCodec,
        *,
        clock: Clock,
        owners: Callable[[str], str],
    ) -> None:
        self._storage = storage
        self._table = storage.table
        self._objects = storage.objects
        self._reads = storage.reads  # S3-presigned, or CloudFront-signed with a CDN
        self._listing = storage.listing
        self._settings = self.settings = settings
        self._confirmation = confirmation
        self._cursors = cursors
        self._owners = owners  # user id -> the prefix their objects go under
        self._clock = clock
        self._json = JsonShape(settings.variants)

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
        moment = self._clock()
        record, replayed = self._register(
            user_id, request, idempotency_key, fingerprint(request), moment
        )
        _refuse_infected(record)  # a replay must not hand out a way to PUT the malware back
        ttl = self._settings.upload_url_ttl_seconds
        if record.status in UNCONFIRMED and record.due_at is not None:
            # A replay must not sign a URL that outlives the upload's deadline: the sweep
            # gives up, past it, an upload whose bytes are not there, sure that none can
            # come.
            ttl = min(ttl, math.floor(record.due_at - moment.timestamp()))
            if ttl < 1:
                raise Conflict(
                    "The upload this Idempotency-Key started has run out of time; use a new key",
                    code=Code.UPLOAD_EXPIRED,
                )
        url, headers = self._objects.presign_put(record.id, record.content_type, record.size, ttl)
        upload = UploadInstructions(
            url=url, headers=headers, expires_at=moment + timedelta(seconds=ttl)
        )
        return CreateImageResponse(image=self._image(record), upload=upload), replayed

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
        dims = self._confirmation.verify(Header(data, len(data)), request, "")
        record, replayed = self._register(
            user_id, request, idempotency_key, fingerprint(request, data), self._clock()
        )
        _refuse_infected(record)  # its bytes were removed: a replay must not write them back
        if record.status != Status.READY:
            # Already there when a replay follows an attempt that stopped after the PUT.
            self._objects.put(record.id, data, record.content_type)
            record = self._confirmation.mark_ready(record, dims)
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
            id=new_image_id(self._owners(user_id)),
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
        except OverQuota as over:
            raise self._quota_refusal(over.usage, record.size) from over
        except Replay as replay:
            if replay.fingerprint != request_fingerprint:
                raise IdempotencyMismatch(
                    "This Idempotency-Key was used with a different request; use a new key"
                ) from replay
            earlier = self._table.get(replay.target)
            if earlier is None or earlier.status == Status.DELETING:
                raise Conflict(
                    "The image this Idempotency-Key created has been deleted; use a new key",
                    code=Code.IMAGE_DELETED,
                ) from replay
            return earlier, True
        return record, False

    def _quota_refusal(self, usage: Usage, size: int) -> TooMany | TooLarge:
        """Which of the user's limits an upload of `size` would pass, said plainly."""
        limits = self._settings
        if usage.images >= limits.max_images_per_user:
            return TooMany(
                f"Image quota reached: {limits.max_images_per_user} images per user, "
                "unconfirmed uploads included; delete some to make room",
                code=Code.QUOTA_IMAGES,
            )
        if usage.bytes + size > limits.max_bytes_per_user:
            return TooLarge(
                f"Storage quota exceeded: {size} more bytes would pass "
                f"{limits.max_bytes_per_user} bytes per user",
                code=Code.QUOTA_BYTES,
            )
        if usage.pending >= limits.max_pending_uploads:
            what = f"Too many unconfirmed uploads: at most {limits.max_pending_uploads} at once"
        else:
            what = f"Too many bytes in unconfirmed uploads: at most {limits.max_pending_bytes}"
        # Slots free as the user's own uploads are confirmed: waiting helps.
        return TooMany(
            f"{what}. Finish (or abandon) some and retry",
            code=Code.RATE_LIMITED,
            retry_after=limits.pending_retry_after_seconds,
        )

    def confirm(self, user_id: str, image_id: str) -> Image:
        record = self._owned(user_id, image_id)
        # Not "nothing uploaded": that would invite the client to PUT the malware again.
        _refuse_infected(record)
        if record.status != Status.READY:
            upload = self._objects.read_prefix(image_id, self._settings.verify_prefix_bytes)
            if upload is None:
                # No bytes (any more): a delete or a rejection may have just removed them,
                # which the record now says. One more read, only on this path.
                current = self._owned(user_id, image_id)
                if current.status == Status.REJECTED:
                    raise InvalidImage(current.reason or "The uploaded bytes were refused")
                raise Conflict(
                    "Nothing uploaded yet: PUT the bytes to the upload URL, then confirm",
                    code=Code.NOT_UPLOADED,
                )
            try:
                record = self._confirmation.confirm(record, upload)
            except Superseded:
                # These bytes were refused, but another confirm made the image ready with
                # others (or it was deleted): answer what the image is now.
                record = self._owned(user_id, image_id)
        return self._image(record)

    def _image(self, record: ImageRecord) -> Image:
        return Image.model_validate(self._signed([self._json.image(to_item(record))])[0])

    def _signed(self, images: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Images' JSON with short-lived URLs of their ready variants, filled in place
        where JsonShape left each one's key (signed together: a page of them costs a
        fraction of a millisecond)."""
        ready = [
            variant
            for image in images
            for variant in image["variants"].values()
            if variant["url"] is not None
        ]
        urls = self._reads.variant_urls(
            [variant["url"] for variant in ready], self._settings.download_url_ttl_seconds
        )
        for variant, url in zip(ready, urls, strict=True):
            variant["url"] = url
        return images

    def get(self, user_id: str, image_id: str) -> Image:
        return self._image(self._owned(user_id, image_id))

    def download(self, user_id: str, image_id: str, variant: str = ORIGINAL) -> DownloadLink:
        if variant != ORIGINAL and variant not in self._settings.variants:
            valid = ", ".join([ORIGINAL, *self._settings.variants])
            raise InvalidRequest(f"No variant {variant!r}: one of {valid}")
        record = self._owned(user_id, image_id)
        _refuse_infected(record)
        if record.status == Status.REJECTED:
            raise Conflict(f"The upload was refused: {record.reason}", code=Code.REJECTED)
        if record.status != Status.READY:
            raise Conflict("The image is not confirmed yet", code=Code.NOT_READY)
        if record.scan.status == ScanStatus.PENDING:
            raise Conflict(
                "The image is being checked for malware; retry shortly",
                code=Code.NOT_SCANNED,
                retry_after=self._settings.scan_retry_after_seconds,
            )
        if record.scan.status == ScanStatus.FAILED:
            raise Conflict(
                f"The malware scan could not judge the image: {record.scan.reason}",
                code=Code.SCAN_FAILED,
            )
        ttl = self._settings.download_url_ttl_seconds
        if variant == ORIGINAL:
            name = download_name(record.filename, record.content_type)
            url = self._reads.original_url(
                image_id, record.content_type, content_disposition(name), ttl
            )
        else:
            made = self._json.variants(image_id, _variants_item(record))[variant]
            if made["url"] is None:
                why = f": {made['reason']}" if made["reason"] else ", retry in a few seconds"
                raise Conflict(
                    f"The {variant} is {made['status']}{why}", code=Code.VARIANT_NOT_READY
                )
            url = self._reads.variant_urls([made["url"]], ttl)[0]
        return DownloadLink(url=url, expires_at=self._clock() + timedelta(seconds=ttl))

    def cdn_cookies(self, user_id: str) -> SignedCookies:
        """Cookies that let a browser read the user's objects, and only theirs, through
        the CDN: the policy's resource is the user's prefix."""
        cdn = self._storage.cdn
        if cdn is None or not self._settings.cdn_cookies:
            raise Conflict(
                "This deployment offers no CDN cookies: read through the URLs images carry",
                code=Code.CDN_COOKIES_OFF,
            )
        return cdn.cookies(self._owners(user_id), self._settings.cdn_cookie_ttl_seconds)

    def list(self, user_id: str, query: ListQuery) -> dict[str, Any]:
        """One page, as the JSON of ImageList (built directly from the items)."""
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
        now = int(self._clock().timestamp())
        marked = self._table.mark_deleting(
            image_id, user_id, due_at=now + self._settings.finish_grace_seconds
        )
        if marked is not None:
            finish_delete(self._storage, marked, now)


def _variants_item(record: ImageRecord) -> dict[str, Any]:
    """A record's variants as its item holds them (what JsonShape reads)."""
    return to_item(record).get("variants", {"M": {}})["M"]  # type: ignore[return-value]


def _refuse_infected(record: ImageRecord) -> None:
    if record.status == Status.INFECTED:
        raise image_infected(record.reason)
