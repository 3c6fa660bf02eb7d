"""One cold start, run as a fresh process: import the handler, serve one event, exit.
`python -m bench.cold KIND`; the parent times the process.

app / floor: the API function (or bare FastAPI + Mangum) serving one v2 event, DynamoDB
stubbed. worker / worker-with-fastapi / worker-floor: the worker function taking its
first SQS batch (S3's test event, which needs no AWS call) and building the S3, DynamoDB
and SQS clients its first upload uses; "with FastAPI" adds the imports the worker paid
while domain errors imported the HTTP framework; the floor is boto3 and Pillow (with the
HEIF plugin) imported and the same three clients built."""

import json
import os
import sys

_TEST_EVENT = {
    "Records": [
        {
            "messageId": "cold",
            "body": json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent"}),
        }
    ]
}


def worker(kind: str) -> None:
    if kind == "worker-floor":
        import boto3
        import pillow_heif
        from PIL import Image

        session = boto3.session.Session(region_name=os.environ["AWS_DEFAULT_REGION"])
        _ = [session.client(name) for name in ("s3", "dynamodb", "sqs")]
        pillow_heif.register_heif_opener()
        Image.init()
        json.loads(_TEST_EVENT["Records"][0]["body"])
        return
    if kind == "worker-with-fastapi":
        import fastapi.exceptions  # noqa: F401
        import starlette.exceptions  # noqa: F401
    from app.pipeline import lambda_handler

    result = lambda_handler.handler(_TEST_EVENT, None)
    clients = lambda_handler._services().clients
    _ = clients.s3, clients.dynamodb, clients.sqs
    if result != {"batchItemFailures": []}:
        sys.exit(f"worker cold start answered {result}")


def main(kind: str) -> None:
    if kind.startswith("worker"):
        worker(kind)
        return
    from botocore.stub import Stubber

    from bench.events import Context, event

    item = {
        "Item": {
            "image_id": {"S": "0123456789abcdef01234567" + "0" * 20},
            "user_id": {"S": "bench"},
            "created_at": {"S": "2026-01-01T00:00:00.000000Z"},
            "filename": {"S": "p.png"},
            "content_type": {"S": "image/png"},
            "size": {"N": "1234"},
            "status": {"S": "ready"},
            "tags": {"L": []},
            "uploaded_at": {"S": "2026-01-01T00:00:01.000000Z"},
            "width": {"N": "32"},
            "height": {"N": "24"},
        }
    }
    if kind == "app":
        from app.http.lambda_handler import app, handler

        ddb = app.state.services.clients.dynamodb
        request = event(
            "GET",
            "/images/0123456789abcdef01234567" + "0" * 20,
            headers={"authorization": f"Bearer {os.environ['BENCH_TOKEN']}"},
        )
    else:
        from mangum import Mangum

        from bench.floor import floor_app

        floor = floor_app()
        handler = Mangum(floor, lifespan="off")
        ddb = floor.state.dynamodb
        request = event("GET", "/get")
    if os.environ.get("IMAGES_XRAY") == "true":
        # Lambda's runtime opens the invocation's segment; the SDK records the call in it.
        from aws_xray_sdk.core import xray_recorder

        xray_recorder.begin_segment("bench")
    with Stubber(ddb) as stub:
        stub.add_response("get_item", item)
        response = handler(request, Context())
    if response["statusCode"] != 200:
        sys.exit(f"cold start answered {response['statusCode']}: {response['body']}")


if __name__ == "__main__":
    main(sys.argv[1])
