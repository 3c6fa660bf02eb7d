"""The system under simulation: the real service graph (app.composition.build) over moto
in-process, with a clock the simulation moves, image ids it can predict, the worker fed
by the simulated queue and scanning with the simulated scanner; and what the table and
the bucket hold, read straight from moto's backends (cheap enough for every step)."""

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from moto import mock_aws
from moto.dynamodb.models import dynamodb_backends
from moto.s3.models import s3_backends

from app.composition import Services, build
from app.config import Settings
from app.domain.records import ImageRecord
from app.images import service as service_module
from app.pipeline import screening as screening_module
from app.pipeline.worker import Worker
from app.storage.clients import AwsClients
from app.storage.items import from_item
from app.storage.resources import ensure_resources
from tests.imagefiles import make_image, not_a_png
from tests.simulation.faults import Injector
from tests.simulation.scanner import MARKER, SimScanner

ACCOUNT, REGION = "123456789012", "us-east-1"
SECRET = "simulation-secret-" + "0123456789abcdef" * 4
# A fixed start: a run replays exactly, whatever day it is.
START = datetime(2030, 1, 1, tzinfo=UTC)
USERS = ("alice", "bob")


def simulation_settings() -> Settings:
    """The service as deployed with scanning on (clamav, the scanner replaced by the
    simulated one). Deadlines shorter than the defaults, in the same order (an upload
    URL expires before its deadline; the grace period is shorter than both)."""
    return Settings(
        jwt_secret=SECRET,
        max_upload_bytes=1024 * 1024,
        reconcile_settle_seconds=0,
        scan="clamav",
        upload_url_ttl_seconds=900,
        upload_deadline_seconds=3600,
        finish_grace_seconds=600,
        download_url_ttl_seconds=300,
        variant_url_window_seconds=300,
        idempotency_ttl_seconds=24 * 3600,
        scan_attempts=3,
    )


