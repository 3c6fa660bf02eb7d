"""Looking straight into the table and the bucket, to check what the API left behind."""

from typing import Any

from app.config import Settings
from app.storage.clients import AwsClients
from app.storage.items import object_key


def record(clients: AwsClients, settings: Settings, image_id: str) -> dict[str, Any] | None:
    item: dict[str, Any] | None = clients.dynamodb.get_item(
        TableName=settings.table, Key={"image_id": {"S": image_id}}
    ).get("Item")
    return item


def has_object(clients: AwsClients, settings: Settings, image_id: str) -> bool:
    listing = clients.s3.list_objects_v2(Bucket=settings.bucket, Prefix=object_key(image_id))
    return listing.get("KeyCount", 0) > 0


def stored(clients: AwsClients, settings: Settings, image_id: str) -> tuple[bool, bool]:
    """(record exists, object exists)."""
    return (
        record(clients, settings, image_id) is not None,
        has_object(clients, settings, image_id),
    )


def usage(clients: AwsClients, settings: Settings, user: str) -> tuple[int, int]:
    """(ready images, their bytes) as the quota counters say."""
    item = record(clients, settings, f"usage#{user}") or {}
    return int(item.get("images", {}).get("N", 0)), int(item.get("bytes", {}).get("N", 0))


def tags(clients: AwsClients, settings: Settings, image_id: str) -> list[dict[str, str]]:
    response = clients.s3.get_object_tagging(Bucket=settings.bucket, Key=object_key(image_id))
    return [{"Key": tag["Key"], "Value": tag["Value"]} for tag in response["TagSet"]]
