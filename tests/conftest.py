"""Fixtures: fresh in-process moto state per test, an app built from test settings,
two users, a counter of AWS round trips, and (for the HTTP tier) real servers."""

import os
import shutil
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx2 as httpx
import pytest
from botocore.client import BaseClient
from fastapi import FastAPI
from fastapi.testclient import TestClient
from moto import mock_aws

from app.composition import build
from app.config import Settings
from app.http.app import create_app
from app.http.auth import issue_token
from app.local.server import free_port
from app.pipeline.worker import Worker
from app.storage.clients import AwsClients
from app.storage.items import PENDING_TAGGING, object_key
from app.storage.resources import ensure_resources
from tests.imagefiles import make_image
from tests.servers import (
    BASE_ENV,
    MakeRun,
    localstack,
    localstack_missing,
    make_run_server,
    moto_server,
    running,
    uvicorn_command,
)
from tests.stores import Stores

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

SECRET = "test-secret-" + "0123456789abcdef" * 4


# tryfirst: xdist's worker reads the groups in its own hook of this name, which otherwise
# runs first and finds none (every file's servers then started on both workers: the
# quick bench, 49 s, twice). And pytest stays below 9 (pyproject.toml): xdist 3.8 groups
# by rewriting `item._nodeid`, which pytest 9 no longer reads.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under `--dist loadgroup`: a file whose tests share servers, a browser or a report
    (the http marker) stays on one worker, where they start once; every other test goes
    wherever a worker is free, so no worker idles while another works through a long file."""
    for item in items:
        if item.get_closest_marker("http") or item.get_closest_marker("clamav"):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))


@pytest.fixture(autouse=True)
def _aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Never let a developer's real credentials or endpoints leak into a test.
    for name in (
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ENDPOINT_URL_DYNAMODB",
        "AWS_SESSION_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture
def settings() -> Settings:
    # Moto's index is consistent at once: reconcile need not wait for it to settle.
    return Settings(jwt_secret=SECRET, max_upload_bytes=1024 * 1024, reconcile_settle_seconds=0)


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def atomic_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real DynamoDB and S3 apply each request atomically; moto's in-process backends are
    not thread-safe. One lock per AWS call gives moto that property and nothing more:
    the service's multi-step flows still interleave freely between calls."""
    lock = threading.Lock()
    real = BaseClient._make_api_call

    def atomic(self: BaseClient, operation: str, params: Any) -> Any:
        with lock:
            return real(self, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", atomic)


class Clock:
    """The service's clock, moved by hand: deadlines and grace periods pass instantly.
    Like a real clock it never reads the same twice (a microsecond per read), so records
    created one after another still sort by creation time."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(microseconds=1)
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


AppFactory = Callable[..., FastAPI]


@pytest.fixture
def make_app(aws: None, settings: Settings, clock: Clock) -> AppFactory:
    """make_app(**overrides): an app on fresh moto state, its resources created, with the
    test's settings changed by `overrides` and the test's clock."""

    def make(**overrides: Any) -> FastAPI:
        configured = Settings(**{**settings.model_dump(), **overrides}) if overrides else settings
        services = build(configured, clock=clock)
        ensure_resources(services.clients, configured)
        return create_app(services=services)

    return make


@pytest.fixture
def app(make_app: AppFactory) -> FastAPI:
    return make_app()


@pytest.fixture
def clients(app: FastAPI) -> AwsClients:
    aws_clients: AwsClients = app.state.services.clients
    return aws_clients


@pytest.fixture
def stores(clients: AwsClients, settings: Settings) -> Stores:
    return Stores(clients, settings)


@pytest.fixture
def client(app: FastAPI) -> TestClient:
    return TestClient(app)


def bearer(settings: Settings, user: str, ttl: int = 3600) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(settings, user, ttl)}"}


@pytest.fixture
def alice(settings: Settings) -> dict[str, str]:
    return bearer(settings, "alice")


@pytest.fixture
def bob(settings: Settings) -> dict[str, str]:
    return bearer(settings, "bob")


def new_image(
    content_type: str = "image/png", data: bytes | None = None, **fields: Any
) -> dict[str, Any]:
    body = data if data is not None else make_image(content_type)
    return {"filename": "photo.img", "content_type": content_type, "size": len(body), **fields}


Uploader = Callable[..., dict[str, Any]]


@pytest.fixture
def create(client: TestClient) -> Uploader:
    """POST /images and return the created Image."""

    def _create(
        headers: dict[str, str],
        content_type: str = "image/png",
        data: bytes | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        response = client.post(
            "/images", json=new_image(content_type, data, **fields), headers=headers
        )
        assert response.status_code == 201, response.text
        image: dict[str, Any] = response.json()["image"]
        return image

    return _create


PutBytes = Callable[[str, bytes, str], None]


@pytest.fixture
def put_bytes(clients: AwsClients, settings: Settings) -> PutBytes:
    """What the client's presigned PUT does (the headers it is signed with), written
    straight to (mocked) S3."""

    def _put(image_id: str, data: bytes, content_type: str = "image/png") -> None:
        clients.s3.put_object(
            Bucket=settings.bucket,
            Key=object_key(image_id),
            Body=data,
            ContentType=content_type,
            Tagging=PENDING_TAGGING,
            IfNoneMatch="*",
        )

    return _put


@pytest.fixture
def pending(create: Uploader, put_bytes: Callable[[str, bytes, str], None]) -> Uploader:
    """Create and PUT real bytes, as a client does before confirming: a pending image."""

    def _pending(
        headers: dict[str, str],
        content_type: str = "image/png",
        data: bytes | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        body = data if data is not None else make_image(content_type)
        image = create(headers, content_type, body, **fields)
        put_bytes(image["id"], body, content_type)
        return image

    return _pending


@pytest.fixture
def upload(client: TestClient, pending: Uploader) -> Uploader:
    """Create, put real bytes, confirm: a ready image."""

    def _upload(
        headers: dict[str, str],
        content_type: str = "image/png",
        data: bytes | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        image = pending(headers, content_type, data, **fields)
        response = client.post(f"/images/{image['id']}/confirm", headers=headers)
        assert response.status_code == 200, response.text
        confirmed: dict[str, Any] = response.json()
        return confirmed

    return _upload


Drain = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def worker(app: FastAPI) -> Worker:
    """The worker over the app's own stores (what a test patches there, it sees)."""
    worker: Worker = app.state.services.worker
    return worker


def deliver(worker: Worker, clients: AwsClients, settings: Settings) -> list[dict[str, Any]]:
    """Deliver every queued message once to `worker`, as Lambda would (batches of up to
    10); each batch's answer. What a batch reports done is deleted from the queue."""
    url = clients.sqs.get_queue_url(QueueName=settings.queue)["QueueUrl"]
    answers = []
    while True:
        messages = clients.sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0
        ).get("Messages", [])
        if not messages:
            return answers
        answer = worker.handle(
            {"Records": [{"messageId": m["MessageId"], "body": m["Body"]} for m in messages]}
        )
        answers.append(answer)
        failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
        for message in messages:
            if message["MessageId"] not in failed:
                clients.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        if failed:
            return answers


