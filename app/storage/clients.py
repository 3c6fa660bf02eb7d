"""boto3 clients, built once and shared, and the translation of AWS failures."""

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar, cast

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from app.config import Settings
from app.domain.errors import Unavailable

if TYPE_CHECKING:
    from botocore.credentials import ReadOnlyCredentials
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_ssm import SSMClient

# Codes that mean "AWS is busy or briefly broken": the caller should retry later (503).
TRANSIENT_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "SlowDown",
        "RequestTimeout",
        "TransactionConflictException",
    }
)


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@contextmanager
def aws_call() -> Iterator[None]:
    """Turn whatever botocore raises into a domain error; callers catch the codes they
    expect (conditional check failures, missing keys) before this sees them."""
    try:
        yield
    except ClientError as exc:
        code = error_code(exc)
        detail = "Storage is busy, retry shortly" if code in TRANSIENT_CODES else "Storage failed"
        raise Unavailable(f"{detail} ({code})") from exc
    except BotoCoreError as exc:  # timeouts, refused connections, exhausted retries
        raise Unavailable("Storage is unreachable, retry shortly") from exc


T = TypeVar("T")

# The refusal a conditional write expects: the condition did not hold (DynamoDB), or S3's
# If-None-Match / If-Match did not (the object exists already, or holds other bytes).
CONDITION_FAILED = "ConditionalCheckFailedException"
PRECONDITION_FAILED = "PreconditionFailed"
# What S3 answers a conditional delete of a key that is not there.
MISSING_KEYS = frozenset({"NoSuchKey", "404", "NotFound"})


def unless_refused(call: Callable[[], T], refusal: str | frozenset[str]) -> T | None:
    """`call`'s answer, or None when AWS refuses it with `refusal` (a code or a set of
    them): for a conditional write, the answer that the condition (not AWS) said no.
    Anything else as aws_call."""
    refusals = {refusal} if isinstance(refusal, str) else refusal
    with aws_call():
        try:
            return call()
        except ClientError as exc:
            if error_code(exc) in refusals:
                return None
            raise


def _config(settings: Settings, endpoint: str | None, accelerate: bool = False) -> Config:
    return Config(
        region_name=settings.region,
        signature_version="s3v4",
        # Standard mode retries throttling with backoff; bounded timeouts keep a request
        # from hanging for botocore's default 60 s while API Gateway gives up at 30 s.
        retries={"mode": "standard", "total_max_attempts": 3},
        connect_timeout=2,
        read_timeout=10,
        max_pool_connections=64,
        tcp_keepalive=True,
        # Emulators (moto, LocalStack) answer on one host name: virtual-hosted bucket
        # names like images.127.0.0.1 would not resolve.
        s3={"addressing_style": "path" if endpoint else "auto"}
        if not accelerate
        else {"use_accelerate_endpoint": True, "addressing_style": "virtual"},
    )


class AwsClients:
    """One boto3 Session and its clients for the process, created on first use.

    Nothing is built at import time or per request: a Session costs ~170 ms and a client
    ~6 ms, which a Lambda cold start or a request would otherwise pay again and again.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._session: boto3.session.Session | None = None
        self._built: dict[str, Any] = {}

    def _client(
        self, name: str, service: str, endpoint: str | None, accelerate: bool = False
    ) -> Any:
        client = self._built.get(name)
        if client is None:
            # The threadpool serves requests concurrently: without the lock two first
            # requests would each build a Session and clients.
            with self._lock:
                client = self._built.get(name)
                if client is None:
                    if self._session is None:
                        self._session = boto3.session.Session(region_name=self._settings.region)
                    config = _config(self._settings, endpoint, accelerate)
                    client = self._session.client(  # type: ignore[call-overload]
                        service, endpoint_url=endpoint, config=config
                    )
                    self._built[name] = client
        return client

    @property
    def s3(self) -> "S3Client":
        return cast("S3Client", self._client("s3", "s3", self._settings.s3_endpoint))

    @property
    def s3_presign(self) -> "S3Client":
        """Signs URLs for the caller's network: the host is part of the signature, so it
        must be the public endpoint (e.g. localhost:4566), not the one the server uses."""
        endpoint = self._settings.presign_endpoint
        if endpoint == self._settings.s3_endpoint:
            return self.s3
        return cast("S3Client", self._client("s3_presign", "s3", endpoint))

    @property
    def s3_upload(self) -> "S3Client":
        """Signs upload URLs: through S3 Transfer Acceleration's edge when it is on (the
        accelerate endpoint is a host of its own, part of the signature)."""
        if not self._settings.s3_accelerate:
            return self.s3_presign
        return cast("S3Client", self._client("s3_upload", "s3", None, accelerate=True))

    @property
    def ssm(self) -> "SSMClient":
        return cast("SSMClient", self._client("ssm", "ssm", self._settings.ssm_endpoint))

    @property
    def dynamodb(self) -> "DynamoDBClient":
        endpoint = self._settings.dynamodb_endpoint
        return cast("DynamoDBClient", self._client("dynamodb", "dynamodb", endpoint))

    @property
    def sqs(self) -> "SQSClient":
        endpoint = self._settings.sqs_endpoint
        return cast("SQSClient", self._client("sqs", "sqs", endpoint))

    def credentials(self) -> "ReadOnlyCredentials":
        """The signing credentials right now (refreshed by botocore when they rotate)."""
        _ = self.s3_presign  # the Session exists once a client does
        assert self._session is not None  # noqa: S101 - made by the line above
        credentials = self._session.get_credentials()
        if credentials is None:
            raise Unavailable("No AWS credentials to sign URLs with")
        return credentials.get_frozen_credentials()

    def warm(self) -> None:
        """Build every client now rather than on the first request."""
        _ = self.s3, self.s3_presign, self.dynamodb