class Clock:
    """The service's clock, moved by the simulation. Like a real clock it never reads
    the same twice (a microsecond per read), so records sort by creation."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        self.now += timedelta(microseconds=1)
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def timestamp(self) -> float:
        return self.now.timestamp()


# --- The bytes clients PUT ---------------------------------------------------------------

# Every upload is declared with one of these sizes; S3 refuses a PUT of any other size
# (Content-Length is signed), so each size has its payloads, all exactly that long.
SIZES = (220, 640)
PAYLOADS = ("good", "good2", "garbage", "infected")


def _padded(data: bytes, size: int) -> bytes:
    assert len(data) <= size, (len(data), size)
    return data + b"\0" * (size - len(data))  # after IEND: decoders ignore it


def _payloads() -> dict[tuple[int, str], bytes]:
    made = {}
    for n, size in enumerate(SIZES):
        width, height = (32, 24) if n == 0 else (48, 36)
        made[size, "good"] = _padded(make_image(width=width, height=height, color="teal"), size)
        made[size, "good2"] = _padded(make_image(width=height, height=width, color="navy"), size)
        made[size, "infected"] = _padded(
            make_image(width=width, height=height, color="red") + MARKER, size
        )
        made[size, "garbage"] = not_a_png(size)  # a PNG signature, then HTML
    return made


PAYLOAD_BYTES = _payloads()
# Which payload some bytes are (the simulation looks at the bucket with it).
PAYLOAD_OF = {data: name for (_, name), data in PAYLOAD_BYTES.items()}
VERIFIABLE = frozenset({"good", "good2", "infected"})  # they pass confirm's checks
CLEAN = frozenset({"good", "good2"})


# --- What the stores hold ----------------------------------------------------------------


@dataclass(frozen=True)
class StoredObject:
    data: bytes
    etag: str
    tags: dict[str, str]


@dataclass(frozen=True)
class Snapshot:
    """The table and the bucket at one moment, as AWS holds them."""

    records: dict[str, ImageRecord]
    items: dict[str, dict[str, Any]]  # image records as DynamoDB items
    usage: dict[str, dict[str, Any]]  # user -> their usage item
    idempotency: dict[str, dict[str, Any]]
    objects: dict[str, StoredObject]  # key -> object

    def objects_of(self, image_id: str) -> dict[str, StoredObject]:
        return {key: obj for key, obj in self.objects.items() if f"/{image_id}/" in key}


class World:
    """One simulated deployment: fresh stores, the service graph, the worker."""

    def __init__(self, clients: AwsClients, injector: Injector) -> None:
        self.settings = simulation_settings()
        self.clock = Clock()
        self.clients = clients
        self.injector = injector
        self.scanner = SimScanner()
        self.services: Services = build(self.settings, clients, self.clock)
        ensure_resources(clients, self.settings)
        self.worker = Worker(
            self.services.confirmation,
            self.services.storage,
            self.settings,
            self.scanner,
            clock=self.clock,
        )
        self.images = self.services.images
        self.maintenance = self.services.maintenance
        injector.reset(self.clock)

    def snapshot(self) -> Snapshot:
        table = dynamodb_backends[ACCOUNT][REGION].get_table(self.settings.table)
        records, items, usage, idempotency = {}, {}, {}, {}
        for item in table.all_items():
            attributes = item.to_json()["Attributes"]
            key = attributes["image_id"]["S"]
            if key.startswith("usage#"):
                usage[key.removeprefix("usage#")] = attributes
            elif key.startswith("idempotency#"):
                idempotency[key] = attributes
            elif "user_id" in attributes:
                records[key] = from_item(attributes)
                items[key] = attributes
        backend = s3_backends[ACCOUNT]["aws"]
        bucket = backend.buckets[self.settings.bucket]
        objects = {}
        for name in list(bucket.keys.keys()):
            key = bucket.keys.get(name)
            if key is None:
                continue
            tags = backend.get_object_tagging(key).get("Tags", [])
            objects[name] = StoredObject(
                key.value, key.etag, {tag["Key"]: tag["Value"] for tag in tags}
            )
        return Snapshot(records, items, usage, idempotency, objects)

    def fire_ttl(self) -> int:
        """What DynamoDB's TTL does (moto never does): delete the items whose TTL has
        passed, telling nobody. Only idempotency keys carry one."""
        table = dynamodb_backends[ACCOUNT][REGION].get_table(self.settings.table)
        now = self.clock.timestamp()
        expired = [
            item.to_json()["Attributes"]["image_id"]
            for item in table.all_items()
            if "expires_at" in (attributes := item.to_json()["Attributes"])
            and int(attributes["expires_at"]["N"]) < now
        ]
        for key in expired:
            self.clients.dynamodb.delete_item(TableName=self.settings.table, Key={"image_id": key})
        return len(expired)


def predictable_ids() -> Iterator[str]:
    """Image ids' random part, from a counter: a history replays with the same ids (and
    so the same sweep shards). Hashed, so they still spread over the shards."""
    n = 0
    while True:
        n += 1
        yield hashlib.sha256(f"simulated image {n}".encode()).hexdigest()[:24]


@contextmanager
def deployment() -> Iterator["Deployments"]:
    """moto for a whole run; each example asks `Deployments.fresh()` for new stores. One
    boto3 session and its clients for the run (building them costs more than a step)."""
    settings = simulation_settings()
    with mock_aws() as mock:
        clients = AwsClients(settings)
        injector = Injector()
        for client in (clients.dynamodb, clients.s3):
            injector.install(client)
        real_ids = service_module.new_image_id
        real_audit = screening_module.audit_infected
        deployments = Deployments(mock, clients, injector)
        service_module.new_image_id = deployments.new_image_id  # type: ignore[assignment]
        screening_module.audit_infected = deployments.audited  # type: ignore[assignment]
        try:
            yield deployments
        finally:
            service_module.new_image_id = real_ids
            screening_module.audit_infected = real_audit


class Deployments:
    def __init__(self, mock: Any, clients: AwsClients, injector: Injector) -> None:
        self._mock = mock
        self.clients = clients
        self.injector = injector
        self._ids: Iterator[str] = predictable_ids()
        self.audit: list[tuple[str, str, str]] = []  # (image id, signature, etag)

    def fresh(self) -> World:
        self._mock.reset()
        self._ids = predictable_ids()
        self.audit = []
        return World(self.clients, self.injector)

    def new_image_id(self, owner: str) -> str:
        return next(self._ids) + owner

    def audited(self, record: ImageRecord, signature: str, engine: str, etag: str) -> None:
        """What the operator is told of malware (app/pipeline/audit.py), recorded."""
        self.audit.append((record.id, signature, etag))
