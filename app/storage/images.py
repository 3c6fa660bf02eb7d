"""The images table and bucket: each method is one or two AWS calls, no more."""

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from app.config import Settings
from app.errors import image_not_found
from app.models import ImageRecord
from app.storage.clients import AwsClients, aws_call, error_code
from app.storage.resources import GSI_NAME, TTL_ATTRIBUTE

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

Item = dict[str, "AttributeValueTypeDef"]

# --- Condition expressions: every write states what it expects to find. ----------------

# A new image must not overwrite an existing one (uuid4 collisions are astronomically
# rare, but a silent overwrite would hand one user's record to another).
NEW_ID_ONLY = "attribute_not_exists(image_id)"
# Confirm flips pending -> ready for the owner only. A record already being deleted is
# no longer pending, so a confirm racing a delete cannot bring the image back.
OWNED_AND_PENDING = "user_id = :user AND #status = :pending"
# Delete step 1 marks any of the caller's records; a missing or foreign one fails the
# condition, which is how another user's image stays untouched (and DELETE stays 204).
OWNED = "user_id = :user"
# Delete step 3 removes only a record that step 1 marked, never one re-created since.
OWNED_AND_DELETING = "user_id = :user AND #status = :deleting"


def object_key(image_id: str) -> str:
    """Server-chosen key: never derived from the client's filename."""
    return f"images/{image_id}"


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


_CONTENT_RANGE = re.compile(r"^bytes \d+-\d+/(\d+)$")


class ImageStore:
    def __init__(self, clients: AwsClients, settings: Settings) -> None:
        self._clients = clients
        self._table = settings.table
        self._bucket = settings.bucket

    # --- DynamoDB --------------------------------------------------------------------

    def put_pending(self, record: ImageRecord, expires_at: int) -> None:
        with aws_call():
            self._clients.dynamodb.put_item(
                TableName=self._table,
                Item=_to_item(record, expires_at),
                ConditionExpression=NEW_ID_ONLY,
            )

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
        self, image_id: str, user_id: str, uploaded_at: str, width: int, height: int
    ) -> ImageRecord:
        """pending -> ready; if a concurrent confirm won, its result; else NotFound."""
        with aws_call():
            try:
                response = self._clients.dynamodb.update_item(
                    TableName=self._table,
                    Key={"image_id": {"S": image_id}},
                    UpdateExpression=(
                        "SET #status = :ready, uploaded_at = :at, width = :w, height = :h "
                        f"REMOVE {TTL_ATTRIBUTE}"
                    ),
                    ConditionExpression=OWNED_AND_PENDING,
                    ExpressionAttributeNames={"#status": "status"},
                    ExpressionAttributeValues={
                        ":user": {"S": user_id},
                        ":pending": {"S": "pending"},
                        ":ready": {"S": "ready"},
                        ":at": {"S": uploaded_at},
                        ":w": {"N": str(width)},
                        ":h": {"N": str(height)},
                    },
                    ReturnValues="ALL_NEW",
                    # The loser of a race learns the winner's state in the same round
                    # trip instead of paying for another GetItem.
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
            except ClientError as exc:
                if error_code(exc) != "ConditionalCheckFailedException":
                    raise
                current: dict[str, Any] | None = exc.response.get("Item")  # type: ignore[assignment]
                if current and current["user_id"]["S"] == user_id:
                    winner = _from_item(current)
                    if winner.status == "ready":
                        return winner
                raise image_not_found() from exc
        return _from_item(response["Attributes"])

    def mark_deleting(self, image_id: str, user_id: str, expires_at: int) -> bool:
        """Hide the image from every read; False when it is missing or not the caller's."""
        with aws_call():
            try:
                self._clients.dynamodb.update_item(
                    TableName=self._table,
                    Key={"image_id": {"S": image_id}},
                    # The TTL reaps the marker even if the client never retries the delete.
                    UpdateExpression=f"SET #status = :deleting, {TTL_ATTRIBUTE} = :exp",
                    ConditionExpression=OWNED,
                    ExpressionAttributeNames={"#status": "status"},
                    ExpressionAttributeValues={
                        ":user": {"S": user_id},
                        ":deleting": {"S": "deleting"},
                        ":exp": {"N": str(expires_at)},
                    },
                )
            except ClientError as exc:
                if error_code(exc) == "ConditionalCheckFailedException":
                    return False
                raise
        return True

    def delete_record(self, image_id: str, user_id: str) -> None:
        with aws_call():
            try:
                self._clients.dynamodb.delete_item(
                    TableName=self._table,
                    Key={"image_id": {"S": image_id}},
                    ConditionExpression=OWNED_AND_DELETING,
                    ExpressionAttributeNames={"#status": "status"},
                    ExpressionAttributeValues={
                        ":user": {"S": user_id},
                        ":deleting": {"S": "deleting"},
                    },
                )
            except ClientError as exc:
                # Already gone (a concurrent delete finished first): the goal is reached.
                if error_code(exc) != "ConditionalCheckFailedException":
                    raise

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
