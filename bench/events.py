"""API Gateway HTTP API (v2) events for the benchmarks, from the repository's sample."""

import copy
import json
from pathlib import Path
from typing import Any

_SAMPLE = json.loads(
    (Path(__file__).resolve().parent.parent / "tests/events/apigw-http-api-v2.json").read_text()
)


class Context:
    aws_request_id = "bench"
    function_name = "bench"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


def event(
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: str | None = None,
    query: str = "",
) -> dict[str, Any]:
    built = copy.deepcopy(_SAMPLE)
    built["rawPath"] = built["requestContext"]["http"]["path"] = path
    built["requestContext"]["http"]["method"] = method
    built["rawQueryString"] = query
    built["queryStringParameters"] = (
        dict(p.split("=", 1) for p in query.split("&")) if query else None
    )
    built["headers"] = {"host": "bench", **(headers or {})}
    built["cookies"] = []
    built["body"] = body
    built["isBase64Encoded"] = False
    del built["requestContext"]["authorizer"]
    return built
