"""The floors the service is measured against: the least an app can do for the same job.

One FastAPI route, Mangum, and boto3 S3 and DynamoDB clients built the same way the
service builds them; nothing of the service's own code.
"""

import os
import uuid
from typing import Any

import boto3
from botocore.config import Config
from fastapi import FastAPI
from mangum import Mangum

from app.storage.table import NEW_ID_ONLY, WITHIN_QUOTA

IMAGE = {
    "id": "0123456789abcdef0123456789abcdef",
    "filename": "photo.png",
    "content_type": "image/png",
    "size": 1234,
    "status": "ready",
    "reason": None,
    "title": None,
    "description": None,
    "tags": [],
    "created_at": "2026-01-01T00:00:00.000000Z",
    "uploaded_at": "2026-01-01T00:00:01.000000Z",
    "width": 32,
    "height": 24,
    "placeholder": None,
    "variants": {
        name: {
            "status": "pending",
            "content_type": "image/webp",
            "width": None,
            "height": None,
            "bytes": None,
            "reason": None,
            "url": None,
        }
        for name in ("thumb", "preview")
    },
}


def floor_app(endpoint: str | None = None, table: str = "images") -> FastAPI:
    """Routes returning the service's JSON after the single DynamoDB call each makes."""
    session = boto3.session.Session(region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    config = Config(signature_version="s3v4", s3={"addressing_style": "path"})
    app = FastAPI()
    app.state.s3 = session.client("s3", endpoint_url=endpoint, config=config)
    app.state.dynamodb = ddb = session.client("dynamodb", endpoint_url=endpoint, config=config)

    # async: it blocks on nothing, so the cheapest route FastAPI and Mangum can serve.
    @app.get("/image")
    async def image() -> dict[str, Any]:
        return IMAGE

    @app.get("/get")
    def get() -> dict[str, Any]:
        ddb.get_item(TableName=table, Key={"image_id": {"S": IMAGE["id"]}})
        return IMAGE

    @app.post("/put")
    def put() -> dict[str, Any]:
        # The service's create is one transaction of this shape: the record, and the
        # owner's usage reserved under the quota condition. Same call, same expressions,
        # same cost on the emulator (whose expression parser is most of it).
        ddb.transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": table,
                        "ConditionExpression": NEW_ID_ONLY,
                        "Item": {
                            "image_id": {"S": uuid.uuid4().hex},
                            "user_id": {"S": "floor"},
                            "created_at": {"S": IMAGE["created_at"]},
                        },
                    }
                },
                {
                    "Update": {
                        "TableName": table,
                        "Key": {"image_id": {"S": "usage#floor"}},
                        "ConditionExpression": WITHIN_QUOTA,
                        "UpdateExpression": (
                            "ADD images :one, bytes :size, pending :one, "
                            "pending_bytes :size, version :one SET changed_at = :now"
                        ),
                        "ExpressionAttributeValues": {
                            ":one": {"N": "1"},
                            ":size": {"N": "10"},
                            ":now": {"N": "0"},
                            ":max_images": {"N": str(10**9)},
                            ":room": {"N": str(10**15)},
                            ":max_pending": {"N": str(10**9)},
                            ":pending_room": {"N": str(10**15)},
                        },
                    }
                },
            ]
        )
        return IMAGE

    @app.get("/query")
    def query() -> dict[str, Any]:
        # The service's unfiltered list page: same index, key, filter and limit, over
        # the same user's rows (BENCH_LIST_USER), so the emulator does the same work.
        ddb.query(
            TableName=table,
            IndexName="user_id-created_at",
            KeyConditionExpression="user_id = :user",
            FilterExpression="#status = :status",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={
                ":user": {"S": os.environ.get("BENCH_LIST_USER", "floor")},
                ":status": {"S": "ready"},
            },
            Limit=21,
            ScanIndexForward=False,
        )
        return {"items": [IMAGE] * 20, "next_cursor": None}

    return app


def floor_handler() -> Mangum:
    return Mangum(floor_app(), lifespan="off")


def from_env() -> FastAPI:
    """`uvicorn bench.floor:from_env --factory`, against AWS_ENDPOINT_URL."""
    return floor_app(os.environ.get("AWS_ENDPOINT_URL"))
