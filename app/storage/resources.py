"""The bucket, table and queues, defined once. `make run`, the tests,
`create_resource.sh` and the SAM template check all use these definitions, so local
and cloud cannot drift."""

import json
import logging
from typing import Any

from botocore.exceptions import ClientError

from app.config import Settings
from app.storage.clients import AwsClients, aws_call, error_code

log = logging.getLogger(__name__)

GSI_NAME = "user_id-created_at"
# Sparse: only records with unfinished work (pending uploads, deletes under way, ready
# images whose follow-up is not done) carry `sweep_shard`, so the sweep reads exactly
# what it must finish, never the whole table (no Scan).
SWEEP_GSI_NAME = "sweep_shard-due_at"
SWEEP_SHARDS = "0123456789abcdef"  # first hex digit of the image id: spreads the writes
DUE_ATTRIBUTE = "due_at"
# DynamoDB's TTL deletes items without telling anyone, so only items whose loss changes
# nothing carry it (idempotency keys); image records are removed by the sweep, which
# gives their quota back.
TTL_ATTRIBUTE = "expires_at"
# Set by the signed PUT, replaced by `state=ready` once the record is ready: the
# lifecycle rule reaps bytes never confirmed. Two days, so that it always comes after
# the upload deadline (at most one day) plus the sweep's retagging of a confirmed image.
PENDING_TAG = ("state", "pending")
PENDING_OBJECT_EXPIRY_DAYS = 2
# Every object is under u/<owner>/<image id>/ (app/storage/items.py); originals are
# named `original`, a name no variant may take. Only originals start the worker: the
# bucket notifies of keys with this prefix and suffix.
USERS_PREFIX = "u/"
ORIGINAL_NAME = "original"
# A message that fails this many times (a worker crash, a timeout) goes to the
# dead-letter queue instead of being retried forever.
MAX_RECEIVES = 5
# The worker function's timeout (template.yaml): a batch of renders, each at its whole
# budget (Settings.render_cpu_seconds, three times as long in wall-clock time), with
# room for reading and writing the images.
WORKER_TIMEOUT_SECONDS = 180
# SQS hides a message this long once received: six times the worker's timeout (AWS's
# advice for a Lambda trigger), so an image is never handed to a second worker while
# the first still works on it.
VISIBILITY_TIMEOUT_SECONDS = 6 * WORKER_TIMEOUT_SECONDS
DEAD_LETTER_RETENTION_SECONDS = 14 * 24 * 3600


def table_definition(settings: Settings) -> dict[str, Any]:
    """CreateTable arguments: key `image_id`, listing through the owner/time GSI."""
    return {
        "TableName": settings.table,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": "image_id", "AttributeType": "S"},
            {"AttributeName": "user_id", "AttributeType": "S"},
            {"AttributeName": "created_at", "AttributeType": "S"},
            {"AttributeName": "sweep_shard", "AttributeType": "S"},
            {"AttributeName": DUE_ATTRIBUTE, "AttributeType": "N"},
        ],
        "KeySchema": [{"AttributeName": "image_id", "KeyType": "HASH"}],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": GSI_NAME,
                "KeySchema": [
                    {"AttributeName": "user_id", "KeyType": "HASH"},
                    {"AttributeName": "created_at", "KeyType": "RANGE"},
                ],
                # ALL: a list page is served by the Query alone, with no GetItem per row.
                "Projection": {"ProjectionType": "ALL"},
            },
            {
                "IndexName": SWEEP_GSI_NAME,
                "KeySchema": [
                    {"AttributeName": "sweep_shard", "KeyType": "HASH"},
                    {"AttributeName": DUE_ATTRIBUTE, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            },
        ],
    }


def bucket_lifecycle() -> dict[str, Any]:
    key, value = PENDING_TAG
    return {
        "Rules": [
            {
                "ID": "expire-unconfirmed-uploads",
                "Status": "Enabled",
                "Filter": {"Tag": {"Key": key, "Value": value}},
                "Expiration": {"Days": PENDING_OBJECT_EXPIRY_DAYS},
            },
            {
                "ID": "abort-incomplete-multipart",
                "Status": "Enabled",
                "Filter": {"Prefix": ""},
                "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
            },
        ]
    }


def bucket_cors(settings: Settings) -> dict[str, Any]:
    return {
        "CORSRules": [
            {
                "AllowedOrigins": list(settings.cors_origins),
                "AllowedMethods": ["GET", "PUT", "HEAD"],
                # Exactly the headers the presigned PUT is signed with.
                "AllowedHeaders": [
                    "content-type",
                    "content-length",
                    "x-amz-tagging",
                    "if-none-match",
                ],
                "ExposeHeaders": ["ETag"],
                "MaxAgeSeconds": 3600,
            }
        ]
    }


