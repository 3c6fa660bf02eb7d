"""Warm per-request time through Mangum, AWS stubbed with botocore's Stubber, for every
endpoint, against the floor: a bare route returning the same JSON (and, to price one
stubbed botocore call, the floor route that makes a single GetItem)."""

import io
import json
import os
import statistics
import struct
import time
import zlib
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from botocore.response import StreamingBody
from botocore.stub import Stubber
from mangum import Mangum

from app.config import Settings
from app.domain.variants import DEFAULT_VARIANTS
from app.http.app import create_app
from app.http.auth import issue_token
from app.storage.items import variant_key
from bench.events import Context, event
from bench.floor import floor_app

IMAGE_ID = "0123456789abcdef01234567" + "0" * 20  # random part, then the owner prefix
SECRET = "bench-secret-" + "0" * 32
OWNER = "0" * 20


def _png(width: int, height: int) -> bytes:
    """A real RGB PNG, built by hand: what confirm's ranged GET returns."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    rows = b"".join(b"\0" + b"\x80" * 3 * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


PNG = _png(4, 3)


PAGE = 24  # a gallery page


def _variants() -> dict[str, Any]:
    """Both default variants made, as the worker records them."""

    def made(name: str, width: int, height: int, size: int) -> dict[str, Any]:
        spec = DEFAULT_VARIANTS[name]
        return {
            "M": {
                "status": {"S": "ready"},
                "width": {"N": str(width)},
                "height": {"N": str(height)},
                "bytes": {"N": str(size)},
                "spec": {"S": spec.fingerprint},
                "format": {"S": spec.format},
            }
        }

    return {
        "M": {
            "thumb": made("thumb", 320, 240, 2588),
            "preview": made("preview", 1600, 1200, 41028),
        }
    }


def _item(
    status: str = "ready", user: str = "bench", image_id: str = IMAGE_ID, made: bool = False
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "image_id": {"S": image_id},
        "user_id": {"S": user},
        "created_at": {"S": "2026-01-01T00:00:00.000000Z"},
        "filename": {"S": "p.png"},
        "content_type": {"S": "image/png"},
        "size": {"N": str(len(PNG))},
        "status": {"S": status},
        "tags": {"L": []},
    }
    if status == "ready":
        item |= {
            "uploaded_at": {"S": "2026-01-01T00:00:01.000000Z"},
            "width": {"N": "4"},
            "height": {"N": "3"},
        }
    if made:
        item |= {"variants": _variants(), "placeholder": {"S": "LuLV5+s={,bHbMedi_cA-EjEtdkR"}}
    return item


def _page(made: bool) -> dict[str, Any]:
    """A full page and one more item (which tells the service there is a next page)."""
    items = [_item(image_id=f"{n:024x}{OWNER}", made=made) for n in range(PAGE + 1)]
    return {"Items": items, "Count": PAGE + 1, "ScannedCount": PAGE + 1}


class Answers(Protocol):
    """Where `_stubs` queues AWS answers: a botocore Stubber, or `_Canned`."""

    def add_response(self, method: str, service_response: dict[str, Any]) -> None: ...


def _stubs(stub_s3: Answers, stub_ddb: Answers, name: str) -> None:
    """Queue the AWS answers one request of `name` consumes."""
    if name in {"get", "download"}:
        stub_ddb.add_response("get_item", {"Item": _item()})
    elif name == "create":
        stub_ddb.add_response("transact_write_items", {})
    elif name == "list":
        stub_ddb.add_response("query", _page(made=False))
    elif name == "list-thumbs":
        stub_ddb.add_response("query", _page(made=True))
    elif name == "delete":
        stub_ddb.add_response("update_item", {"Attributes": _item()})
        stub_s3.add_response("delete_objects", {})
        stub_ddb.add_response("transact_write_items", {})
    elif name == "confirm":
        stub_ddb.add_response("get_item", {"Item": _item("pending")})
        stub_s3.add_response(
            "get_object",
            {
                "Body": StreamingBody(io.BytesIO(PNG), len(PNG)),
                "ContentLength": len(PNG),
                "ContentRange": f"bytes 0-{len(PNG) - 1}/{len(PNG)}",
                "ContentType": "image/png",
                "ETag": '"0123456789abcdef0123456789abcdef"',
            },
        )
        stub_s3.add_response("put_object_tagging", {})
        stub_ddb.add_response("transact_write_items", {})


def _requests(token: str) -> dict[str, tuple[dict[str, Any], int]]:
    auth = {"authorization": f"Bearer {token}"}
    body = json.dumps({"filename": "p.png", "content_type": "image/png", "size": len(PNG)})
    return {
        "create": (
            event("POST", "/images", {**auth, "content-type": "application/json"}, body),
            201,
        ),
        "get": (event("GET", f"/images/{IMAGE_ID}", auth), 200),
        "download": (event("GET", f"/images/{IMAGE_ID}/download", auth), 200),
        "list": (event("GET", "/images", auth, query=f"limit={PAGE}"), 200),
        "list-thumbs": (event("GET", "/images", auth, query=f"limit={PAGE}"), 200),
        "confirm": (event("POST", f"/images/{IMAGE_ID}/confirm", auth), 200),
        "delete": (event("DELETE", f"/images/{IMAGE_ID}", auth), 204),
    }


# What each endpoint asks of botocore (calls, stubbed, and local presigning).
ENDPOINT_WORK = {
    "create": ["transact_write_items", "presign"],
    "get": ["get_item"],
    "download": ["get_item", "presign"],
    "list": ["query"],
    # The same page, each image with its thumb and preview URLs (48, signed together);
    # its items carry their variants, which botocore checks and hands over too.
    "list-thumbs": ["query_thumbs", "variant_urls_48"],
    "confirm": ["get_item", "get_object", "put_object_tagging", "transact_write_items"],
    "delete": ["update_item", "delete_objects", "transact_write_items"],
}


AWS_CALLS = {
    "get_item",
    "query",
    "query_thumbs",
    "update_item",
    "transact_write_items",
    "delete_objects",
    "put_object_tagging",
    "get_object",
}


def _client_costs(app: Any, stub_s3: Stubber, stub_ddb: Stubber, n: int) -> dict[str, float]:
    """Median ms botocore spends on each call even when stubbed (parameter validation,
    serialization, endpoint resolution, event hooks), and on one presigned URL."""
    s3, ddb = app.state.services.clients.s3, app.state.services.clients.dynamodb
    key = {"image_id": {"S": IMAGE_ID}}

    def query() -> Any:
        return ddb.query(
            TableName="images",
            IndexName="user_id-created_at",
            KeyConditionExpression="user_id = :u",
            ExpressionAttributeValues={":u": {"S": "bench"}},
            Limit=PAGE + 1,
        )

    # Each call answered as the endpoint's own call is: a list page's query returns that page.
    calls: dict[str, tuple[Stubber, Callable[[], Any], dict[str, Any]]] = {
        "get_item": (
            stub_ddb,
            lambda: ddb.get_item(TableName="images", Key=key),
            {"Item": _item()},
        ),
        "query": (stub_ddb, query, _page(made=False)),
        "query_thumbs": (stub_ddb, query, _page(made=True)),
        "update_item": (
            stub_ddb,
            lambda: ddb.update_item(
                TableName="images",
                Key=key,
                UpdateExpression="SET a = :a",
                ExpressionAttributeValues={":a": {"S": "x"}},
            ),
            {},
        ),
        "transact_write_items": (
            stub_ddb,
            lambda: ddb.transact_write_items(
                TransactItems=[
                    {"Put": {"TableName": "images", "Item": _item()}},
                    {
                        "Update": {
                            "TableName": "images",
                            "Key": key,
                            "UpdateExpression": "ADD n :one",
                            "ExpressionAttributeValues": {":one": {"N": "1"}},
                        }
                    },
                ]
            ),
            {},
        ),
        "delete_objects": (
            stub_s3,
            lambda: s3.delete_objects(
                Bucket="images",
                Delete={"Objects": [{"Key": "a"}, {"Key": "b"}, {"Key": "c"}], "Quiet": True},
            ),
            {},
        ),
        "put_object_tagging": (
            stub_s3,
            lambda: s3.put_object_tagging(
                Bucket="images", Key="k", Tagging={"TagSet": [{"Key": "state", "Value": "ready"}]}
            ),
            {},
        ),
        "get_object": (
            stub_s3,
            lambda: s3.get_object(Bucket="images", Key="k", Range="bytes=0-99"),
            {},
        ),
    }
    costs: dict[str, float] = {}
    for name, (stub, call, canned) in calls.items():
        samples = []
        for _ in range(n):
            response = (
                {"Body": StreamingBody(io.BytesIO(PNG), len(PNG))}
                if name == "get_object"
                else canned
            )
            stub.add_response(name.removesuffix("_thumbs"), response)
            started = time.perf_counter()
            call()
            samples.append(time.perf_counter() - started)
        costs[name] = statistics.median(samples) * 1000
    presign_samples = []
    for _ in range(n):
        started = time.perf_counter()
        s3.generate_presigned_url(
            "get_object", Params={"Bucket": "images", "Key": "k"}, ExpiresIn=300
        )
        presign_samples.append(time.perf_counter() - started)
    costs["presign"] = statistics.median(presign_samples) * 1000
    keys = [
        variant_key(f"{n:024x}{OWNER}", name, spec)
        for n in range(PAGE)
        for name, spec in DEFAULT_VARIANTS.items()
    ]
    objects = app.state.services.storage.objects
    signing_samples = []
    for _ in range(n):
        started = time.perf_counter()
        objects.variant_urls(keys, 300)
        signing_samples.append(time.perf_counter() - started)
    costs["variant_urls_48"] = statistics.median(signing_samples) * 1000
    return costs


class _Canned:
    """The app's AWS work answered without botocore: API calls pop the responses queued
    (through the same `add_response` as a Stubber, so `_stubs` fills both), presigned URLs
    are fixed strings. Time left over the bare route is the service's own code."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self._answers: deque[dict[str, Any]] = deque()

    def add_response(self, method: str, service_response: dict[str, Any]) -> None:
        self._answers.append(service_response)

    @property
    def pending(self) -> int:
        return len(self._answers)

    def _answer(self, _operation: str, _params: dict[str, Any]) -> dict[str, Any]:
        return self._answers.popleft()

    def __enter__(self) -> "_Canned":
        clients = self._app.state.services.clients
        # Instance attributes: botocore's generated methods call self._make_api_call.
        for client in (clients.s3, clients.dynamodb):
            client._make_api_call = self._answer
        url = "https://s3.test/images/0123456789abcdef0123456789abcdef?X-Amz-Signature=0"
        clients.s3_presign.generate_presigned_url = lambda *_, **__: url
        # Whoever signs reading URLs (S3's presigner, or the CDN's): fixed strings too.
        reads = self._app.state.services.storage.reads
        reads.variant_urls = lambda keys, _expires: [url] * len(keys)
        return self

    def __exit__(self, *_: object) -> None:
        clients = self._app.state.services.clients
        for client in (clients.s3, clients.dynamodb, clients.s3_presign):
            vars(client).pop("_make_api_call", None)
            vars(client).pop("generate_presigned_url", None)
        vars(self._app.state.services.storage.reads).pop("variant_urls", None)


