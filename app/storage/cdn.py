"""Reading through CloudFront: every URL the API hands out for reading, and the cookies a
gallery can use instead, signed for the distribution's key group with botocore's
CloudFrontSigner. The key is RSA 2048 or ECDSA P-256, the operator's choice; ECDSA is
signed deterministically (RFC 6979), so a URL is the same whichever process signs it.

Variant URLs keep what makes thumbs cacheable in browsers: signed as of the start of
the current window and living a window longer (as S3's, app/storage/signing.py), so an
image has one URL all window long; each process remembers the URLs it signed for the
rest of their window, and a page seen again costs no signature (docs/benchmarks.md).
"""

import base64
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

from botocore.signers import CloudFrontSigner

from app.config import Settings
from app.storage.clients import AwsClients, aws_call
from app.storage.items import object_key, owner_path

# Remembered URLs per process: a few thousand pages of a gallery (a URL is ~300 bytes).
_MOST_REMEMBERED = 20_000


class CdnKeyError(ValueError):
    """A private key CloudFront cannot verify signatures of."""


def key_signer(pem: bytes) -> Callable[[bytes], bytes]:
    """Signs a policy as CloudFront verifies it, with the key in this PEM."""
    # Imported here: without a CDN, the API function never loads it (cold start).
    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa  # noqa: PLC0415
    from cryptography.hazmat.primitives.serialization import (  # noqa: PLC0415
        load_pem_private_key,
    )

    try:
        key = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise CdnKeyError("not an unencrypted PEM private key") from exc
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size != 2048:
            raise CdnKeyError(f"CloudFront takes RSA keys of 2048 bits, not {key.key_size}")
        # CloudFront verifies RSA signatures over SHA-1 (its documentation's openssl line).
        return lambda message: key.sign(message, padding.PKCS1v15(), hashes.SHA1())  # noqa: S303
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.name != "secp256r1":
            raise CdnKeyError(f"CloudFront takes ECDSA keys on P-256, not {key.curve.name}")
        # Randomised ECDSA would give each signing of the same URL another signature:
        # a browser would fetch the thumb again on every list call.
        algorithm = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)
        return lambda message: key.sign(message, algorithm)
    raise CdnKeyError("CloudFront takes RSA 2048 or ECDSA P-256 keys")


def cloudfront_b64(data: bytes) -> str:
    """CloudFront's base64: '+', '=' and '/' are not safe in a URL or a cookie."""
    return (
        base64.b64encode(data).replace(b"+", b"-").replace(b"=", b"_").replace(b"/", b"~").decode()
    )


class _Signer(CloudFrontSigner):
    """botocore's signer; the policy it signs is written with one format string instead
    of json.dumps over OrderedDicts, byte for byte the same (a test holds them equal):
    about a third of a URL's cost with an ECDSA key."""

    def build_policy(
        self,
        resource: str,
        date_less_than: datetime,
        date_greater_than: datetime | None = None,
        ip_address: str | None = None,
    ) -> str:
        if date_greater_than is not None or ip_address is not None:
            policy: str = super().build_policy(
                resource, date_less_than, date_greater_than, ip_address
            )
            return policy
        moment = int(date_less_than.timestamp())
        return (
            f'{{"Statement":[{{"Resource":{json.dumps(resource)},'
            f'"Condition":{{"DateLessThan":{{"AWS:EpochTime":{moment}}}}}}}]}}'
        )


@dataclass(frozen=True, slots=True)
class SignedCookies:
    """The three cookies CloudFront reads, for every object under `path`, until `expires`
    (Unix time), `max_age` seconds from when they were signed."""

    values: dict[str, str]
    path: str
    expires: int
    max_age: int


