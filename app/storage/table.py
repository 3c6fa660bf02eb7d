"""The images table: image records and each user's usage, each method one round trip."""

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from app.config import Settings
from app.errors import TooLarge, TooMany, Unavailable, image_not_found
from app.models import ImageRecord, Status
from app.storage.clients import AwsClients, aws_call, error_code
from app.storage.items import from_item, image_key, to_item, usage_key, window_key
from app.storage.resources import TTL_ATTRIBUTE
from app.storage.transactions import Refused, Transaction

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

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

_STATUS = {"#status": "status"}


@dataclass(frozen=True, slots=True)
class Quotas:
    max_images: int
    max_bytes: int
    max_uploads_per_window: int
    window_seconds: int

    def window_start(self, now: int) -> int:
        return now - now % self.window_seconds


class ImageTable:
    def __init__(self, clients: AwsClients, settings: Settings) -> None:
        self._clients = clients
        self._table = settings.table
        self.quotas = Quotas(
            max_images=settings.max_images_per_user,
            max_bytes=settings.max_bytes_per_user,
            max_uploads_per_window=settings.max_uploads_per_window,
            window_seconds=settings.upload_window_seconds,
        )

    def _transaction(self) -> Transaction:
        return Transaction(self._table)

    def _quota_error(self, usage: dict[str, Any] | None, size: int) -> Exception:
        images = int(usage["images"]["N"]) if usage and "images" in usage else 0
        if images >= self.quotas.max_images:
            return TooMany(f"Image quota reached: {self.quotas.max_images} images per user")
        return TooLarge(
            f"Storage quota exceeded: {size} more bytes would pass "
            f"{self.quotas.max_bytes} bytes per user"
        )

    def _quota(self, user_id: str, size: int) -> dict[str, Any]:
        return {
            "Key": usage_key(user_id),
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
        transaction = (
            self._transaction()
            .add(
                "record",
                "Put",
                Item=to_item(record, expires_at),
                ConditionExpression=NEW_ID_ONLY,
            )
            .add("quota", "ConditionCheck", **self._quota(record.user_id, record.size))
            .add(
                "upload_rate",
                "Update",
                Key=window_key(record.user_id, window),
                UpdateExpression=f"ADD started :one SET {TTL_ATTRIBUTE} = :end",
                ConditionExpression=WITHIN_UPLOAD_RATE,
                ExpressionAttributeValues={
                    ":one": {"N": "1"},
                    ":end": {"N": str(window_end)},
                    ":max_uploads": {"N": str(self.quotas.max_uploads_per_window)},
                },
            )
        )
        with aws_call():
            try:
                transaction.run(self._clients.dynamodb)
            except Refused as refused:
                if "quota" in refused.failed:
                    raise self._quota_error(refused.failed["quota"], record.size) from refused
                if "upload_rate" in refused.failed:
                    raise TooMany(
                        f"Upload limit reached: {self.quotas.max_uploads_per_window} uploads "
                        f"per {self.quotas.window_seconds} s",
                        headers={"Retry-After": str(max(1, window_end - now))},
                    ) from refused
                raise Unavailable("Could not create the image, retry") from refused

    def get(self, image_id: str) -> ImageRecord | None:
        with aws_call():
            response = self._clients.dynamodb.get_item(
                TableName=self._table,
                Key=image_key(image_id),
                # Read-your-writes: a client that just created or confirmed must see it.
                ConsistentRead=True,
            )
        item = response.get("Item")
        return None if item is None else from_item(item)

    def mark_ready(
        self, record: ImageRecord, uploaded_at: str, width: int, height: int, now: int
    ) -> ImageRecord:
        """pending -> ready and count it against the owner's quota, atomically.

        A lost race returns the winner's ready record; an upload past its deadline or
        being deleted is NotFound; a full quota is TooMany/TooLarge (still pending).
        """
        usage = self._quota(record.user_id, record.size)
        usage["UpdateExpression"] = "ADD images :one, bytes :size"
        usage["ExpressionAttributeValues"] |= {
            ":one": {"N": "1"},
            ":size": {"N": str(record.size)},
        }
        transaction = (
            self._transaction()
            .add(
                "record",
                "Update",
                Key=image_key(record.id),
                UpdateExpression=(
                    "SET #status = :ready, uploaded_at = :at, width = :w, "
                    f"height = :h REMOVE {TTL_ATTRIBUTE}, sweep_shard"
                ),
                ConditionExpression=OWNED_PENDING_IN_TIME,
                ExpressionAttributeNames=_STATUS,
                ExpressionAttributeValues={
                    ":user": {"S": record.user_id},
                    ":pending": {"S": Status.PENDING},
                    ":now": {"N": str(now)},
                    ":ready": {"S": Status.READY},
                    ":at": {"S": uploaded_at},
                    ":w": {"N": str(width)},
                    ":h": {"N": str(height)},
                },
                # The loser of a race learns the winner's state in the same round trip
                # instead of paying for another GetItem.
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            .add("quota", "Update", **usage)
        )
        with aws_call():
            try:
                transaction.run(self._clients.dynamodb)
            except Refused as refused:
                if "record" in refused.failed:
                    current = refused.failed["record"]
                    if current and current["user_id"]["S"] == record.user_id:
                        winner = from_item(current)
                        if winner.status == Status.READY:
                            return winner
                    raise image_not_found() from refused
                raise self._quota_error(refused.failed["quota"], record.size) from refused
        return replace(
            record, status=Status.READY, uploaded_at=uploaded_at, width=width, height=height
        )

    def mark_deleting(
        self, image_id: str, user_id: str, expires_at: int, abandoned_before: int | None = None
    ) -> ImageRecord | None:
        """Hide the image from every read. None when it is missing or not the caller's
        (or, for the sweep, not abandoned before `abandoned_before`)."""
        values: dict[str, AttributeValueTypeDef] = {
            ":user": {"S": user_id},
            ":deleting": {"S": Status.DELETING},
            ":exp": {"N": str(expires_at)},
            ":shard": {"S": image_id[:1]},
        }
        if abandoned_before is not None:
            values[":pending"] = {"S": Status.PENDING}
            values[":now"] = {"N": str(abandoned_before)}
        with aws_call():
            try:
                response = self._clients.dynamodb.update_item(
                    TableName=self._table,
                    Key=image_key(image_id),
                    # The sweep (or the TTL) finishes the marker if the client never retries.
                    UpdateExpression=(
                        f"SET #status = :deleting, {TTL_ATTRIBUTE} = :exp, sweep_shard = :shard"
                    ),
                    ConditionExpression=OWNED if abandoned_before is None else ABANDONED,
                    ExpressionAttributeNames=_STATUS,
                    ExpressionAttributeValues=values,
                    ReturnValues="ALL_NEW",
                )
            except ClientError as exc:
                if error_code(exc) == "ConditionalCheckFailedException":
                    return None
                raise
        return from_item(response["Attributes"])

    def delete_record(self, record: ImageRecord) -> None:
        """Remove a marked record; if it was confirmed, give its quota back in the same
        transaction, so the usage counters change exactly once however often we retry."""
        delete: dict[str, Any] = {
            "Key": image_key(record.id),
            "ConditionExpression": OWNED_AND_DELETING,
            "ExpressionAttributeNames": _STATUS,
            "ExpressionAttributeValues": {
                ":user": {"S": record.user_id},
                ":deleting": {"S": Status.DELETING},
            },
        }
        with aws_call():
            try:
                if record.uploaded_at is None:  # never confirmed: never counted
                    self._clients.dynamodb.delete_item(TableName=self._table, **delete)
                    return
                self._transaction().add("record", "Delete", **delete).add(
                    "usage",
                    "Update",
                    Key=usage_key(record.user_id),
                    UpdateExpression="ADD images :minus_one, bytes :minus_size",
                    ExpressionAttributeValues={
                        ":minus_one": {"N": "-1"},
                        ":minus_size": {"N": str(-record.size)},
                    },
                ).run(self._clients.dynamodb)
            except ClientError as exc:
                # Already gone (a concurrent delete finished first): the goal is reached.
                if error_code(exc) != "ConditionalCheckFailedException":
                    raise
            except Refused:
                pass  # the same, inside the transaction
