"""Configuration: one Settings object, read from the environment, passed explicitly."""

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.domain.variants import DEFAULT_VARIANTS, VariantName, VariantSpec, checked

MiB = 1024 * 1024

# Used only when no IMAGES_JWT_SECRET is configured, and only by `make run`
# (see app.__main__): the API itself refuses to start without a secret.
DEV_JWT_SECRET = "dev-only-secret-change-me-0123456789abcdef"  # noqa: S105

Seconds = Annotated[int, Field(ge=1)]

# uvicorn closes idle keep-alive connections after this. Its default (5 s) equals the
# idle expiry of common client pools (httpx, Node), so a client would now and then
# reuse a connection the server is closing: a reset on a POST nobody retries. Longer
# than any client's pool (and than load balancers' 60 s) leaves closing to the client.
KEEP_ALIVE_SECONDS = 75

# Lambda's synchronous invocation payload limit (request and response, each).
LAMBDA_PAYLOAD_BYTES = 6 * MiB
# The rest of the event around the body: headers (API Gateway allows 10 KiB of them),
# the request context, the JSON of it all.
EVENT_ENVELOPE_BYTES = 32 * 1024
# The multipart framing around the file: boundaries, part headers, and the form fields at
# their longest (title 200, description 2,000, 20 tags of 50 characters).
MULTIPART_OVERHEAD_BYTES = 16 * 1024
# The largest file that still fits once base64 has made 4 bytes of every 3: about 4.4 MiB.
DIRECT_UPLOAD_CEILING = (
    LAMBDA_PAYLOAD_BYTES - EVENT_ENVELOPE_BYTES
) * 3 // 4 - MULTIPART_OVERHEAD_BYTES


