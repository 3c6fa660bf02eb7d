"""The images table: image records, each user's usage and idempotency keys.

Every method is one round trip. Whatever changes a record's quota-relevant state changes
the owner's usage item in the same transaction, so counters move exactly once however
often a step is retried.
"""

from contextlib import suppress
from dataclasses import dataclass, replace
from enum import Enum
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from app.config import Settings
from app.domain.errors import image_infected, image_not_found
from app.domain.records import (
    ImageRecord,
    ScanState,
    ScanStatus,
    Status,
    VariantState,
    VariantStatus,
)
from app.storage.clients import (
    CONDITION_FAILED,
    AwsClients,
    aws_call,
    error_code,
    unless_refused,
)
from app.storage.items import (
    Key,
    bookmark_key,
    from_item,
    idempotency_key,
    image_key,
    scan_item,
    sweep_shard,
    to_item,
    usage_key,
    variants_item,
)
from app.storage.resources import DUE_ATTRIBUTE, TTL_ATTRIBUTE
from app.storage.transactions import Refused, Transaction

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

# --- Condition expressions: every write states what it expects to find. ----------------

# A new image must not overwrite an existing one (uuid4 collisions are astronomically
# rare, but a silent overwrite would hand one user's record to another).
NEW_ID_ONLY = "attribute_not_exists(image_id)"
# Starting an upload reserves its quota: an image and its bytes, and one of the user's
# unconfirmed-upload slots and their bytes. A user with no usage item has used nothing.
WITHIN_QUOTA = (
    "attribute_not_exists(image_id) OR (images < :max_images AND bytes <= :room"
    " AND pending < :max_pending AND pending_bytes <= :pending_room)"
)
# An Idempotency-Key is claimed once; an expired claim that DynamoDB's TTL has not yet
# deleted (it does so lazily) is free again.
KEY_UNCLAIMED = f"attribute_not_exists(image_id) OR {TTL_ATTRIBUTE} < :now"
# Confirm flips an unconfirmed record (pending, or rejected and uploaded again) to ready
# for its owner only, whenever its bytes are there: they can only have been PUT before
# the upload URL expired, which is never after the deadline. A record being deleted (or
# swept) is no longer unconfirmed, so a confirm racing a delete cannot bring it back.
OWNED_UNCONFIRMED = "user_id = :user AND #status IN (:pending, :rejected)"
# Delete step 1 marks any of the caller's records; a missing or foreign one fails the
# condition, which is how another user's image stays untouched (and DELETE stays 204).
OWNED = "user_id = :user"
# The sweep marks only what is abandoned: an upload past its deadline (the sweep has
# just seen that no bytes arrived), or a delete that was interrupted and never retried.
ABANDONED = (
    "user_id = :user AND (#status = :deleting OR "
    f"(#status IN (:pending, :rejected) AND {DUE_ATTRIBUTE} < :now))"
)
# Delete step 3 removes only a record that step 1 marked, never one re-created since.
OWNED_AND_DELETING = "user_id = :user AND #status = :deleting"
# A ready image leaves the sweep's index only while it is still ready (not being deleted).
STILL_READY = "#status = :ready"
# A scan's verdict lands only on the ready image whose bytes were scanned, and never
# over a verdict of malware (a clean rescan of other bytes could not be, they are gone).
SCANNED_READY = "#status = :ready AND NOT #scan.#status = :infected"
# Found infected: the record was ready (counted as such), so its quota goes back once.
INFECTED_READY = SCANNED_READY
# What OWNED_UNCONFIRMED and ABANDONED call unconfirmed.
_UNCONFIRMED_VALUES: dict[str, "AttributeValueTypeDef"] = {
    ":pending": {"S": Status.PENDING},
    ":rejected": {"S": Status.REJECTED},
}
# Reconcile overwrites usage only if nothing changed it since it was read.
USAGE_UNCHANGED = "attribute_not_exists(image_id) OR version = :version"

_STATUS = {"#status": "status"}
# `scan` is one of DynamoDB's reserved words: every expression names it through this.
_SCAN = {"#scan": "scan"}


@dataclass(frozen=True, slots=True)
class Usage:
    """One user's counters. Pending uploads count in `images` and `bytes` too."""

    images: int = 0
    bytes: int = 0
    pending: int = 0
    pending_bytes: int = 0
    version: int = 0
    changed_at: int = 0

    @classmethod
    def from_item(cls, item: dict[str, Any] | None) -> "Usage":
        item = item or {}
        return cls(
            **{
                name: int(item[name]["N"])
                for name in ("images", "bytes", "pending", "pending_bytes", "version", "changed_at")
                if name in item
            }
        )

    def counts(self) -> tuple[int, int, int, int]:
        return self.images, self.bytes, self.pending, self.pending_bytes