@pytest.fixture
def drain(worker: Worker, clients: AwsClients, settings: Settings) -> Drain:
    """Deliver every queued message once to the app's worker (see `deliver`)."""
    return lambda: deliver(worker, clients, settings)


@pytest.fixture
def aws_calls(clients: AwsClients) -> Counter[str]:
    """Every AWS API call the app makes from now on, as 'service.Operation' counts."""
    calls: Counter[str] = Counter()

    def record(event_name: str, **_: Any) -> None:
        calls[event_name.removeprefix("before-call.")] += 1

    for aws_client in {
        id(c): c for c in (clients.s3, clients.s3_presign, clients.dynamodb)
    }.values():
        aws_client.meta.events.register("before-call", record)
    return calls


# --- The HTTP tier: one moto server and one uvicorn for the session ----------------------


@pytest.fixture(scope="session")
def aws_endpoint() -> Iterator[str]:
    """AWS_ENDPOINT_URL when given (LocalStack, a shared moto), else a moto server of ours."""
    given = os.environ.get("AWS_ENDPOINT_URL")
    if given:
        yield given
        return
    with moto_server() as url:
        yield url


def _provisioned(prefix: str, endpoints: dict[str, str]) -> dict[str, str]:
    """The service's environment against these endpoints, its resources created by the
    service's own command, under names no other run uses (endpoints may be shared)."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    env = {
        **BASE_ENV,
        **endpoints,
        "IMAGES_JWT_SECRET": SECRET,
        "IMAGES_BUCKET": name,
        "IMAGES_TABLE": name,
        "IMAGES_QUEUE": name,
    }
    subprocess.run(
        [sys.executable, "-m", "app", "create-resources"], env=env, check=True, capture_output=True
    )
    return env


@contextmanager
def _served(env: dict[str, str]) -> Iterator[httpx.Client]:
    """The container's uvicorn command in this environment, and a client for it."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with (
        running(uvicorn_command(port), env, f"{base}/health"),
        httpx.Client(base_url=base, timeout=10) as client,
    ):
        yield client