class Settings(BaseSettings):
    """Everything the service can be told. Env prefix `IMAGES_`, plus boto3's standard
    `AWS_ENDPOINT_URL*` variables so LocalStack, moto and real AWS work unchanged."""

    model_config = SettingsConfigDict(
        env_prefix="IMAGES_",
        frozen=True,
        extra="ignore",
        populate_by_name=True,
        # A rejected secret must not end up in a log line.
        hide_input_in_errors=True,
    )

    bucket: str = "images"
    table: str = "images"
    # The queue S3 notifies of uploads (its dead-letter queue is "<queue>-dead").
    queue: str = "images-uploads"
    # How long the local worker's ReceiveMessage waits for a message (SQS allows 0..20).
    worker_poll_seconds: int = Field(default=20, ge=0, le=20)
    region: str = Field(
        default="us-east-1",
        validation_alias=AliasChoices("IMAGES_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"),
    )

    # Identity. "jwt": verify the bearer token here. "apigateway": API Gateway's JWT
    # authorizer verified it and the owner is the `sub` claim it put in the event.
    auth_mode: Literal["jwt", "apigateway"] = "jwt"
    # HS256 with a short key is brute-forceable offline from any one token (RFC 7518 3.2).
    jwt_secret: Annotated[SecretStr, Field(min_length=32)] | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    # Refuse tokens meant to live longer than this (exp - iat); none by default.
    jwt_max_lifetime_seconds: int | None = Field(default=None, ge=60)
    # Signs list cursors; defaults to a key derived from the JWT secret.
    cursor_secret: Annotated[SecretStr, Field(min_length=32)] | None = None
    # Derives each user's key prefix (app/domain/owners.py); defaults to a key derived
    # from the JWT secret. Never change it: new images would go under new prefixes.
    owner_secret: Annotated[SecretStr, Field(min_length=32)] | None = None

    # Limits.
    max_upload_bytes: int = Field(default=20 * MiB, ge=1, le=5 * 1024 * MiB)
    upload_url_ttl_seconds: int = Field(default=15 * 60, ge=60, le=3600)
    download_url_ttl_seconds: int = Field(default=5 * 60, ge=1, le=7 * 24 * 3600)
    # Thumb and preview URLs are signed as of the start of the current window (and live
    # a window longer): within it an image keeps one URL, so browsers cache its thumb.
    variant_url_window_seconds: int = Field(default=5 * 60, ge=1, le=24 * 3600)
    # How long an upload may stay unconfirmed; then the sweep removes it from both stores.
    # At most a day: the bucket's lifecycle rule expires still-pending objects after two,
    # which must stay later than any confirm (and the sweep's retag after it).
    upload_deadline_seconds: int = Field(default=24 * 3600, ge=60, le=24 * 3600)
    # Per-user quotas, reserved when an upload starts (pending uploads count) and given
    # back when it is deleted or swept: images, their bytes, and what may be outstanding
    # unconfirmed at once, so nobody parks storage in uploads they never finish.
    max_images_per_user: int = Field(default=10_000, ge=1)
    max_bytes_per_user: int = Field(default=10 * 1024 * MiB, ge=1)
    max_pending_uploads: int = Field(default=1000, ge=1)
    max_pending_bytes: int = Field(default=2 * 1024 * MiB, ge=1)
    # Seconds a 429 for too many unconfirmed uploads tells the client to wait: slots free
    # as the client's own uploads are confirmed.
    pending_retry_after_seconds: Seconds = 5
    # How long an Idempotency-Key is remembered (at least a day, as clients expect).
    idempotency_ttl_seconds: int = Field(default=24 * 3600, ge=24 * 3600, le=30 * 24 * 3600)
    # A confirmed image or a started delete whose follow-up work (retagging, variants,
    # removing bytes) is not reported done within this time is finished by the sweep.
    finish_grace_seconds: int = Field(default=600, ge=1)
    # Items the sweep takes from one shard before moving to the next (fairness).
    sweep_batch: int = Field(default=25, ge=1, le=1000)
    # Reconcile trusts the listing index only once the user's usage has not changed for
    # this long: the index is eventually consistent.
    reconcile_settle_seconds: float = Field(default=10, ge=0, le=300)
    # Images with more pixels are refused at confirm: a 40-megapixel cap stops pixel
    # floods aimed at whatever decodes the image later (thumbnails, browsers).
    max_pixels: int = Field(default=40_000_000, ge=1)
    # The variants every ready image gets, by name (JSON): app/domain/variants.py.
    variants: dict[VariantName, VariantSpec] = Field(default_factory=lambda: dict(DEFAULT_VARIANTS))
    # Each render (decode, variants, placeholder) runs in a child process bounded to this
    # much CPU time (and three times as much wall-clock time) and this much more address
    # space: an image that takes more ends with failed variants and the reason. Ten
    # seconds is some thirty times a 12 MP photo; the largest allowed PNG added 346 MB
    # (docs/benchmarks.md). The worker's timeout is sized from it (template.yaml).
    render_cpu_seconds: int = Field(default=10, ge=1, le=120)
    render_memory_bytes: int = Field(default=1024 * MiB, ge=64 * MiB)
    # Largest JSON request body; refused with 413 before it is read or parsed.
    max_json_body_bytes: int = Field(default=64 * 1024, ge=1024, le=MiB)
    # Most items one list request may read from DynamoDB while filling a page.
    list_read_budget: int = Field(default=1000, ge=101, le=10_000)
    # Bytes read from the start of an object to verify its type and dimensions; a header
    # that runs further (a large colour profile, XMP, EXIF) is read on, up to the most.
    verify_prefix_bytes: int = Field(default=64 * 1024, ge=1024, le=MiB)
    verify_max_bytes: int = Field(default=4 * MiB, ge=64 * 1024, le=64 * MiB)

    # Largest file POST /images/direct takes. Lambda's 6 MB limit applies to the whole
    # event, and API Gateway sends the body base64-encoded: see DIRECT_UPLOAD_CEILING.
    max_direct_bytes: int = Field(default=DIRECT_UPLOAD_CEILING, ge=1, le=DIRECT_UPLOAD_CEILING)

    # Serving.
    # Stage prefix under API Gateway (e.g. "/prod"): stripped from request paths, and
    # the root path the OpenAPI docs are served under.
    api_base_path: str = Field(default="", pattern=r"^(/[A-Za-z0-9._~-]+)*$")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Trace every AWS call as an X-Ray subsegment (Lambda's active tracing on top).
    xray: bool = False
    # Where `make run`'s embedded emulator keeps its items, objects and messages across
    # restarts (relative: to where it is started, the checkout for `make run`).
    data_dir: Path = Path(".data")
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    s3_public_endpoint_url: str | None = None
    # Origins allowed by the bucket's CORS rule, so a browser page can PUT and GET.
    cors_origins: tuple[str, ...] = ("http://localhost:8080", "http://127.0.0.1:8080")
    # Upload URLs through S3 Transfer Acceleration (the bucket must have it enabled).
    s3_accelerate: bool = False

    # Malware scanning (app/pipeline/scanning.py): nothing is served before its bytes are
    # found clean. "clamav": the worker streams each upload to clamd (IMAGES_CLAMD, or
    # for `make run` a clamd of its own on IMAGES_CLAMAV_DATABASE); "guardduty": GuardDuty
    # Malware Protection for S3 scans, the worker applies its verdicts.
    scan: Literal["off", "clamav", "guardduty"] = "off"
    clamd: str | None = Field(default=None, pattern=r"^(unix://.+|tcp://[^:/]+:\d+)$")
    clamav_database: Path | None = None
    # A scanner that cannot judge an image (not one that is down) is asked this many times.
    scan_attempts: int = Field(default=3, ge=1, le=10)
    scan_timeout_seconds: float = Field(default=60, gt=0, le=600)
    # What a download of an image not scanned yet tells the client to wait.
    scan_retry_after_seconds: Seconds = 5

    # Reading through CloudFront (app/storage/cdn.py): with a CDN URL, every URL handed
    # out for reading is CloudFront-signed with this key pair; without, S3-presigned.
    # The private key comes from a PEM file, or (Lambda) an SSM SecureString read once.
    cdn_url: str | None = Field(default=None, pattern=r"^https?://[^/?#]+$")
    cdn_key_pair_id: str | None = Field(default=None, pattern=r"^[A-Z0-9]{8,32}$")
    cdn_private_key_file: Path | None = None
    cdn_private_key_parameter: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.\-/]+$")
    # POST /cdn-cookies: signed cookies for a page on a domain the CDN shares (their
    # Domain attribute; unset: the API's host only).
    cdn_cookies: bool = False
    cdn_cookie_domain: str | None = Field(default=None, pattern=r"^\.?[A-Za-z0-9.-]+$")
    cdn_cookie_ttl_seconds: int = Field(default=3600, ge=300, le=7 * 24 * 3600)

    # boto3's own variables, read here so the app can reason about them (embedded
    # emulator or not, which endpoint presigned URLs name). boto3 would honor them
    # by itself too; we pass them explicitly so a test's Settings wins over the env.
    aws_endpoint_url: str | None = Field(
        default=None, validation_alias=AliasChoices("AWS_ENDPOINT_URL")
    )
    aws_endpoint_url_s3: str | None = Field(
        default=None, validation_alias=AliasChoices("AWS_ENDPOINT_URL_S3")
    )
    aws_endpoint_url_dynamodb: str | None = Field(
        default=None, validation_alias=AliasChoices("AWS_ENDPOINT_URL_DYNAMODB")
    )
    aws_endpoint_url_sqs: str | None = Field(
        default=None, validation_alias=AliasChoices("AWS_ENDPOINT_URL_SQS")
    )
    aws_endpoint_url_ssm: str | None = Field(
        default=None, validation_alias=AliasChoices("AWS_ENDPOINT_URL_SSM")
    )

    @field_validator("variants")
    @classmethod
    def _variants(cls, variants: dict[str, VariantSpec]) -> dict[str, VariantSpec]:
        return checked(variants)

    @field_validator(
        "cdn_url",
        "cdn_key_pair_id",
        "cdn_private_key_file",
        "cdn_private_key_parameter",
        "cdn_cookie_domain",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # The template sets every variable, empty where a switch is off.
        return None if value == "" else value

    @model_validator(mode="after")
    def _cdn_is_whole(self) -> "Settings":
        sources = [self.cdn_private_key_file, self.cdn_private_key_parameter]
        if self.cdn_url is None:
            if self.cdn_key_pair_id or any(sources) or self.cdn_cookies:
                raise ValueError("the CDN settings need cdn_url (IMAGES_CDN_URL)")
            return self
        if self.cdn_key_pair_id is None:
            raise ValueError("cdn_url needs cdn_key_pair_id (IMAGES_CDN_KEY_PAIR_ID)")
        if sum(source is not None for source in sources) != 1:
            raise ValueError(
                "cdn_url needs one private key: cdn_private_key_file or "
                "cdn_private_key_parameter (IMAGES_CDN_PRIVATE_KEY_FILE or _PARAMETER)"
            )
        return self

    @model_validator(mode="after")
    def _accelerate_is_possible(self) -> "Settings":
        if not self.s3_accelerate:
            return self
        # S3 serves accelerated requests only by virtual-hosted names on AWS's endpoint:
        # a bucket name that is not one DNS label per dot-free name cannot take them.
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]", self.bucket):
            raise ValueError(
                f"s3_accelerate needs a bucket name without dots ({self.bucket!r} has some, "
                "or is not DNS-compatible)"
            )
        if self.s3_endpoint or self.s3_public_endpoint_url:
            raise ValueError("s3_accelerate works against AWS only, not a custom S3 endpoint")
        return self

    @model_validator(mode="after")
    def _deadline_outlives_upload_url(self) -> "Settings":
        # A PUT through a still-valid URL must never land after its record was swept.
        if self.upload_deadline_seconds < self.upload_url_ttl_seconds:
            raise ValueError("upload_deadline_seconds must be at least upload_url_ttl_seconds")
        return self

    @property
    def largest_upload(self) -> int:
        """The largest `size` POST /images accepts (the schema publishes it): bigger could
        never be stored, whatever the user has stored so far."""
        return min(self.max_upload_bytes, self.max_bytes_per_user, self.max_pending_bytes)

    @property
    def largest_direct_upload(self) -> int:
        return min(self.max_direct_bytes, self.max_bytes_per_user, self.max_pending_bytes)

    @property
    def s3_endpoint(self) -> str | None:
        return self.aws_endpoint_url_s3 or self.aws_endpoint_url

    @property
    def dynamodb_endpoint(self) -> str | None:
        return self.aws_endpoint_url_dynamodb or self.aws_endpoint_url

    @property
    def sqs_endpoint(self) -> str | None:
        return self.aws_endpoint_url_sqs or self.aws_endpoint_url

    @property
    def ssm_endpoint(self) -> str | None:
        return self.aws_endpoint_url_ssm or self.aws_endpoint_url

    @property
    def presign_endpoint(self) -> str | None:
        return self.s3_public_endpoint_url or self.s3_endpoint

    @property
    def uses_custom_endpoints(self) -> bool:
        return bool(self.s3_endpoint or self.dynamodb_endpoint)
