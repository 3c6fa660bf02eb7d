"""CloudFront's side of signed URLs and cookies, for tests that cannot reach CloudFront:
verification with the public key alone, as CloudFront does it, and a stand-in
distribution that serves a bucket's objects only to requests that verify.

What CloudFront checks (Developer Guide, "Serving private content"): the Key-Pair-Id
names a public key of a trusted key group; the signature, in CloudFront's base64, is
over the policy's exact bytes (for a URL with `Expires`, the canned policy rebuilt from
the URL without its signing parameters); the policy's resource matches the requested
URL (`*` any characters, `?` one); the request comes before `DateLessThan`.
"""

import base64
import fnmatch
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from app.local.server import free_port

SIGNING_PARAMETERS = ("Expires", "Policy", "Signature", "Key-Pair-Id")
KEY_PAIR_ID = "K2JCJMDEHXQW5F"


class Refused(Exception):
    """What CloudFront would answer 403 to, and why."""


@dataclass(frozen=True)
class KeyPair:
    private_pem: bytes
    public_pem: bytes
    kind: str

    def write(self, directory: Path) -> Path:
        path = directory / f"cdn-{self.kind}.pem"
        path.write_bytes(self.private_pem)
        return path


def key_pair(kind: str) -> KeyPair:
    """A new key of a kind CloudFront takes: "rsa" (2048) or "ecdsa" (P-256)."""
    private = (
        rsa.generate_private_key(65537, 2048)
        if kind == "rsa"
        else ec.generate_private_key(ec.SECP256R1())
    )
    return KeyPair(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        kind,
    )


def _b64decode(text: str) -> bytes:
    try:
        return base64.b64decode(
            text.replace("-", "+").replace("_", "=").replace("~", "/"), validate=True
        )
    except ValueError as exc:  # binascii.Error: not CloudFront's base64
        raise Refused("a signature or policy that is not CloudFront's base64") from exc


def _verify_signature(public_pem: bytes, signature: bytes, policy: bytes) -> None:
    key = serialization.load_pem_public_key(public_pem)
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, policy, padding.PKCS1v15(), hashes.SHA1())  # noqa: S303
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, policy, ec.ECDSA(hashes.SHA256()))
        else:
            raise Refused("a public key CloudFront does not take")
    except InvalidSignature as exc:
        raise Refused("the signature does not verify") from exc


def _check_policy(policy: bytes, url: str, now: float) -> dict[str, Any]:
    (statement,) = json.loads(policy)["Statement"]
    resource = statement["Resource"]
    # CloudFront's wildcards: `*` any run of characters (slashes too), `?` exactly one.
    if not fnmatch.fnmatchcase(url, resource.replace("[", "[[]")):
        raise Refused(f"the policy's resource {resource} does not cover {url}")
    if not now < statement["Condition"]["DateLessThan"]["AWS:EpochTime"]:
        raise Refused("the policy has expired")
    parsed: dict[str, Any] = statement
    return parsed


@dataclass(frozen=True)
class Verified:
    """What a signed URL or cookie set grants: its policy, as CloudFront read it."""

    resource: str
    expires: int
    policy: bytes


def verify_url(
    url: str, public_pem: bytes, key_pair_id: str = KEY_PAIR_ID, now: float | None = None
) -> Verified:
    """Verify a signed URL as CloudFront does, or raise Refused saying why."""
    base, _, query = url.partition("?")
    pairs = [pair.partition("=") for pair in query.split("&")] if query else []
    signing = {name: value for name, _, value in pairs if name in SIGNING_PARAMETERS}
    kept = "&".join(f"{name}={value}" for name, _, value in pairs if name not in SIGNING_PARAMETERS)
    resource = f"{base}?{kept}" if kept else base
    if signing.get("Key-Pair-Id") != key_pair_id:
        raise Refused(f"not signed with key pair {key_pair_id}")
    if "Expires" in signing:
        policy = (
            f'{{"Statement":[{{"Resource":"{resource}","Condition":{{"DateLessThan":'
            f'{{"AWS:EpochTime":{int(signing["Expires"])}}}}}}}]}}'
        ).encode()
    elif "Policy" in signing:
        policy = _b64decode(signing["Policy"])
    else:
        raise Refused("neither Expires nor Policy")
    _verify_signature(public_pem, _b64decode(signing["Signature"]), policy)
    statement = _check_policy(policy, resource, time.time() if now is None else now)
    return Verified(
        statement["Resource"], statement["Condition"]["DateLessThan"]["AWS:EpochTime"], policy
    )