class CdnUrls:
    """URLs (and cookies) for reading through the distribution at `base_url`."""

    def __init__(
        self,
        base_url: str,
        key_pair_id: str,
        private_key: Callable[[], bytes],
        window_seconds: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._key_pair_id = key_pair_id
        self._private_key = private_key
        self._window = window_seconds
        self._clock = clock
        self._signer: _Signer | None = None
        self._signs: Callable[[bytes], bytes] | None = None
        self._remembered: dict[str, str] = {}
        self._remembered_window = -1.0

    def _ready(self) -> _Signer:
        """The signer, its key loaded on first use (a file, or an SSM parameter read once)."""
        if self._signer is None:
            self._signs = key_signer(self._private_key())
            self._signer = _Signer(self._key_pair_id, self._signs)
        return self._signer

    def check(self) -> None:
        """Load the key now: a wrong one stops a service at start, not its first page."""
        self._ready()

    def variant_urls(self, keys: Sequence[str], expires_in: int) -> list[str]:
        """URLs for `keys`, each valid for at least `expires_in` seconds; the same URL for
        the same key all window long."""
        if not keys:
            return []
        now = self._clock()
        window_start = now - now % self._window
        if window_start != self._remembered_window or len(self._remembered) > _MOST_REMEMBERED:
            self._remembered = {}
            self._remembered_window = window_start
        expires = datetime.fromtimestamp(window_start + self._window + expires_in, UTC)
        signer = self._ready()
        urls = []
        for key in keys:
            remembered = f"{key}@{expires_in}"
            url = self._remembered.get(remembered)
            if url is None:
                url = signer.generate_presigned_url(f"{self._base}/{key}", date_less_than=expires)
                self._remembered[remembered] = url
            urls.append(url)
        return urls

    def original_url(
        self, image_id: str, content_type: str, content_disposition: str, expires_in: int
    ) -> str:
        """The uploaded bytes, served as the verified type under their download name: the
        distribution forwards these two parameters (its cache key holds them) and S3
        honours them because Origin Access Control signs the request."""
        query = (
            f"response-content-disposition={quote(content_disposition, safe='')}"
            f"&response-content-type={quote(content_type, safe='')}"
        )
        expires = datetime.fromtimestamp(int(self._clock()) + expires_in, UTC)
        return self._ready().generate_presigned_url(
            f"{self._base}/{object_key(image_id)}?{query}", date_less_than=expires
        )

    def cookies(self, owner: str, expires_in: int) -> SignedCookies:
        """Signed cookies whose policy covers exactly the objects under the owner's prefix
        (a custom policy: its resource ends with a wildcard)."""
        signer = self._ready()
        assert self._signs is not None  # noqa: S101 - set with the signer
        expires = int(self._clock()) + expires_in
        path = "/" + owner_path(owner)
        policy = signer.build_policy(
            f"{self._base}{path}*", datetime.fromtimestamp(expires, UTC)
        ).encode()
        values = {
            "CloudFront-Policy": cloudfront_b64(policy),
            "CloudFront-Signature": cloudfront_b64(self._signs(policy)),
            "CloudFront-Key-Pair-Id": self._key_pair_id,
        }
        return SignedCookies(values, path, expires, expires_in)

    @property
    def origin(self) -> str:
        return self._base


def private_key_source(settings: Settings, clients: AwsClients) -> Callable[[], bytes]:
    """Where the key is read from, once: a PEM file, or an SSM SecureString (decrypted by
    SSM; never in the environment, never logged)."""
    path, name = settings.cdn_private_key_file, settings.cdn_private_key_parameter
    if path is not None:
        return path.read_bytes

    def read_parameter() -> bytes:
        with aws_call():
            answer = clients.ssm.get_parameter(Name=str(name), WithDecryption=True)
        return answer["Parameter"].get("Value", "").encode()

    return read_parameter


def cdn_urls(settings: Settings, clients: AwsClients) -> CdnUrls | None:
    """The CDN's URLs, if one is configured."""
    if settings.cdn_url is None or settings.cdn_key_pair_id is None:
        return None
    return CdnUrls(
        settings.cdn_url,
        settings.cdn_key_pair_id,
        private_key_source(settings, clients),
        settings.variant_url_window_seconds,
    )