def dead_letter_queue(settings: Settings) -> str:
    return f"{settings.queue}-dead"


def queue_attributes(dead_letter_arn: str) -> dict[str, str]:
    return {
        "VisibilityTimeout": str(VISIBILITY_TIMEOUT_SECONDS),
        "RedrivePolicy": json.dumps(
            {"deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": MAX_RECEIVES}
        ),
    }


def queue_policy(queue_arn: str, bucket: str) -> str:
    """S3 may send this bucket's events to this queue, and nobody else anything."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "BucketNotifications",
                    "Effect": "Allow",
                    "Principal": {"Service": "s3.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": queue_arn,
                    "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{bucket}"}},
                }
            ],
        }
    )


def bucket_notifications(queue_arn: str) -> dict[str, Any]:
    return {
        "QueueConfigurations": [
            {
                "Id": "uploads-to-worker",
                "QueueArn": queue_arn,
                "Events": ["s3:ObjectCreated:*"],
                "Filter": {
                    "Key": {
                        "FilterRules": [
                            {"Name": "prefix", "Value": USERS_PREFIX},
                            {"Name": "suffix", "Value": f"/{ORIGINAL_NAME}"},
                        ]
                    }
                },
            }
        ]
    }


def _ensure_queues(clients: AwsClients, settings: Settings) -> str:
    """Create (or re-configure) the uploads queue and its dead-letter queue; its ARN."""
    sqs = clients.sqs

    def arn(name: str, attributes: dict[str, str] | None = None) -> str:
        url = sqs.create_queue(QueueName=name)["QueueUrl"]
        if attributes:
            sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)  # type: ignore[arg-type]
        found = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return found["Attributes"]["QueueArn"]

    dead = arn(
        dead_letter_queue(settings),
        {"MessageRetentionPeriod": str(DEAD_LETTER_RETENTION_SECONDS)},
    )
    queue_arn = arn(settings.queue, queue_attributes(dead))
    url = sqs.get_queue_url(QueueName=settings.queue)["QueueUrl"]
    sqs.set_queue_attributes(
        QueueUrl=url, Attributes={"Policy": queue_policy(queue_arn, settings.bucket)}
    )
    return queue_arn


def _ensure_table(clients: AwsClients, settings: Settings) -> None:
    ddb = clients.dynamodb
    try:
        ddb.create_table(**table_definition(settings))
        log.info("created table %s", settings.table)
    except ClientError as exc:
        if error_code(exc) != "ResourceInUseException":
            raise
    # Real DynamoDB and LocalStack take seconds to make a table ACTIVE; writes fail before.
    ddb.get_waiter("table_exists").wait(
        TableName=settings.table, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
    )
    ttl = ddb.describe_time_to_live(TableName=settings.table)["TimeToLiveDescription"]
    if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
        ddb.update_time_to_live(
            TableName=settings.table,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
        )


def _ensure_bucket(clients: AwsClients, settings: Settings) -> None:
    s3 = clients.s3
    try:
        if settings.region == "us-east-1":
            # us-east-1 rejects an explicit LocationConstraint naming itself.
            s3.create_bucket(Bucket=settings.bucket)
        else:
            s3.create_bucket(
                Bucket=settings.bucket,
                CreateBucketConfiguration={"LocationConstraint": settings.region},  # type: ignore[typeddict-item]
            )
        log.info("created bucket %s", settings.bucket)
    except ClientError as exc:
        if error_code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
    s3.put_public_access_block(
        Bucket=settings.bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.put_bucket_encryption(
        Bucket=settings.bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    s3.put_bucket_cors(Bucket=settings.bucket, CORSConfiguration=bucket_cors(settings))  # type: ignore[arg-type]
    s3.put_bucket_lifecycle_configuration(
        Bucket=settings.bucket,
        LifecycleConfiguration=bucket_lifecycle(),  # type: ignore[arg-type]
    )


def ensure_resources(clients: AwsClients, settings: Settings) -> None:
    """Create the bucket, table and queues if missing and (re)apply their settings, the
    bucket's notifications to the worker's queue included; safe to repeat."""
    with aws_call():
        _ensure_table(clients, settings)
        _ensure_bucket(clients, settings)
        queue_arn = _ensure_queues(clients, settings)
        clients.s3.put_bucket_notification_configuration(
            Bucket=settings.bucket,
            NotificationConfiguration=bucket_notifications(queue_arn),  # type: ignore[arg-type]
        )