@dataclass(frozen=True, slots=True)
class IdempotencyClaim:
    key: Key
    fingerprint: str
    expires_at: int


class Recorded(Enum):
    """What became of a worker's variants."""

    RECORDED = "recorded"
    MADE_MEANWHILE = "made meanwhile"  # another delivery made them: its states stand
    GONE = "gone"  # the image was deleted meanwhile


class OverQuota(Exception):
    """The owner's usage (as it was) had no room for another upload of this size."""

    def __init__(self, usage: Usage) -> None:
        super().__init__(usage)
        self.usage = usage


class Replay(Exception):
    """The Idempotency-Key was already used: for `target`, with a request of `fingerprint`."""

    def __init__(self, target: str, fingerprint: str) -> None:
        super().__init__(target)
        self.target = target
        self.fingerprint = fingerprint


def _usage_change(
    user_id: str, images: int, size: int, pending: int, now: int, **extra: Any
) -> dict[str, Any]:
    """Update arguments that move a user's counters (and bump their version)."""
    return {
        "Key": usage_key(user_id),
        "UpdateExpression": (
            "ADD images :images, bytes :bytes, pending :pending, pending_bytes :pending_bytes,"
            " version :one SET changed_at = :changed"
        ),
        **extra,
        "ExpressionAttributeValues": {
            ":images": {"N": str(images)},
            ":bytes": {"N": str(images * size)},
            ":pending": {"N": str(pending)},
            ":pending_bytes": {"N": str(pending * size)},
            ":one": {"N": "1"},
            ":changed": {"N": str(now)},
            **extra.get("ExpressionAttributeValues", {}),
        },
    }


