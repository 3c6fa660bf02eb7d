"""Presigned GET URLs at list speed, for thumbs and previews.

`generate_presigned_url` spends 150-250 us per URL, nearly all of it before signing:
parameter validation, serialization, endpoint rules, event hooks. A list page of 24
images with two URLs each would pay 7-12 ms. Here botocore resolves the bucket's URL
once, and botocore's own SigV4 query signer (S3SigV4QueryAuth) prepares one request
per batch: within a batch only the path differs, so the query string with its auth
parameters, the signed headers and the signing key (four HMACs) are reused, and each
URL costs its canonical request, one SHA-256 and one HMAC.

The signing time is the start of the current window, and the URL lives a window longer
than asked: the same image gets the same URL all window long, so browsers cache thumbs
across list calls instead of fetching them again with every page.
"""

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from botocore.auth import UNSIGNED_PAYLOAD, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest

from app.storage.clients import AwsClients

if TYPE_CHECKING:
    from botocore.credentials import ReadOnlyCredentials

_PROBE = "signing-probe"
_SIGV4_TIMESTAMP = "%Y%m%dT%H%M%SZ"


class _BatchSigner(S3SigV4QueryAuth):
    """botocore's presigning signer, prepared once for a batch of GETs in one bucket at
    one signing time; `url(path)` then signs each path."""

    def __init__(
        self, credentials: "ReadOnlyCredentials", region: str, expires: int, prefix: str
    ) -> None:
        super().__init__(credentials, "s3", region, expires)
        self._day = ""
        self._key = b""
        parts = urlsplit(prefix)
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._base_path = parts.path

    # botocore-stubs do not declare SigV4Auth's helpers (_sign, _region_name, ...).
    def signature(self, string_to_sign: str, request: AWSRequest) -> str:
        """SigV4Auth.signature, deriving the signing key once per day, not per URL."""
        day = request.context["timestamp"][:8]
        if day != self._day:
            key = self._sign(f"AWS4{self.credentials.secret_key}".encode(), day)  # type: ignore[attr-defined]
            for part in (self._region_name, self._service_name, "aws4_request"):  # type: ignore[attr-defined]
                key = self._sign(key, part)  # type: ignore[attr-defined]
            self._day, self._key = day, key
        signed: str = self._sign(self._key, string_to_sign, hex=True)  # type: ignore[attr-defined]
        return signed

    def prepare(self, timestamp: str) -> None:
        """SigV4Auth.add_auth's preparation, done once: the query string with the auth
        parameters, and the canonical request's parts that every path shares."""
        template = AWSRequest(method="GET", url=self._origin + self._base_path)
        template.context["timestamp"] = timestamp
        self._modify_request_before_signing(template)  # type: ignore[attr-defined]
        headers = self.headers_to_sign(template)
        self._template = template
        self._query: str = urlsplit(str(template.url)).query
        self._shared = (
            f"{self.canonical_query_string(template)}\n{self.canonical_headers(headers)}\n\n"
            f"{self.signed_headers(headers)}\n{UNSIGNED_PAYLOAD}"
        )

    def url(self, key: str) -> str:
        path = self._base_path + quote(key, safe="/~")
        canonical = f"GET\n{path}\n{self._shared}"  # what canonical_request() builds
        signature = self.signature(self.string_to_sign(self._template, canonical), self._template)
        return f"{self._origin}{path}?{self._query}&X-Amz-Signature={signature}"


class GetUrlSigner:
    def __init__(
        self,
        clients: AwsClients,
        bucket: str,
        window_seconds: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clients = clients
        self._bucket = bucket
        self._window = window_seconds
        self._clock = clock
        self._prefix: str | None = None

    def _url_prefix(self) -> str:
        """Where keys go in a URL of this bucket (path or virtual-hosted style, custom
        endpoint or AWS): botocore's own answer, asked once."""
        if self._prefix is None:
            probe = self._clients.s3_presign.generate_presigned_url(
                "get_object", Params={"Bucket": self._bucket, "Key": _PROBE}, ExpiresIn=60
            )
            # The key ends the path: cut it there, not at the first match, since the
            # bucket's name (in the host or the path) may contain the probe's too.
            self._prefix = probe.partition("?")[0].removesuffix(_PROBE)
        return self._prefix

    def urls(self, keys: list[str], expires_in: int) -> list[str]:
        """GET URLs for `keys`, each valid for at least `expires_in` seconds."""
        if not keys:
            return []
        region: Any = self._clients.s3_presign.meta.region_name
        signer = _BatchSigner(
            self._clients.credentials(),
            str(region),
            expires_in + self._window,
            self._url_prefix(),
        )
        now = self._clock()
        window_start = now - now % self._window
        signer.prepare(datetime.fromtimestamp(window_start, UTC).strftime(_SIGV4_TIMESTAMP))
        return [signer.url(key) for key in keys]