def verify_cookies(
    cookies: dict[str, str],
    url: str,
    public_pem: bytes,
    key_pair_id: str = KEY_PAIR_ID,
    now: float | None = None,
) -> Verified:
    """Verify a request for `url` carrying these CloudFront cookies, or raise Refused."""
    try:
        policy = _b64decode(cookies["CloudFront-Policy"])
        signature = _b64decode(cookies["CloudFront-Signature"])
        if cookies["CloudFront-Key-Pair-Id"] != key_pair_id:
            raise Refused(f"not signed with key pair {key_pair_id}")
    except KeyError as exc:
        raise Refused(f"no {exc.args[0]} cookie") from exc
    _verify_signature(public_pem, signature, policy)
    statement = _check_policy(policy, url, time.time() if now is None else now)
    return Verified(
        statement["Resource"], statement["Condition"]["DateLessThan"]["AWS:EpochTime"], policy
    )


class StandInDistribution:
    """A distribution in front of a bucket on an S3 endpoint (the emulator's): it serves
    an object only to a request whose URL or cookies verify with the public key, and
    forwards the two response-* parameters as the real one's cache policy does."""

    def __init__(self, s3_endpoint: str, bucket: str, public_pem: bytes) -> None:
        # The origin may be set once started (an emulator that learns the distribution's
        # URL before its own endpoint is known).
        self.s3_endpoint, self.bucket, self.public_pem = s3_endpoint, bucket, public_pem
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.served: list[str] = []
        self.refused: list[str] = []
        # False: as if the browser's cookies never reached it (set for another domain).
        self.cookies_arrive = True

    def handle(self, path: str, cookie_header: str) -> tuple[int, dict[str, str], bytes]:
        url = self.url + path
        try:
            if "Signature=" in path:
                verify_url(url, self.public_pem)
            else:
                cookies = {
                    name: morsel.value
                    for name, morsel in SimpleCookie(
                        cookie_header if self.cookies_arrive else ""
                    ).items()
                }
                verify_cookies(cookies, url, self.public_pem)
        except Refused as exc:
            self.refused.append(f"{path}: {exc}")
            return 403, {"Content-Type": "text/plain"}, str(exc).encode()
        parts = urlsplit(path)
        query = {
            name: unquote(value)
            for name, _, value in (pair.partition("=") for pair in parts.query.split("&"))
        }
        # Origin Access Control signs the origin request (SigV4): S3 honours the two
        # response-* parameters only on a signed request, so sign it as OAC would.
        s3 = boto3.client(
            "s3",
            endpoint_url=self.s3_endpoint,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=Config(s3={"addressing_style": "path"}),
        )
        overrides = {
            "ResponseContentDisposition": query.get("response-content-disposition"),
            "ResponseContentType": query.get("response-content-type"),
        }
        try:
            answer = s3.get_object(
                Bucket=self.bucket,
                Key=unquote(parts.path.lstrip("/")),
                **{name: value for name, value in overrides.items() if value},
            )
        except ClientError as exc:
            return int(exc.response["ResponseMetadata"]["HTTPStatusCode"]), {}, b""
        self.served.append(path)
        headers = {
            name: answer[field]
            for name, field in (
                ("Content-Type", "ContentType"),
                ("Content-Disposition", "ContentDisposition"),
                ("Cache-Control", "CacheControl"),
            )
            if answer.get(field)
        }
        return 200, headers, answer["Body"].read()


@contextmanager
def stand_in_distribution(
    s3_endpoint: str, bucket: str, public_pem: bytes
) -> Iterator[StandInDistribution]:
    distribution = StandInDistribution(s3_endpoint, bucket, public_pem)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:
            pass

        def do_GET(self) -> None:
            status, headers, body = distribution.handle(self.path, self.headers.get("Cookie", ""))
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", distribution.port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield distribution
    finally:
        server.shutdown()
        server.server_close()