class ImageTable:
    def __init__(self, clients: AwsClients, settings: Settings) -> None:
        self._clients = clients
        self._table = settings.table
        self._settings = settings

    def _transaction(self) -> Transaction:
        return Transaction(self._table)

    def _run(self, transaction: Transaction) -> None:
        with aws_call():
            transaction.run(self._clients.dynamodb)

    # --- Image records -------------------------------------------------------------

    def reserve(self, record: ImageRecord, now: int, claim: IdempotencyClaim | None) -> None:
        """Write the pending record and reserve its quota (and claim the idempotency key):
        one transaction. Raises Replay if the key was claimed before, OverQuota if the
        owner's usage has no room for it."""
        limits = self._settings
        transaction = (
            self._transaction()
            .add(
                "record",
                "Put",
                Item=to_item(record),
                ConditionExpression=NEW_ID_ONLY,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            .add(
                "usage",
                "Update",
                **_usage_change(
                    record.user_id,
                    images=1,
                    size=record.size,
                    pending=1,
                    now=now,
                    ConditionExpression=WITHIN_QUOTA,
                    ExpressionAttributeValues={
                        ":max_images": {"N": str(limits.max_images_per_user)},
                        ":room": {"N": str(limits.max_bytes_per_user - record.size)},
                        ":max_pending": {"N": str(limits.max_pending_uploads)},
                        ":pending_room": {"N": str(limits.max_pending_bytes - record.size)},
                    },
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                ),
            )
        )
        if claim is not None:
            transaction.add(
                "idempotency",
                "Put",
                Item={
                    **claim.key,
                    "target": {"S": record.id},
                    "fingerprint": {"S": claim.fingerprint},
                    TTL_ATTRIBUTE: {"N": str(claim.expires_at)},
                },
                ConditionExpression=KEY_UNCLAIMED,
                ExpressionAttributeValues={":now": {"N": str(now)}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        try:
            self._run(transaction)
        except Refused as refused:
            if _is(refused.failed.get("record"), record):
                # Our own write, committed by an attempt whose answer was lost (DynamoDB
                # outside its token's ten minutes, or an emulator that ignores tokens):
                # all of the transaction landed then, so it has succeeded.
                return
            # A used key wins over a full quota: the first request already succeeded.
            if "idempotency" in refused.failed:
                used = refused.failed["idempotency"] or {}
                raise Replay(used["target"]["S"], used["fingerprint"]["S"]) from refused
            if "usage" in refused.failed:
                raise OverQuota(Usage.from_item(refused.failed["usage"])) from refused
            raise

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
        self,
        record: ImageRecord,
        uploaded_at: str,
        width: int,
        height: int,
        *,
        now: int,
        finish_by: int,
        scan: ScanState,
    ) -> ImageRecord:
        """unconfirmed -> ready, and the upload leaves the owner's pending counters:
        atomically. The record stays in the sweep's index until `release` says its
        follow-up is done.

        A lost race returns the winner's ready record; an upload being deleted (or gone)
        is NotFound. Quota was reserved at create, so it cannot refuse.
        """
        transaction = (
            self._transaction()
            .add(
                "record",
                "Update",
                Key=image_key(record.id),
                UpdateExpression=(
                    "SET #status = :ready, uploaded_at = :at, width = :w, height = :h, "
                    f"{DUE_ATTRIBUTE} = :finish_by, #scan = :scan REMOVE reason"
                ),
                ConditionExpression=OWNED_UNCONFIRMED,
                ExpressionAttributeNames={**_STATUS, **_SCAN},
                ExpressionAttributeValues={
                    ":user": {"S": record.user_id},
                    **_UNCONFIRMED_VALUES,
                    ":ready": {"S": Status.READY},
                    ":at": {"S": uploaded_at},
                    ":w": {"N": str(width)},
                    ":h": {"N": str(height)},
                    ":finish_by": {"N": str(finish_by)},
                    ":scan": scan_item(scan),
                },
                # The loser of a race learns the winner's state in the same round trip
                # instead of paying for another GetItem.
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            .add(
                "usage",
                "Update",
                **_usage_change(record.user_id, images=0, size=record.size, pending=-1, now=now),
            )
        )
        try:
            self._run(transaction)
        except Refused as refused:
            current = refused.failed.get("record")
            if current and current["user_id"]["S"] == record.user_id:
                winner = from_item(current)
                if winner.status == Status.READY:
                    return winner
                if winner.status == Status.INFECTED:
                    raise image_infected(winner.reason) from refused
            raise image_not_found() from refused
        return replace(
            record,
            status=Status.READY,
            uploaded_at=uploaded_at,
            width=width,
            height=height,
            due_at=finish_by,
            reason=None,
            scan=scan,
        )

    def mark_rejected(self, record: ImageRecord, reason: str, due_at: int) -> bool:
        """Say why the bytes were refused, and keep the upload open (for a PUT of valid
        bytes while the URL lives) until `due_at`. False unless the record is still
        unconfirmed: then the verdict concerns bytes nobody stands behind any more."""
        response = unless_refused(
            lambda: self._clients.dynamodb.update_item(
                TableName=self._table,
                Key=image_key(record.id),
                UpdateExpression=(
                    f"SET #status = :rejected, reason = :reason, {DUE_ATTRIBUTE} = :due, "
                    "sweep_shard = :shard"
                ),
                ConditionExpression=OWNED_UNCONFIRMED,
                ExpressionAttributeNames=_STATUS,
                ExpressionAttributeValues={
                    ":user": {"S": record.user_id},
                    **_UNCONFIRMED_VALUES,
                    ":reason": {"S": reason},
                    ":due": {"N": str(due_at)},
                    ":shard": {"S": sweep_shard(record.id)},
                },
            ),
            CONDITION_FAILED,
        )
        return response is not None

    def mark_scanned(self, record: ImageRecord, scan: ScanState) -> bool:
        """Record a scan's verdict (clean, or failed with its reason) on a ready image.
        False if it is not ready any more (deleted meanwhile) or was found infected."""
        response = unless_refused(
            lambda: self._clients.dynamodb.update_item(
                TableName=self._table,
                Key=image_key(record.id),
                UpdateExpression="SET #scan = :scan",
                ConditionExpression=SCANNED_READY,
                ExpressionAttributeNames={**_STATUS, **_SCAN},
                ExpressionAttributeValues={
                    ":ready": {"S": Status.READY},
                    ":infected": {"S": ScanStatus.INFECTED},
                    ":scan": scan_item(scan),
                },
            ),
            CONDITION_FAILED,
        )
        return response is not None

    def mark_infected(self, record: ImageRecord, scan: ScanState, now: int, due_at: int) -> bool:
        """ready -> infected, its quota given back, atomically; in the sweep's index until
        its objects are removed (`quarantined`). False if it was not ready (deleted
        meanwhile, or already found infected by another delivery)."""
        transaction = (
            self._transaction()
            .add(
                "record",
                "Update",
                Key=image_key(record.id),
                UpdateExpression=(
                    f"SET #status = :infected, #scan = :scan, reason = :reason, "
                    f"{DUE_ATTRIBUTE} = :due, sweep_shard = :shard"
                ),
                ConditionExpression=INFECTED_READY,
                ExpressionAttributeNames={**_STATUS, **_SCAN},
                ExpressionAttributeValues={
                    ":ready": {"S": Status.READY},
                    ":infected": {"S": ScanStatus.INFECTED},
                    ":scan": scan_item(scan),
                    ":reason": {"S": f"Malware found: {scan.signature}"},
                    ":due": {"N": str(due_at)},
                    ":shard": {"S": sweep_shard(record.id)},
                },
            )
            .add(
                "usage",
                "Update",
                **_usage_change(record.user_id, images=-1, size=record.size, pending=0, now=now),
            )
        )
        try:
            self._run(transaction)
        except Refused:
            return False
        return True

    def mark_told(self, image_id: str) -> None:
        """The operator has been told of this infected image's malware."""
        unless_refused(
            lambda: self._clients.dynamodb.update_item(
                TableName=self._table,
                Key=image_key(image_id),
                UpdateExpression="SET #scan.told = :told",
                ConditionExpression="#status = :infected",
                ExpressionAttributeNames={**_STATUS, **_SCAN},
                ExpressionAttributeValues={
                    ":infected": {"S": Status.INFECTED},
                    ":told": {"BOOL": True},
                },
            ),
            CONDITION_FAILED,
        )

    def quarantined(self, image_id: str) -> None:
        """An infected image's objects are gone: out of the sweep's index."""
        unless_refused(
            lambda: self._clients.dynamodb.update_item(
                TableName=self._table,
                Key=image_key(image_id),
                UpdateExpression=f"REMOVE sweep_shard, {DUE_ATTRIBUTE}",
                ConditionExpression="#status = :infected",
                ExpressionAttributeNames=_STATUS,
                ExpressionAttributeValues={":infected": {"S": Status.INFECTED}},
            ),
            CONDITION_FAILED,
        )

    def record_variants(
        self, image_id: str, variants: dict[str, VariantState], placeholder: str | None
    ) -> Recorded:
        """Store what the worker made and take the image out of the sweep's index, in one
        conditional update: only while the image is ready (GONE: deleted meanwhile, the
        caller removes what it wrote), and never a failure over a variant another
        delivery has made since (MADE_MEANWHILE: that one stands)."""
        names: dict[str, str] = dict(_STATUS)
        values: dict[str, AttributeValueTypeDef] = {
            ":ready": {"S": Status.READY},
            ":variants": variants_item(variants),
        }
        condition = STILL_READY
        failed = [name for name, state in variants.items() if state.status == VariantStatus.FAILED]
        if failed:
            values[":made"] = {"S": VariantStatus.READY}
        for n, name in enumerate(failed):
            names[f"#v{n}"] = name
            # A render that failed (out of its budget under load, say) must not undo one
            # that succeeded for another delivery of the same image.
            condition += f" AND NOT variants.#v{n}.#status = :made"
        expression = "SET variants = :variants"
        if placeholder is not None:
            expression += ", placeholder = :placeholder"
            values[":placeholder"] = {"S": placeholder}
        with aws_call():
            try:
                self._clients.dynamodb.update_item(
                    TableName=self._table,
                    Key=image_key(image_id),
                    UpdateExpression=f"{expression} REMOVE sweep_shard, {DUE_ATTRIBUTE}",
                    ConditionExpression=condition,
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=values,
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
            except ClientError as exc:
                if error_code(exc) != CONDITION_FAILED:
                    raise
                current: dict[str, Any] = exc.response.get("Item") or {}  # type: ignore[assignment]
                ready = current.get("status", {}).get("S") == Status.READY
                return Recorded.MADE_MEANWHILE if ready else Recorded.GONE
        return Recorded.RECORDED

    def release(self, image_id: str) -> bool:
        """Take a ready image out of the sweep's index though the worker has not reported
        its variants: they stay pending, work its message (or a redrive) still does."""
        return self._release(
            image_id, f"REMOVE sweep_shard, {DUE_ATTRIBUTE}", {":ready": {"S": Status.READY}}
        )

    def _release(
        self, image_id: str, expression: str, values: dict[str, "AttributeValueTypeDef"]
    ) -> bool:
        released = unless_refused(
            lambda: self._clients.dynamodb.update_item(
                TableName=self._table,
                Key=image_key(image_id),
                UpdateExpression=expression,
                ConditionExpression=STILL_READY,
                ExpressionAttributeNames=_STATUS,
                ExpressionAttributeValues=values,
            ),
            CONDITION_FAILED,
        )
        return released is not None

    def mark_deleting(
        self, image_id: str, user_id: str, due_at: int, abandoned_before: int | None = None
    ) -> ImageRecord | None:
        """Hide the image from every read and hand it to the sweep should this delete stop
        halfway. None when it is missing or not the caller's (or, for the sweep, not
        abandoned before `abandoned_before`)."""
        values: dict[str, AttributeValueTypeDef] = {
            ":user": {"S": user_id},
            ":deleting": {"S": Status.DELETING},
            ":due": {"N": str(due_at)},
            ":shard": {"S": sweep_shard(image_id)},
        }
        if abandoned_before is not None:
            values.update(_UNCONFIRMED_VALUES)
            values[":now"] = {"N": str(abandoned_before)}
        response = unless_refused(
            lambda: self._clients.dynamodb.update_item(
                TableName=self._table,
                Key=image_key(image_id),
                UpdateExpression=(
                    f"SET #status = :deleting, {DUE_ATTRIBUTE} = :due, sweep_shard = :shard"
                ),
                ConditionExpression=OWNED if abandoned_before is None else ABANDONED,
                ExpressionAttributeNames=_STATUS,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            ),
            CONDITION_FAILED,
        )
        return None if response is None else from_item(response["Attributes"])

    def delete_record(self, record: ImageRecord, now: int) -> None:
        """Remove a marked record and give its quota back in the same transaction."""
        transaction = (
            self._transaction()
            .add(
                "record",
                "Delete",
                Key=image_key(record.id),
                ConditionExpression=OWNED_AND_DELETING,
                ExpressionAttributeNames=_STATUS,
                ExpressionAttributeValues={
                    ":user": {"S": record.user_id},
                    ":deleting": {"S": Status.DELETING},
                },
            )
            .add(
                "usage",
                "Update",
                # An infected image gave its quota back when the malware was found.
                **_usage_change(
                    record.user_id,
                    images=0 if record.scan.status == ScanStatus.INFECTED else -1,
                    size=record.size,
                    pending=0 if record.was_confirmed else -1,
                    now=now,
                ),
            )
        )
        # Refused: already gone (a concurrent delete finished first), the goal is reached.
        with suppress(Refused):
            self._run(transaction)

    # --- Usage ---------------------------------------------------------------------

    def usage(self, user_id: str) -> Usage:
        with aws_call():
            item = self._clients.dynamodb.get_item(
                TableName=self._table, Key=usage_key(user_id), ConsistentRead=True
            ).get("Item")
        return Usage.from_item(item)

    def correct_usage(self, user_id: str, seen: Usage, counted: Usage, now: int) -> bool:
        """Overwrite the counters with `counted`, unless they changed since `seen` was read.
        False when they did (the caller should count again)."""
        images, size, pending, pending_bytes = counted.counts()
        corrected = unless_refused(
            lambda: self._clients.dynamodb.update_item(
                TableName=self._table,
                Key=usage_key(user_id),
                UpdateExpression=(
                    "SET images = :images, bytes = :bytes, pending = :pending, "
                    "pending_bytes = :pending_bytes, changed_at = :changed "
                    "ADD version :one"
                ),
                ConditionExpression=USAGE_UNCHANGED,
                ExpressionAttributeValues={
                    ":images": {"N": str(images)},
                    ":bytes": {"N": str(size)},
                    ":pending": {"N": str(pending)},
                    ":pending_bytes": {"N": str(pending_bytes)},
                    ":changed": {"N": str(now)},
                    ":one": {"N": "1"},
                    ":version": {"N": str(seen.version)},
                },
            ),
            CONDITION_FAILED,
        )
        return corrected is not None

    # --- Where a long task stopped (the sweep, the backfill) ---------------------------

    def bookmark(self, task: str) -> str | None:
        """Where `task`'s last run stopped, if it did."""
        with aws_call():
            item = self._clients.dynamodb.get_item(
                TableName=self._table, Key=bookmark_key(task), ConsistentRead=True
            ).get("Item")
        return item["position"]["S"] if item else None

    def save_bookmark(self, task: str, position: str | None) -> None:
        """Remember where `task` stopped; None: it finished, the next run starts over."""
        with aws_call():
            if position is None:
                self._clients.dynamodb.delete_item(TableName=self._table, Key=bookmark_key(task))
            else:
                self._clients.dynamodb.put_item(
                    TableName=self._table,
                    Item={**bookmark_key(task), "position": {"S": position}},
                )


def _is(item: dict[str, Any] | None, record: ImageRecord) -> bool:
    """Whether a stored item is this very record (its id, owner and moment of creation)."""
    return (
        item is not None
        and item["user_id"]["S"] == record.user_id
        and item["created_at"]["S"] == record.created_at
    )


def claim_for(user_id: str, key: str, fingerprint: str, expires_at: int) -> IdempotencyClaim:
    return IdempotencyClaim(idempotency_key(user_id, key), fingerprint, expires_at)
