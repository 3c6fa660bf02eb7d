"""The images table and bucket: each method is one or two AWS calls, no more."""

import random
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, cast

from botocore.exceptions import ClientError

from app.config import Settings
from app.errors import TooLarge, TooMany, Unavailable, image_not_found
from app.models import ImageRecord
from app.storage.clients import AwsClients, aws_call, error_code
from app.storage.resources import (
    GSI_NAME,
    PENDING_TAG,
    SWEEP_GSI_NAME,
    TTL_ATTRIBUTE,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import (
        AttributeValueTypeDef,
        ConditionCheckTypeDef,
        DeleteTypeDef,
        UpdateTypeDef,
    )

Item = dict[str, "AttributeValueTypeDef"]

# --- Condition expressions: every write states what it expects to find. ----------------

# A new image must not overwrite an existing one (uuid4 collisions are astronomically
# rare, but a silent overwrite would hand one user's record to another).
NEW_ID_ONLY = "attribute_not_exists(image_id)"
# Confirm flips pending -> ready for the owner only, before the upload's deadline. A
# record being deleted (or swept) is no longer pending, so a confirm racing a delete
# cannot bring the image back.
OWNED_PENDING_IN_TIME = f"user_id = :user AND #status = :pending AND {TTL_ATTRIBUTE} > :now"
# Delete step 1 marks any of the caller's records; a missing or foreign one fails the
# condition, which is how another user's image stays untouched (and DELETE stays 204).
OWNED = "user_id = :user"
# The sweep marks only what is abandoned: a pending upload past its deadline, or a
# delete that was interrupted and never retried.
ABANDONED = (
    f"user_id = :user AND (#status = :deleting OR (#status = :pending AND {TTL_ATTRIBUTE} < :now))"
)
# Delete step 3 removes only a record that step 1 marked, never one re-created since.
OWNED_AND_DELETING = "user_id = :user AND #status = :deleting"
# Quotas, kept in one usage item per user. A user with no item yet has used nothing.
WITHIN_IMAGE_QUOTA = "attribute_not_exists(images) OR (images < :max_images AND bytes <= :room)"
# Uploads started in the current window, one counter item per user and window.
WITHIN_UPLOAD_RATE = "attribute_not_exists(started) OR started < :max_uploads"


def object_key(image_id: str) -> str:
    """Server-chosen key: never derived from the client's filename."""
    return f"images/{image_id}"


# Bookkeeping items share the table; '#' cannot occur in an image id, and they carry no
# user_id, so they never appear in the listing index.
def _usage_key(user_id: str) -> Item:
    return {"image_id": {"S": f"usage#{user_id}"}}


def _window_key(user_id: str, window_start: int) -> Item:
    return {"image_id": {"S": f"uploads#{user_id}#{window_start}"}}


@dataclass(frozen=True, slots=True)
class Quotas:
    max_images: int
    max_bytes: int
    max_uploads_per_window: int
    window_seconds: int

    def window_start(self, now: int) -> int:
        return now - now % self.window_seconds


@dataclass(frozen=True, slots=True)
class ObjectHead:
    """The first bytes of an uploaded object and what S3 says about the whole."""

    data: bytes
    total_size: int
    content_type: str


@dataclass(frozen=True, slots=True)
class ListFilter:
    status: str
    content_type: str | None = None
    tag: str | None = None
    created_from: str | None = None
    created_to: str | None = None

    @property
    def narrows_beyond_status(self) -> bool:
        return self.content_type is not None or self.tag is not None


ListPosition = tuple[str, str]  # (created_at, image_id) of the last item handed out


def _to_item(record: ImageRecord, expires_at: int | None) -> Item:
    item: Item = {
        "image_id": {"S": record.id},
        "user_id": {"S": record.user_id},
        "created_at": {"S": record.created_at},
        "filename": {"S": record.filename},
        "content_type": {"S": record.content_type},
        "size": {"N": str(record.size)},
        "status": {"S": record.status},
        "tags": {"L": [{"S": tag} for tag in record.tags]},
    }
    if record.title is not None:
        item["title"] = {"S": record.title}
    if record.description is not None:
        item["description"] = {"S": record.description}
    if expires_at is not None:
        item[TTL_ATTRIBUTE] = {"N": str(expires_at)}
        item["sweep_shard"] = {"S": record.id[0]}
    return item


def _from_item(item: dict[str, Any]) -> ImageRecord:
    def text(name: str) -> str | None:
        value = item.get(name)
        return None if value is None else str(value["S"])

    def number(name: str) -> int | None:
        value = item.get(name)
        return None if value is None else int(value["N"])

    return ImageRecord(
        id=item["image_id"]["S"],
        user_id=item["user_id"]["S"],
        filename=item["filename"]["S"],
        content_type=item["content_type"]["S"],
        size=int(item["size"]["N"]),
        status=item["status"]["S"],
        created_at=item["created_at"]["S"],
        title=text("title"),
        description=text("description"),
        tags=[tag["S"] for tag in item.get("tags", {}).get("L", [])],
        uploaded_at=text("uploaded_at"),
        width=number("width"),
        height=number("height"),
    )


PENDING_TAGGING = "=".join(PENDING_TAG)
_CONTENT_RANGE = re.compile(r"^bytes \d+-\d+/(\d+)$")


def _cancellation(exc: ClientError) -> list[dict[str, Any]]:
    reasons: list[dict[str, Any]] = exc.response.get("CancellationReasons", [])  # type: ignore[assignment]
    return reasons


def _reasons(exc: ClientError) -> str:
    return ",".join(str(reason.get("Code")) for reason in _cancellation(exc))


def _failed(reasons: list[dict[str, Any]], index: int) -> bool:
    return len(reasons) > index and reasons[index].get("Code") == "ConditionalCheckFailed"


# Concurrent transactions on one item (a user's usage item, their upload counter)
# cancel each other with TransactionConflict, and botocore does not retry those. A
# cancelled transaction applied nothing, so trying again is safe.
CONFLICT_RETRIES = 3


def _conflicted(exc: ClientError) -> bool:
    return error_code(exc) == "TransactionCanceledException" and any(
        reason.get("Code") == "TransactionConflict" for reason in _cancellation(exc)
    )


class ImageStore:
    def __init__(self, clients: AwsClients, settings: Settings) -> None:
        self._clients = clients
        self._table = settings.table
        self._bucket = settings.bucket
        self.quotas = Quotas(
            max_images=settings.max_images_per_user,
            max_bytes=settings.max_bytes_per_user,
            max_uploads_per_window=settings.max_uploads_per_window,
            window_seconds=settings.upload_window_seconds,
        )

    # --- DynamoDB --------------------------------------------------------------------

    def _transact(self, items: list[Any]) -> None:
        for attempt in range(CONFLICT_RETRIES + 1):
            try:
                self._clients.dynamodb.transact_write_items(TransactItems=items)
            except ClientError as exc:
                if not _conflicted(exc) or attempt == CONFLICT_RETRIES:
                    raise
                time.sleep(random.uniform(0.005, 0.02) * 2**attempt)  # noqa: S311 - jitter
            else:
                return

    def _quota_error(self, usage: dict[str, Any] | None, size: int) -> Exception:
        images = int(usage["images"]["N"]) if usage and "images" in usage else 0
        if images >= self.quotas.max_images:
            return TooMany(f"Image quota reached: {self.quotas.max_images} images per user")
        return TooLarge(
            f"Storage quota exceeded: {size} more bytes would pass "
            f"{self.quotas.max_bytes} bytes per user"
        )

    def _quota_check(self, user_id: str, size: int) -> dict[str, Any]:
        return {
            "TableName": self._table,
            "Key": _usage_key(user_id),
            "ConditionExpression": WITHIN_IMAGE_QUOTA,
            "ExpressionAttributeValues": {
                ":max_images": {"N": str(self.quotas.max_images)},
                ":room": {"N": str(self.quotas.max_bytes - size)},
            },
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }

    def put_pending(self, record: ImageRecord, expires_at: int, now: int) -> None:
        """Write the pending record, check quotas and count the upload: one transaction."""
        window = self.quotas.window_start(now)
        window_end = window + self.quotas.window_seconds
        with aws_call():
            try:
                self._transact(
                    [
                        {
                            "Put": {
                                "TableName": self._table,
                                "Item": _to_item(record, expires_at),
                                "ConditionExpression": NEW_ID_ONLY,
                            }
                        },
                        {
                            "ConditionCheck": cast(
                                "ConditionCheckTypeDef",
                                self._quota_check(record.user_id, record.size),
                            )
                        },
                        {
                            "Update": {
                                "TableName": self._table,
                                "Key": _window_key(record.user_id, window),
                                "UpdateExpression": f"ADD started :one SET {TTL_ATTRIBUTE} = :end",
                                "ConditionExpression": WITHIN_UPLOAD_RATE,
                                "ExpressionAttributeValues": {
                                    ":one": {"N": "1"},
                                    ":end": {"N": str(window_end)},
                                    ":max_uploads": {"N": str(self.quotas.max_uploads_per_window)},
                                },
                            }
                        },
                    ]
                )
            except ClientError as exc:
                if error_code(exc) != "TransactionCanceledException":
                    raise
                reasons = _cancellation(exc)
                if _failed(reasons, 1):
                    raise self._quota_error(reasons[1].get("Item"), record.size) from exc
                if _failed(reasons, 2):
                    raise TooMany(
                        f"Upload limit reached: {self.quotas.max_uploads_per_window} uploads "
                        f"per {self.quotas.window_seconds} s",
                        headers={"Retry-After": str(max(1, window_end - now))},
                    ) from exc
                raise Unavailable(f"Could not create the image, retry ({_reasons(exc)})") from exc

    def get(self, image_id: str) -> ImageRecord | None:
        with aws_call():
            response = self._clients.dynamodb.get_item(
                TableName=self._table,
                Key={"image_id": {"S": image_id}},
                # Read-your-writes: a client that just created or confirmed must see it.
                ConsistentRead=True,
            )
        item = response.get("Item")
        return None if item is None else _from_item(item)

    def mark_ready(
        self, record: ImageRecord, uploaded_at: str, width: int, height: int, now: int
    ) -> ImageRecord:
        """pending -> ready and count it against the owner's quota, atomically.

        A lost race returns the winner's ready record; an upload past its deadline or
        being deleted is NotFound; a full quota is TooMany/TooLarge (still pending).
        """
        usage = self._quota_check(record.user_id, record.size)
        usage["UpdateExpression"] = "ADD images :one, bytes :size"
        usage["ExpressionAttributeValues"] |= {
            ":one": {"N": "1"},
            ":size": {"N": str(record.size)},
        }
        with aws_call():
            try:
                self._transact(
                    [
                        {
                            "Update": {
                                "TableName": self._table,
                                "Key": {"image_id": {"S": record.id}},
                                "UpdateExpression": (
                                    "SET #status = :ready, uploaded_at = :at, width = :w, "
                                    f"height = :h REMOVE {TTL_ATTRIBUTE}, sweep_shard"
                                ),
                                "ConditionExpression": OWNED_PENDING_IN_TIME,
                                "ExpressionAttributeNames": {"#status": "status"},
                                "ExpressionAttributeValues": {
                                    ":user": {"S": record.user_id},
                                    ":pending": {"S": "pending"},
                                    ":now": {"N": str(now)},
                                    ":ready": {"S": "ready"},
                                    ":at": {"S": uploaded_at},
                                    ":w": {"N": str(width)},
                                    ":h": {"N": str(height)},
                                },
                                # The loser of a race learns the winner's state in the same
                                # round trip instead of paying for another GetItem.
                                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                            }
                        },
                        {"Update": cast("UpdateTypeDef", usage)},
                    ]
                )
            except ClientError as exc:
                if error_code(exc) != "TransactionCanceledException":
                    raise
                reasons = _cancellation(exc)
                if _failed(reasons, 0):
                    current = reasons[0].get("Item")
                    if current and current["user_id"]["S"] == record.user_id:
                        winner = _from_item(current)
                        if winner.status == "ready":
                            return winner
                    raise image_not_found() from exc
                if _failed(reasons, 1):
                    raise self._quota_error(reasons[1].get("Item"), record.size) from exc
                raise Unavailable(f"Could not confirm the image, retry ({_reasons(exc)})") from exc
        return replace(record, status="ready", uploaded_at=uploaded_at, width=width, height=height)

    def mark_deleting(
        self, image_id: str, user_id: str, expires_at: int, abandoned_before: int | None = None
    ) -> ImageRecord | None:
        """Hide the image from every read. None when it is missing or not the caller's
        (or, for the sweep, not abandoned before `abandoned_before`)."""
        values: dict[str, AttributeValueTypeDef] = {
            ":user": {"S": user_id},
            ":deleting": {"S": "deleting"},
            ":exp": {"N": str(expires_at)},
            ":shard": {"S": image_id[:1]},
        }
        if abandoned_before is not None:
            values[":pending"] = {"S": "pending"}
            values[":now"] = {"N": str(abandoned_before)}
        with aws_call():
            try:
                response = self._clients.dynamodb.update_item(
                    TableName=self._table,
                    Key={"image_id": {"S": image_id}},
                    # The sweep (or the TTL) finishes the marker if the client never retries.
                    UpdateExpression=(
                        f"SET #status = :deleting, {TTL_ATTRIBUTE} = :exp, sweep_shard = :shard"
                    ),
                    ConditionExpression=OWNED if abandoned_before is None else ABANDONED,
                    ExpressionAttributeNames={"#status": "status"},
                    ExpressionAttributeValues=values,
                    ReturnValues="ALL_NEW",
                )
            except ClientError as exc:
                if error_code(exc) == "ConditionalCheckFailedException":
                    return None
                raise
        return _from_item(response["Attributes"])

    def delete_record(self, record: ImageRecord) -> None:
        """Remove a marked record; if it was confirmed, give its quota back in the same
        transaction, so the usage counters change exactly once however often we retry."""
        delete: dict[str, Any] = {
            "TableName": self._table,
            "Key": {"image_id": {"S": record.id}},
            "ConditionExpression": OWNED_AND_DELETING,
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {
                ":user": {"S": record.user_id},
                ":deleting": {"S": "deleting"},
            },
        }
        with aws_call():
            try:
                if record.uploaded_at is None:  # never confirmed: never counted
                    self._clients.dynamodb.delete_item(**delete)
                    return
                self._transact(
                    [
                        {"Delete": cast("DeleteTypeDef", delete)},
                        {
                            "Update": {
                                "TableName": self._table,
                                "Key": _usage_key(record.user_id),
                                "UpdateExpression": "ADD images :minus_one, bytes :minus_size",
                                "ExpressionAttributeValues": {
                                    ":minus_one": {"N": "-1"},
                                    ":minus_size": {"N": str(-record.size)},
                                },
                            }
                        },
                    ]
                )
            except ClientError as exc:
                code = error_code(exc)
                # Already gone (a concurrent delete finished first): the goal is reached.
                already_gone = code == "ConditionalCheckFailedException" or (
                    code == "TransactionCanceledException" and _failed(_cancellation(exc), 0)
                )
                if not already_gone:
                    raise

    def abandoned(self, shard: str, now: int) -> Iterator[ImageRecord]:
        """Pending uploads past their deadline and stalled deletes, in one shard."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": SWEEP_GSI_NAME,
            "KeyConditionExpression": f"sweep_shard = :shard AND {TTL_ATTRIBUTE} < :now",
            "ExpressionAttributeValues": {":shard": {"S": shard}, ":now": {"N": str(now)}},
        }
        while True:
            with aws_call():
                response = self._clients.dynamodb.query(**request)
            yield from (_from_item(item) for item in response["Items"])
            if "LastEvaluatedKey" not in response:
                return
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def query(
        self,
        user_id: str,
        where: ListFilter,
        limit: int,
        start: ListPosition | None,
        read_budget: int,
    ) -> tuple[list[ImageRecord], ListPosition | None]:
        """Newest first, `limit` matching records and where to resume (None: no more).

        Filters are applied by DynamoDB after reading, so a page may need several Queries;
        `read_budget` bounds the items read. Unfiltered, one Query of limit+1 items both
        fills the page and tells whether another page exists.
        """
        names = {"#status": "status"}
        values: dict[str, AttributeValueTypeDef] = {
            ":user": {"S": user_id},
            ":status": {"S": where.status},
        }
        key_condition = "user_id = :user"
        if where.created_from and where.created_to:
            key_condition += " AND created_at BETWEEN :from AND :to"
        elif where.created_from:
            key_condition += " AND created_at >= :from"
        elif where.created_to:
            key_condition += " AND created_at <= :to"
        if where.created_from:
            values[":from"] = {"S": where.created_from}
        if where.created_to:
            values[":to"] = {"S": where.created_to}
        conditions = ["#status = :status"]
        if where.content_type:
            conditions.append("content_type = :ctype")
            values[":ctype"] = {"S": where.content_type}
        if where.tag:
            conditions.append("contains(tags, :tag)")
            values[":tag"] = {"S": where.tag}

        wanted = limit + 1
        batch = wanted * 4 if where.narrows_beyond_status else wanted
        exclusive_start: dict[str, Any] | None = None
        if start:
            exclusive_start = {
                "user_id": {"S": user_id},
                "created_at": {"S": start[0]},
                "image_id": {"S": start[1]},
            }
        found: list[dict[str, Any]] = []
        read = 0
        while True:
            request: dict[str, Any] = {
                "TableName": self._table,
                "IndexName": GSI_NAME,
                "KeyConditionExpression": key_condition,
                "FilterExpression": " AND ".join(conditions),
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
                "ScanIndexForward": False,
                "Limit": min(batch, read_budget - read),
            }
            if exclusive_start:
                request["ExclusiveStartKey"] = exclusive_start
            with aws_call():
                response = self._clients.dynamodb.query(**request)
            read += response["ScannedCount"]
            found.extend(response["Items"])
            if len(found) >= wanted:
                page = [_from_item(item) for item in found[:limit]]
                return page, (page[-1].created_at, page[-1].id)
            last = response.get("LastEvaluatedKey")
            if not last:
                return [_from_item(item) for item in found], None
            if read >= read_budget:
                # Out of budget with a short page: resume after the last item *read*, so
                # the next request continues the scan instead of repeating it.
                return [_from_item(item) for item in found], (
                    str(last["created_at"]["S"]),
                    str(last["image_id"]["S"]),
                )
            exclusive_start = last
            batch *= 2

    # --- S3 --------------------------------------------------------------------------

    def read_head(self, image_id: str, max_bytes: int) -> ObjectHead | None:
        """The object's first `max_bytes`, its total size and type; None if not uploaded.

        One ranged GET does the work of HeadObject + GetObject: Content-Range carries the
        total size, and the whole object is never read.
        """
        with aws_call():
            try:
                response = self._clients.s3.get_object(
                    Bucket=self._bucket, Key=object_key(image_id), Range=f"bytes=0-{max_bytes - 1}"
                )
            except ClientError as exc:
                code = error_code(exc)
                if code in ("NoSuchKey", "404"):
                    return None
                if code == "InvalidRange":  # a zero-byte object has no byte 0
                    return ObjectHead(b"", 0, "")
                raise
            with response["Body"] as body:
                data = body.read(max_bytes)
        match = _CONTENT_RANGE.match(response.get("ContentRange", ""))
        total = int(match.group(1)) if match else response["ContentLength"]
        return ObjectHead(data, total, response.get("ContentType", ""))

    def tag_confirmed(self, image_id: str) -> bool:
        """Retag the object `state=ready`, out of the lifecycle rule's reach, before the
        record says ready: the other order could leave a ready image whose bytes expire
        tomorrow. False if the object is gone (a concurrent delete got there first)."""
        key, _ = PENDING_TAG
        with aws_call():
            try:
                self._clients.s3.put_object_tagging(
                    Bucket=self._bucket,
                    Key=object_key(image_id),
                    Tagging={"TagSet": [{"Key": key, "Value": "ready"}]},
                )
            except ClientError as exc:
                if error_code(exc) in ("NoSuchKey", "404"):
                    return False
                raise
        return True

    def put_object(self, image_id: str, data: bytes, content_type: str) -> None:
        """What a client's presigned PUT does, for bytes the service received itself."""
        with aws_call():
            self._clients.s3.put_object(
                Bucket=self._bucket,
                Key=object_key(image_id),
                Body=data,
                ContentType=content_type,
                Tagging=PENDING_TAGGING,
            )

    def delete_object(self, image_id: str) -> None:
        # DeleteObject succeeds for a missing key, which makes retries free of special cases.
        with aws_call():
            self._clients.s3.delete_object(Bucket=self._bucket, Key=object_key(image_id))

    def presign_put(self, image_id: str, content_type: str, size: int, expires_in: int) -> str:
        # Content-Type and Content-Length are signed (X-Amz-SignedHeaders), so S3 itself
        # refuses a PUT of another type or size; presigning is local, no round trip.
        return self._clients.s3_presign.generate_presigned_url(
            "put_object",
            Params={
                "Bucket": self._bucket,
                "Key": object_key(image_id),
                "ContentType": content_type,
                "ContentLength": size,
                "Tagging": PENDING_TAGGING,
            },
            ExpiresIn=expires_in,
        )

    def presign_get(self, image_id: str, content_disposition: str, expires_in: int) -> str:
        return self._clients.s3_presign.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self._bucket,
                "Key": object_key(image_id),
                "ResponseContentDisposition": content_disposition,
            },
            ExpiresIn=expires_in,
        )
