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


def fire_ttl(clients: AwsClients, settings: Settings, now: int) -> int:
    """What DynamoDB's TTL does (moto never does it): delete every item whose TTL
    attribute has passed, telling nobody. Returns how many it deleted. A Scan is fine
    here: this is the test standing in for AWS, not the service."""
    deleted = 0
    pages = clients.dynamodb.get_paginator("scan").paginate(TableName=settings.table)
    for page in pages:
        for item in page["Items"]:
            if "expires_at" in item and int(item["expires_at"]["N"]) < now:
                clients.dynamodb.delete_item(
                    TableName=settings.table, Key={"image_id": item["image_id"]}
                )
                deleted += 1
    return deleted


def sweep_index(clients: AwsClients, settings: Settings) -> list[str]:
    """Ids of the records the sweep still has work on."""
    pages = clients.dynamodb.get_paginator("scan").paginate(
        TableName=settings.table, IndexName="sweep_shard-due_at"
    )
    return sorted(item["image_id"]["S"] for page in pages for item in page["Items"])
