"""One cold start, run as a fresh process: import the handler, serve one v2 event with
DynamoDB stubbed, exit. `python -m bench.cold app|floor`; the parent times the process."""

import os
import sys


def main(kind: str) -> None:
    from botocore.stub import Stubber

    from bench.events import Context, event

    item = {
        "Item": {
            "image_id": {"S": "0123456789abcdef0123456789abcdef"},
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
            "/images/0123456789abcdef0123456789abcdef",
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