@pytest.fixture(scope="session")
def service_env(aws_endpoint: str) -> dict[str, str]:
    return _provisioned("images-test", {"AWS_ENDPOINT_URL": aws_endpoint})


@pytest.fixture(scope="session")
def api(service_env: dict[str, str]) -> Iterator[httpx.Client]:
    with _served(service_env) as client:
        yield client


# --- The tier against an S3 that enforces presigned signatures (LocalStack) --------------

# LocalStack signs with the secret "test": any other secret fails its signature checks.
LOCALSTACK_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}


@pytest.fixture(scope="session")
def enforcing_s3() -> Iterator[str]:
    """LocalStack's S3 (and SQS) on loopback; skipped, saying why, where it cannot start."""
    reason = localstack_missing()
    if reason:
        pytest.skip(reason)
    with localstack() as url:
        yield url


@pytest.fixture(scope="session")
def strict_env(enforcing_s3: str, aws_endpoint: str) -> dict[str, str]:
    """The service's environment: S3 and SQS on LocalStack (real bucket notifications),
    DynamoDB on the embedded emulator (LocalStack's DynamoDB needs a Java download)."""
    return _provisioned(
        "strict",
        {
            **LOCALSTACK_CREDENTIALS,
            "AWS_ENDPOINT_URL_S3": enforcing_s3,
            "AWS_ENDPOINT_URL_SQS": enforcing_s3,
            "AWS_ENDPOINT_URL_DYNAMODB": aws_endpoint,
        },
    )


@pytest.fixture(scope="session")
def strict_api(strict_env: dict[str, str]) -> Iterator[httpx.Client]:
    with _served(strict_env) as client:
        yield client


# --- `make run`: the embedded-emulator server a newcomer starts --------------------------


@pytest.fixture(scope="session")
def make_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MakeRun]:
    """`python -m app serve` (what `make run` runs) with no AWS configured, for the
    session, keeping its data in a directory of its own."""
    with make_run_server(tmp_path_factory.mktemp("make-run-data")) as server:
        yield server


def refusal(response: Any) -> tuple[int, str]:
    """A refused request's status and code: every refusal the service answers carries
    both, and a client branches on the code."""
    return response.status_code, response.json()["code"]


# --- A real browser: Debian's Chromium, driven by Playwright ---------------------------

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser() -> Iterator["Browser"]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed: .ci/run installs Debian's chromium package")
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - needs Chromium

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: "Browser") -> Iterator["Page"]:
    """A page that fails its test on any script error or Content-Security-Policy refusal."""
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    opened = context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(str(error)))
    # What the Content-Security-Policy refused (an inline script, a style, an eval).
    opened.on(
        "console",
        lambda message: problems.append(message.text) if "Refused to" in message.text else None,
    )
    yield opened
    context.close()
    assert problems == []


@pytest.fixture(scope="session")
def clamd_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real clamd on the tests' own database (tests/clamav.py); skipped without clamd."""
    from tests.clamav import SIGNATURES, running_clamd, write_database  # noqa: PLC0415

    database = write_database(tmp_path_factory.mktemp("clamav-db"), SIGNATURES)
    with running_clamd(database) as address:
        yield address
