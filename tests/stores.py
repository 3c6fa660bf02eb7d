"""Looking straight into the table and the bucket, to check what the API left behind."""

from dataclasses import dataclass
from typing import Any

from app.config import Settings
from app.pipeline.notifications import Uploaded
from app.storage.clients import AwsClients
from app.storage.items import object_key


@dataclass(frozen=True)
class Stores:
    """The app's own table and bucket, read (and, for TTL, changed) as AWS holds them."""

    clients: AwsClients
    settings: Settings

    def record(self, image_id: str) -> dict[str, Any] | None:
        item: dict[str, Any] | None = self.clients.dynamodb.get_item(
            TableName=self.settings.table, Key={"image_id": {"S": image_id}}
        ).get("Item")
        return item

    def has_object(self, image_id: str) -> bool:
        listing = self.clients.s3.list_objects_v2(
            Bucket=self.settings.bucket, Prefix=object_key(image_id)
        )
        return listing.get("KeyCount", 0) > 0

    def etag(self, image_id: str) -> str:
        """The ETag of the original's bytes, as S3 announces it to the worker."""
        head = self.clients.s3.head_object(Bucket=self.settings.bucket, Key=object_key(image_id))
        return str(head["ETag"])

    def announced(self, image_id: str) -> Uploaded:
        """What S3's notification of this image's current bytes tells the worker."""
        return Uploaded(image_id, self.etag(image_id))

    def keys(self) -> list[str]:
        """Every key in the bucket: originals and variants."""
        listing = self.clients.s3.list_objects_v2(Bucket=self.settings.bucket)
        return sorted(item["Key"] for item in listing.get("Contents", []))

    def stored(self, image_id: str) -> tuple[bool, bool]:
        """(record exists, object exists)."""
        return self.record(image_id) is not None, self.has_object(image_id)

    def usage(self, user: str) -> tuple[int, int]:
        """(ready images, their bytes) as the quota counters say."""
        item = self.record(f"usage#{user}") or {}
        return int(item.get("images", {}).get("N", 0)), int(item.get("bytes", {}).get("N", 0))

    def tags(self, image_id: str) -> list[dict[str, str]]:
        response = self.clients.s3.get_object_tagging(
            Bucket=self.settings.bucket, Key=object_key(image_id)
        )
        return [{"Key": tag["Key"], "Value": tag["Value"]} for tag in response["TagSet"]]

    def fire_ttl(self, now: int) -> int:
        """What DynamoDB's TTL does (moto never does it): delete every item whose TTL
        attribute has passed, telling nobody. Returns how many it deleted. A Scan is fine
        here: this is the test standing in for AWS, not the service."""
        deleted = 0
        table = self.settings.table
        for page in self.clients.dynamodb.get_paginator("scan").paginate(TableName=table):
            for item in page["Items"]:
                if "expires_at" in item and int(item["expires_at"]["N"]) < now:
                    self.clients.dynamodb.delete_item(
                        TableName=table, Key={"image_id": item["image_id"]}
                    )
                    deleted += 1
        return deleted

    def sweep_index(self) -> list[str]:
        """Ids of the records the sweep still has work on."""
        pages = self.clients.dynamodb.get_paginator("scan").paginate(
            TableName=self.settings.table, IndexName="sweep_shard-due_at"
        )
        return sorted(item["image_id"]["S"] for page in pages for item in page["Items"])
