"""Reading many records: a user's images through the listing index, newest first, and
the sweep's work through its sparse index. Queries only, never a Scan."""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.config import Settings
from app.domain.records import ImageRecord, Status
from app.storage.clients import AwsClients, aws_call
from app.storage.items import JsonShape, from_item
from app.storage.resources import DUE_ATTRIBUTE, GSI_NAME, SWEEP_GSI_NAME

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef


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
SweepPosition = dict[str, Any]  # DynamoDB's LastEvaluatedKey in the sweep's index


class ImageListing:
    def __init__(self, clients: AwsClients, settings: Settings) -> None:
        self._clients = clients
        self._table = settings.table
        self._json = JsonShape(settings.variants)

    def due(
        self, shard: str, now: int, limit: int, after: SweepPosition | None = None
    ) -> tuple[list[ImageRecord], SweepPosition | None]:
        """Up to `limit` records of one shard whose unfinished work is due, oldest first,
        and where the next batch starts (None: nothing more is due). The index is
        sparse: it holds nothing else."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": SWEEP_GSI_NAME,
            "KeyConditionExpression": f"sweep_shard = :shard AND {DUE_ATTRIBUTE} < :now",
            "ExpressionAttributeValues": {":shard": {"S": shard}, ":now": {"N": str(now)}},
            "Limit": limit,
        }
        if after is not None:
            request["ExclusiveStartKey"] = after
        with aws_call():
            response = self._clients.dynamodb.query(**request)
        records = [from_item(item) for item in response["Items"]]
        return records, response.get("LastEvaluatedKey")

    def owned_by(self, user_id: str) -> Iterator[ImageRecord]:
        """Every record of one user, in any state (for recounting their usage)."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": GSI_NAME,
            "KeyConditionExpression": "user_id = :user",
            "ExpressionAttributeValues": {":user": {"S": user_id}},
        }
        while True:
            with aws_call():
                response = self._clients.dynamodb.query(**request)
            yield from (from_item(item) for item in response["Items"])
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
    ) -> tuple[list[dict[str, Any]], ListPosition | None]:
        """Newest first, `limit` matching images as their JSON (JsonShape: a page is
        the hot path) and where to resume (None: no more).

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
        # What its owner reads as `rejected` is stored as rejected or infected.
        conditions = (
            ["#status IN (:status, :infected)"]
            if where.status == Status.REJECTED
            else ["#status = :status"]
        )
        if where.status == Status.REJECTED:
            values[":infected"] = {"S": Status.INFECTED}
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
        image = self._json.image
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
                page = [image(item) for item in found[:limit]]
                return page, (page[-1]["created_at"], page[-1]["id"])
            last = response.get("LastEvaluatedKey")
            if not last:
                return [image(item) for item in found], None
            if read >= read_budget:
                # Out of budget with a short page: resume after the last item *read*, so
                # the next request continues the scan instead of repeating it.
                return [image(item) for item in found], (
                    str(last["created_at"]["S"]),
                    str(last["image_id"]["S"]),
                )
            exclusive_start = last
            batch *= 2