OWN_CODE_ROUNDS = 5


def _own_code(
    app: Any,
    handler: Callable[..., dict[str, Any]],
    floor_handler: Callable[..., dict[str, Any]],
    n: int,
    token: str,
) -> dict[str, list[float]]:
    """Per endpoint, the median ms it takes over the bare route with no botocore at all,
    in each of OWN_CODE_ROUNDS rounds. The two requests alternate, so that a slower
    stretch of a noisy machine slows both; the rounds take turns across endpoints, so
    that such a stretch lands in one round of each rather than in every round of one."""
    bare_request = event("GET", "/image")
    own: dict[str, list[float]] = {}
    per_round = max(1, n // OWN_CODE_ROUNDS)
    warmup = max(10, per_round // 10)
    with _Canned(app) as canned:
        for _ in range(OWN_CODE_ROUNDS):
            for name, (request, status) in _requests(token).items():

                def queue(name: str = name) -> None:
                    _stubs(canned, canned, name)

                bare: list[float] = []
                served: list[float] = []
                for index in range(warmup + per_round):
                    bare_sample = _time(floor_handler, bare_request, 200, 1, lambda: None)
                    sample = _time(handler, request, status, 1, queue)
                    if index >= warmup:
                        bare += bare_sample
                        served += sample
                if canned.pending:
                    raise RuntimeError(f"{name} left {canned.pending} AWS answers unused")
                median = (statistics.median(served) - statistics.median(bare)) * 1000
                own.setdefault(name, []).append(median)
    return own


def _time(
    handler: Callable[..., dict[str, Any]],
    request: dict[str, Any],
    status: int,
    n: int,
    before: Callable[[], None],
) -> list[float]:
    samples = []
    for _ in range(n):
        before()
        started = time.perf_counter()
        response = handler(request, Context())
        samples.append(time.perf_counter() - started)
        if response["statusCode"] != status:
            raise RuntimeError(f"{request['rawPath']}: {response['statusCode']} {response['body']}")
    return samples


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[int(0.99 * (len(ordered) - 1))] * 1000,
    }


def run(n: int = 2000) -> dict[str, Any]:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    settings = Settings(jwt_secret=SECRET, log_level="WARNING")
    app = create_app(settings)
    handler = Mangum(app, lifespan="off")
    token = issue_token(settings, "bench", 3600)
    floor = floor_app()
    floor_handler = Mangum(floor, lifespan="off")
    stub_s3 = Stubber(app.state.services.clients.s3)
    stub_ddb = Stubber(app.state.services.clients.dynamodb)
    results: dict[str, Any] = {"requests_per_endpoint": n, "endpoints": {}}
    with stub_s3, stub_ddb:
        bare_request = event("GET", "/image")
        warmup = max(20, n // 10)

        _time(floor_handler, bare_request, 200, warmup, lambda: None)
        bare = _summary(_time(floor_handler, bare_request, 200, n, lambda: None))
        results["bare"] = bare
        costs = _client_costs(app, stub_s3, stub_ddb, n)
        results["client_side_ms"] = costs
        for name, (request, status) in _requests(token).items():

            def queue(name: str = name) -> None:
                _stubs(stub_s3, stub_ddb, name)

            _time(handler, request, status, warmup, queue)
            measured = _summary(_time(handler, request, status, n, queue))
            p50_over = measured["p50_ms"] - bare["p50_ms"]
            aws = sum(costs[op] for op in ENDPOINT_WORK[name])
            results["endpoints"][name] = {
                **measured,
                "aws_calls": len([op for op in ENDPOINT_WORK[name] if op in AWS_CALLS]),
                "p50_over_bare_ms": p50_over,
                "p99_over_bare_ms": measured["p99_ms"] - bare["p99_ms"],
                "calls_timed_ms": aws,
            }
    for name, rounds in _own_code(app, handler, floor_handler, n, token).items():
        row = results["endpoints"][name]
        # The least disturbed round: interference only ever adds time (as timeit's min).
        own = row["own_code_ms"] = min(rounds)
        row["own_code_rounds_ms"] = rounds
        # The rest of the p50 over bare: botocore's client side and the Stubber's checks.
        row["client_side_ms"] = row["p50_over_bare_ms"] - own
    return results


if __name__ == "__main__":
    print(json.dumps(run(500), indent=2))
