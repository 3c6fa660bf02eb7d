"""The one definition of bucket and table, applied idempotently."""

from app.config import Settings
from app.storage.clients import AwsClients
from app.storage.resources import GSI_NAME, SWEEP_GSI_NAME, ensure_resources


def test_ensure_resources_is_idempotent(clients: AwsClients, settings: Settings) -> None:
    ensure_resources(clients, settings)
    ensure_resources(clients, settings)

    tables = clients.dynamodb.list_tables()["TableNames"]
    buckets = [bucket["Name"] for bucket in clients.s3.list_buckets()["Buckets"]]
    assert tables.count(settings.table) == 1
    assert buckets.count(settings.bucket) == 1


def test_table_has_key_gsi_and_ttl(clients: AwsClients, settings: Settings) -> None:
    table = clients.dynamodb.describe_table(TableName=settings.table)["Table"]
    ttl = clients.dynamodb.describe_time_to_live(TableName=settings.table)

    assert table["TableStatus"] == "ACTIVE"
    assert table["KeySchema"] == [{"AttributeName": "image_id", "KeyType": "HASH"}]
    indexes = {gsi["IndexName"]: gsi["KeySchema"] for gsi in table["GlobalSecondaryIndexes"]}
    assert indexes == {
        GSI_NAME: [
            {"AttributeName": "user_id", "KeyType": "HASH"},
            {"AttributeName": "created_at", "KeyType": "RANGE"},
        ],
        SWEEP_GSI_NAME: [
            {"AttributeName": "sweep_shard", "KeyType": "HASH"},
            {"AttributeName": "due_at", "KeyType": "RANGE"},
        ],
    }
    assert ttl["TimeToLiveDescription"]["AttributeName"] == "expires_at"


def test_bucket_is_private_and_encrypted(clients: AwsClients, settings: Settings) -> None:
    block = clients.s3.get_public_access_block(Bucket=settings.bucket)
    encryption = clients.s3.get_bucket_encryption(Bucket=settings.bucket)

    assert all(block["PublicAccessBlockConfiguration"].values())
    assert len(block["PublicAccessBlockConfiguration"]) == 4
    rule = encryption["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"


def test_bucket_cors_allows_configured_origins_only(
    clients: AwsClients, settings: Settings
) -> None:
    (rule,) = clients.s3.get_bucket_cors(Bucket=settings.bucket)["CORSRules"]

    assert rule["AllowedOrigins"] == list(settings.cors_origins)
    assert set(rule["AllowedMethods"]) == {"GET", "PUT", "HEAD"}
    assert {"x-amz-tagging", "if-none-match"} <= set(rule["AllowedHeaders"])


def test_bucket_expires_unconfirmed_uploads(clients: AwsClients, settings: Settings) -> None:
    rules = clients.s3.get_bucket_lifecycle_configuration(Bucket=settings.bucket)["Rules"]

    pending = next(rule for rule in rules if rule["ID"] == "expire-unconfirmed-uploads")
    assert pending["Status"] == "Enabled"
    assert pending["Filter"] == {"Tag": {"Key": "state", "Value": "pending"}}
    # Later than any upload deadline (at most a day) plus the sweep's retag after confirm.
    assert pending["Expiration"] == {"Days": 2}
