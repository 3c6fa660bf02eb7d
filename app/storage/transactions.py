"""TransactWriteItems with named items, so a cancellation says which write refused."""

import random
import time
import uuid
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from app.domain.errors import Unavailable
from app.storage.clients import error_code

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# Concurrent transactions on one item (a user's usage item) cancel each other with
# TransactionConflict, and botocore does not retry those. A cancelled transaction
# applied nothing, so trying again is safe.
CONFLICT_RETRIES = 3


class Refused(Exception):
    """Some items' conditions failed; `failed` maps their names to the item as it was
    (when the write asked for it with ReturnValuesOnConditionCheckFailure)."""

    def __init__(self, failed: dict[str, dict[str, Any] | None]) -> None:
        super().__init__(", ".join(failed))
        self.failed = failed


class Transaction:
    def __init__(self, table: str) -> None:
        self._table = table
        self._names: list[str] = []
        self._items: list[dict[str, Any]] = []

    def add(self, name: str, kind: str, **request: Any) -> "Transaction":
        """`kind` is Put, Update, Delete or ConditionCheck; `request` its arguments."""
        if name in self._names:
            raise ValueError(f"two transaction items named {name!r}")
        self._names.append(name)
        self._items.append({kind: {"TableName": self._table, **request}})
        return self

    def run(self, dynamodb: "DynamoDBClient") -> None:
        """Apply all or nothing. Raises Refused when conditions failed, Unavailable when
        DynamoDB cancelled it for any other reason (throttling, conflicts past retries)."""
        for attempt in range(CONFLICT_RETRIES + 1):
            try:
                dynamodb.transact_write_items(
                    TransactItems=self._items,  # type: ignore[arg-type]
                    # botocore re-sends a request whose answer it lost (a read timeout
                    # after the commit) with this same token, which DynamoDB answers as
                    # the first success instead of failing its conditions on our own
                    # writes. A new one per attempt here: these follow a cancellation.
                    ClientRequestToken=uuid.uuid4().hex,
                )
            except ClientError as exc:
                if error_code(exc) != "TransactionCanceledException":
                    raise
                reasons: list[dict[str, Any]] = exc.response.get("CancellationReasons", [])  # type: ignore[assignment]
                failed = {
                    name: reason.get("Item")
                    for name, reason in zip(self._names, reasons, strict=False)
                    if reason.get("Code") == "ConditionalCheckFailed"
                }
                if failed:
                    raise Refused(failed) from exc
                conflicted = any(r.get("Code") == "TransactionConflict" for r in reasons)
                if not conflicted or attempt == CONFLICT_RETRIES:
                    codes = ",".join(str(r.get("Code")) for r in reasons)
                    raise Unavailable(f"Storage is busy, retry shortly ({codes})") from exc
                time.sleep(random.uniform(0.005, 0.02) * 2**attempt)  # noqa: S311 - jitter
            else:
                return
