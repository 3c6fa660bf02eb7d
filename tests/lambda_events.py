"""Build Lambda events from the real API Gateway samples in tests/events/."""

import base64
import copy
import hashlib
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, urlencode

EVENTS = Path(__file__).parent / "events"
V2 = json.loads((EVENTS / "apigw-http-api-v2.json").read_text())
V1 = json.loads((EVENTS / "apigw-rest-v1.json").read_text())


class Context:
    """The attributes of Lambda's context object that Mangum and the app read."""

    aws_request_id = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
    function_name = "image-service"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:image-service"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


def _body(body: bytes | str | None, base64_encoded: bool) -> tuple[str | None, bool]:
    if body is None:
        return None, False
    raw = body.encode() if isinstance(body, str) else body
    if base64_encoded:
        return base64.b64encode(raw).decode(), True
    return raw.decode(), False


def http_api_event(
    method: str,
    path: str,
    *,
    body: bytes | str | None = None,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    claims: dict[str, str] | None = None,
    base64_encoded: bool = False,
    stage: str = "$default",
) -> dict[str, Any]:
    """HTTP API (payload 2.0). `claims=None` removes the authorizer block entirely."""
    event = copy.deepcopy(V2)
    raw_path = path if stage == "$default" else f"/{stage}{path}"
    event["rawPath"] = raw_path
    event["requestContext"]["http"]["method"] = method
    event["requestContext"]["http"]["path"] = raw_path
    event["requestContext"]["stage"] = stage
    event["routeKey"] = event["requestContext"]["routeKey"] = "$default"
    event["rawQueryString"] = urlencode(query or {})
    event["queryStringParameters"] = dict(query) if query else None
    event["headers"] = {"host": event["requestContext"]["domainName"], **(headers or {})}
    event["cookies"] = []
    if claims is None:
        del event["requestContext"]["authorizer"]
    else:
        event["requestContext"]["authorizer"]["jwt"]["claims"] = claims
    event["body"], event["isBase64Encoded"] = _body(body, base64_encoded)
    return event


def function_url_event(method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    """A Lambda function URL request: payload 2.0 with no authorizer (auth type NONE)."""
    event = http_api_event(method, path, **kwargs)
    domain = "abcdefghij.lambda-url.us-east-1.on.aws"
    event["requestContext"]["domainName"] = domain
    event["requestContext"]["domainPrefix"] = "abcdefghij"
    event["headers"]["host"] = domain
    event["requestContext"].pop("authentication", None)
    return event


def rest_api_event(
    method: str,
    path: str,
    *,
    body: bytes | str | None = None,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    claims: dict[str, str] | None = None,
    base64_encoded: bool = False,
    stage: str = "prod",
) -> dict[str, Any]:
    """REST API (payload 1.0). `path` is the resource path; the stage is in the context."""
    event = copy.deepcopy(V1)
    event["path"] = event["resource"] = path
    event["httpMethod"] = event["requestContext"]["httpMethod"] = method
    event["requestContext"]["path"] = f"/{stage}{path}"
    event["requestContext"]["resourcePath"] = path
    event["requestContext"]["stage"] = stage
    all_headers = {"Host": event["requestContext"]["domainName"], **(headers or {})}
    event["headers"] = all_headers
    event["multiValueHeaders"] = {name: [value] for name, value in all_headers.items()}
    event["queryStringParameters"] = dict(query) if query else None
    event["multiValueQueryStringParameters"] = (
        {name: [value] for name, value in query.items()} if query else None
    )
    event["requestContext"]["authorizer"] = {"claims": claims} if claims else None
    event["body"], event["isBase64Encoded"] = _body(body, base64_encoded)
    return event


def response_json(response: dict[str, Any]) -> Any:
    body = response["body"]
    if response.get("isBase64Encoded"):
        body = base64.b64decode(body)
    return json.loads(body)


def sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """What Lambda's SQS event source mapping sends for a batch of received messages
    (https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html)."""
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1545082649183",
                    "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                    "ApproximateFirstReceiveTimestamp": "1545082649185",
                },
                "messageAttributes": {},
                "md5OfBody": message["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1",
            }
            for message in messages
        ]
    }


def s3_created_event(bucket: str, key: str, data: bytes) -> str:
    """The body S3 sends a queue when an object is created (an S3 event notification,
    https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html);
    keys are URL-encoded, spaces as '+'; the ETag of a single PUT is its MD5, unquoted."""
    return json.dumps(
        {
            "Records": [
                {
                    "eventVersion": "2.1",
                    "eventSource": "aws:s3",
                    "awsRegion": "us-east-1",
                    "eventTime": "2026-11-22T12:00:00.000Z",
                    "eventName": "ObjectCreated:Put",
                    "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
                    "requestParameters": {"sourceIPAddress": "127.0.0.1"},
                    "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810"},
                    "s3": {
                        "s3SchemaVersion": "1.0",
                        "configurationId": "uploads-to-worker",
                        "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                        "object": {
                            "key": quote_plus(key, safe="/"),
                            "size": len(data),
                            "eTag": hashlib.md5(data).hexdigest(),  # noqa: S324 - S3's ETag
                            "sequencer": "0055AED6DCD90281E5",
                        },
                    },
                }
            ]
        }
    )
