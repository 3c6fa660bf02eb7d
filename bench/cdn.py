"""A list page with CloudFront-signed URLs: what signing costs, per key type, against the
same page without thumbs, warm through Mangum with DynamoDB stubbed (as bench/warm.py).

Three ways a page is served, interleaved request by request (this machine is noisy):
the page without thumbs; the page with 48 CDN URLs a process has signed before in this
window (a page seen again: remembered, no signature); the page seen for the first time
(every URL signed). And the service's own code on the CDN page, measured as warm.py
measures it (AWS and signing answered without botocore or cryptography).
"""

import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from botocore.stub import Stubber
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from mangum import Mangum

from app.config import Settings
from app.http.app import create_app
from app.http.auth import issue_token
from bench.events import Context, event
from bench.floor import floor_app
from bench.warm import PAGE, SECRET, _Canned, _page

KEY_PAIR_ID = "KBENCH0000000A"
KINDS = ("ecdsa", "rsa")


def _key(kind: str, directory: Path) -> Path:
    private = (
        ec.generate_private_key(ec.SECP256R1())
        if kind == "ecdsa"
        else rsa.generate_private_key(65537, 2048)
    )
    path = directory / f"{kind}.pem"
    path.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def _served(handler: Any, request: dict[str, Any]) -> float:
    started = time.perf_counter()
    response = handler(request, Context())
    elapsed = time.perf_counter() - started
    if response["statusCode"] != 200:
        raise RuntimeError(f"{response['statusCode']} {response['body']}")
    return elapsed


def _one_kind(kind: str, key: Path, n: int) -> dict[str, Any]:
    settings = Settings(
        jwt_secret=SECRET,
        log_level="WARNING",
        cdn_url="https://cdn.bench.example",
        cdn_key_pair_id=KEY_PAIR_ID,
        cdn_private_key_file=key,
    )
    app = create_app(settings)
    handler = Mangum(app, lifespan="off")
    cdn = app.state.services.storage.cdn
    token = issue_token(settings, "bench", 3600)
    request = event("GET", "/images", {"authorization": f"Bearer {token}"}, query=f"limit={PAGE}")
    samples: dict[str, list[float]] = {"plain": [], "remembered": [], "first_sight": []}
    with Stubber(app.state.services.clients.dynamodb) as stub:
        warmup = max(10, n // 10)
        for index in range(warmup + n):
            for way, taken in samples.items():
                stub.add_response("query", _page(made=way != "plain"))
                if way == "first_sight":
                    cdn._remembered.clear()
                elapsed = _served(handler, request)
                if index >= warmup:
                    taken.append(elapsed)
    p50 = {way: statistics.median(taken) * 1000 for way, taken in samples.items()}
    return {
        "p50_ms": p50,
        "remembered_extra_ms": p50["remembered"] - p50["plain"],
        "first_sight_extra_ms": p50["first_sight"] - p50["plain"],
        "own_code_ms": _own_code(app, handler, request, n),
    }


def _own_code(app: Any, handler: Any, request: dict[str, Any], n: int) -> float:
    """The CDN page over the bare route with AWS and signing canned: the least disturbed
    of five rounds (interference only adds time)."""
    floor = Mangum(floor_app(), lifespan="off")
    bare_request = event("GET", "/image")
    rounds = []
    with _Canned(app) as canned:
        for _ in range(5):
            served, bare = [], []
            for _ in range(max(10, n // 5)):
                bare.append(_served(floor, bare_request))
                canned.add_response("query", _page(made=True))
                served.append(_served(handler, request))
            rounds.append((statistics.median(served) - statistics.median(bare)) * 1000)
    return min(rounds)


def run(n: int = 1000) -> dict[str, Any]:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    with tempfile.TemporaryDirectory() as directory:
        return {
            "requests": n,
            "kinds": {kind: _one_kind(kind, _key(kind, Path(directory)), n) for kind in KINDS},
        }


if __name__ == "__main__":
    print(json.dumps(run(200), indent=2))
