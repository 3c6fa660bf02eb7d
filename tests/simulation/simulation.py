"""The simulation's actions, as a plain API: what clients, S3, the queue, the worker,
the sweep, the scanner and time can do, one step at a time. The Hypothesis state
machine (tests/simulation/machine.py) draws these steps; the regression tests
(tests/test_simulation_regressions.py) replay the histories it found, step by step.

Every action leaves the model (what each client knows and did) up to date and checks
what the service answered; `check()` then checks every invariant that must hold after
every step, and `quiesce()` lets everything settle and checks the quiet-point ones
(tests/simulation/invariants.py)."""

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from app.domain.errors import InvalidImage
from app.images.maintenance import SweepReport
from app.images.models import CreateImageRequest, CreateImageResponse, Image, ListQuery
from app.storage.items import PENDING_TAGGING, object_key
from tests.simulation import invariants
from tests.simulation.faults import Fault
from tests.simulation.queue import POISON, Message, SimQueue, s3_notification
from tests.simulation.world import PAYLOAD_BYTES, SIZES, USERS, Deployments, World, deployment

# How far `advance` moves the clock: past each window, grace period and deadline.
SPANS = {
    "second": 1,
    "minute": 60,
    "url-window": 301,  # variant URLs are signed per 5-minute window
    "grace": 601,  # finish_grace_seconds
    "upload-url": 901,  # upload_url_ttl_seconds
    "deadline": 3601,  # upload_deadline_seconds
    "day": 24 * 3600 + 1,  # idempotency_ttl_seconds
}
OPERATIONS = ("confirm", "delete", "deliver", "sweep")
VARIANTS = ("original", "thumb", "preview")
LIST_STATUSES = ("ready", "pending", "rejected")
# An image index meaning "the image the paused operation works on": a race needs a
# second actor on the same image.
PAUSED = -1
MOST_IMAGES = 16  # per history: "a handful of images"
DRAIN_ROUNDS = 12


@dataclass
class Upload:
    """One image as its client knows it."""

    number: int  # #n: the order the client learned of it
    id: str
    user: str
    size: int
    key: str | None  # its Idempotency-Key
    url_expires: float  # when its (latest) upload URL stops working
    puts: list[str] = field(default_factory=list)  # payloads S3 accepted, in order
    delete_asked: bool = False
    deleted: bool = False  # a DELETE answered 204
    # When its owner first asked to delete it: the ETag of its original (if any), and
    # how many PUTs S3 had accepted.
    at_delete: tuple[str | None, int] | None = None

    def __str__(self) -> str:
        return f"#{self.number}"


@dataclass
class KeyedCreate:
    """A create sent with an Idempotency-Key, which the client may send again."""

    user: str
    key: str
    size: int
    answers: list[str] = field(default_factory=list)  # the image ids it was answered


@dataclass
class Paused:
    operation: str
    target: str
    complete: Callable[[Any, BaseException | None], None]
    image_id: str | None  # the image it works on (a sweep: none in particular)


class Simulation:
    def __init__(self, world: World, audit: list[tuple[str, str, str]]) -> None:
        self.world = world
        self.settings = world.settings
        self.clock = world.clock
        self.injector = world.injector
        self.scanner = world.scanner
        self.queue = SimQueue()
        self.uploads: list[Upload] = []
        self.by_id: dict[str, Upload] = {}
        self.keyed: list[KeyedCreate] = []
        self.ready_etags: dict[str, str] = {}  # image id -> ETag of the bytes made ready
        self.audit = audit
        self.paused: Paused | None = None
        self.trace: list[str] = []
        self.steps = 0
        self.quiet_at = 0  # the step of the last quiet point
        self._keys = itertools.count()

    # --- Plumbing --------------------------------------------------------------------

    def note(self, what: str) -> None:
        self.trace.append(f"[{self.steps}] {what}")

    def _run(
        self, call: Callable[[], Any], fault: Fault | None
    ) -> tuple[Any, BaseException | None]:
        """One operation with (perhaps) a fault armed on its AWS calls."""
        self.injector.arm(fault)
        try:
            return call(), None
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            return None, exc
        finally:
            self.injector.disarm()

    def _client_error(self, action: str, error: BaseException | None) -> None:
        invariants.answers_are_never_internal_errors(action, error)

    def upload(self, image: int) -> Upload:
        """The client's image `image`, counted from its newest (0) back; PAUSED: the one
        the paused operation works on (else the newest)."""
        if image == PAUSED:
            target = self.paused and self.by_id.get(self.paused.image_id or "")
            return target or self.uploads[-1]
        return self.uploads[-1 - image % len(self.uploads)]

    # --- Clients ---------------------------------------------------------------------

    def create(
        self,
        user: str,
        size: int = 0,
        keyed: bool = False,
        answer_lost: bool = False,
        fault: Fault | None = None,
        payload: str | None = None,
    ) -> None:
        """POST /images (with or without an Idempotency-Key); the answer may be lost on
        its way back (the client never learns the id: a keyed client sends it again).
        With a payload, the client PUTs it as soon as it has the URL, as most do."""
        request_size = SIZES[size % len(SIZES)]
        keyed_create = None
        if keyed:
            keyed_create = KeyedCreate(user, f"key-{next(self._keys)}", request_size)
            self.keyed.append(keyed_create)
        upload = self._create(user, request_size, keyed_create, answer_lost, fault)
        if upload is not None and payload is not None:
            self._put(upload, payload)

    def retry_create(self, which: int, answer_lost: bool = False) -> None:
        """The same keyed create sent again (after a lost answer, or any time later)."""
        keyed_create = self.keyed[which % len(self.keyed)]
        self._create(keyed_create.user, keyed_create.size, keyed_create, answer_lost, None)

    def _create(
        self,
        user: str,
        size: int,
        keyed: KeyedCreate | None,
        answer_lost: bool,
        fault: Fault | None,
    ) -> Upload | None:
        """The upload the client knows from the answer, if it got one."""
        request = CreateImageRequest(filename="photo.png", content_type="image/png", size=size)
        key = keyed.key if keyed else None
        answer, error = self._run(lambda: self.world.images.create(user, request, key), fault)
        self._client_error("create", error)
        if error is not None:
            self.note(f"create {user} {key or ''}: {error!r}")
            return None
        response: CreateImageResponse = answer[0]
        image_id = response.image.id
        if keyed is not None:
            keyed.answers.append(image_id)
        invariants.idempotency_key_answers_one_image(self, keyed)
        self.check_image_answer("create", user, response.image)
        if answer_lost:
            self.note(f"create {user} {key or ''}: {image_id[:6]}, answer lost")
            return None
        expires = response.upload.expires_at.timestamp()
        known = self.by_id.get(image_id)
        if known is not None:
            known.url_expires = max(known.url_expires, expires)
            self.note(f"create {user} {key}: replayed {known}")
            return known
        upload = Upload(len(self.uploads), image_id, user, size, key, expires)
        self.uploads.append(upload)
        self.by_id[image_id] = upload
        self.note(f"create {user} {key or ''}: {upload} = {image_id[:6]}")
        return upload

    def put(self, image: int, payload: str) -> None:
        """The client's presigned PUT: refused once its URL expired (403), and by
        If-None-Match: * once an object is there (412). S3 notifies the queue."""
        self._put(self.upload(image), payload)

    def _put(self, upload: Upload, payload: str) -> None:
        if self.clock.timestamp() >= upload.url_expires:
            self.note(f"put {upload} {payload}: URL expired (403)")
            return
        data = PAYLOAD_BYTES[upload.size, payload]
        settings = self.world.settings
        try:
            answer = self.world.clients.s3.put_object(
                Bucket=settings.bucket,
                Key=object_key(upload.id),
                Body=data,
                ContentType="image/png",
                Tagging=PENDING_TAGGING,
                IfNoneMatch="*",
            )
        except ClientError as exc:
            self.note(f"put {upload} {payload}: {exc.response['Error']['Code']}")
            return
        upload.puts.append(payload)
        etag = answer["ETag"]
        message = self.queue.send(
            s3_notification(settings.bucket, upload.id, etag, len(data)), upload.id, etag
        )
        self.note(f"put {upload} {payload}: accepted, message m{message.number}")

    def confirm(self, image: int, fault: Fault | None = None, reupload: str | None = None) -> None:
        """POST .../confirm. With `reupload`, a client told 422 does what the answer
        invites: PUTs those bytes instead, and confirms again."""
        upload = self.upload(image)
        call, complete = self._confirm(upload)
        answer, error = self._run(call, fault)
        complete(answer, error)
        if reupload is not None and isinstance(error, InvalidImage):
            self._put(upload, reupload)
            complete(*self._run(call, None))

    def _confirm(self, upload: Upload) -> tuple[Callable[[], Any], Callable[..., None]]:
        # A confirm that was under way when a delete answered may be ordered before it:
        # only one sent after the 204 must find nothing, and only one that no delete
        # overlapped must show what the stores hold once it answers.
        deleted_before, delete_asked_before = upload.deleted, upload.delete_asked

        def complete(answer: Image | None, error: BaseException | None) -> None:
            self._client_error("confirm", error)
            self.note(f"confirm {upload}: {answer.status if answer else repr(error)}")
            snapshot = self.world.snapshot()
            invariants.confirm_refusal_says_why(self, upload, error, snapshot)
            if deleted_before:
                invariants.deleted_image_is_not_found(upload, answer, error)
            if answer is not None and upload.delete_asked == delete_asked_before:
                self.check_image_answer("confirm", upload.user, answer, snapshot)

        return lambda: self.world.images.confirm(upload.user, upload.id), complete

    def get(self, image: int) -> None:
        upload = self.upload(image)
        answer, error = self._run(lambda: self.world.images.get(upload.user, upload.id), None)
        self._client_error("get", error)
        if upload.deleted:
            invariants.deleted_image_is_not_found(upload, answer, error)
        if answer is not None:
            self.check_image_answer("get", upload.user, answer)

    def list_images(self, user: str, status: str = "ready") -> None:
        query = ListQuery(limit=100, status=status)  # type: ignore[arg-type]
        answer, error = self._run(lambda: self.world.images.list(user, query), None)
        self._client_error("list", error)
        if answer is None:
            return
        snapshot = self.world.snapshot()
        for item in answer["items"]:
            image = Image.model_validate(item)
            known = self.by_id.get(image.id)
            if known is not None and known.deleted:
                invariants.deleted_image_is_not_found(known, image, None)
            self.check_image_answer("list", user, image, snapshot)

    def download(self, image: int, variant: str = "original") -> None:
        upload = self.upload(image)
        answer, error = self._run(
            lambda: self.world.images.download(upload.user, upload.id, variant), None
        )
        self._client_error("download", error)
        if upload.deleted:
            invariants.deleted_image_is_not_found(upload, answer, error)
        if answer is not None:
            invariants.download_only_when_servable(
                self, upload, variant, answer.url, self.world.snapshot()
            )

    def delete(self, image: int, fault: Fault | None = None) -> None:
        upload = self.upload(image)
        call, complete = self._delete(upload)
        complete(*self._run(call, fault))

    def _delete(self, upload: Upload) -> tuple[Callable[[], Any], Callable[..., None]]:
        upload.delete_asked = True
        if upload.at_delete is None:
            original = self.world.snapshot().objects.get(object_key(upload.id))
            upload.at_delete = (original and original.etag, len(upload.puts))

        def complete(_: None, error: BaseException | None) -> None:
            self._client_error("delete", error)
            if error is None:
                upload.deleted = True
                invariants.deleted_image_leaves_no_bytes(upload, self.world.snapshot())
            self.note(f"delete {upload}: {'204' if error is None else repr(error)}")

        return lambda: self.world.images.delete(upload.user, upload.id), complete

    def check_image_answer(
        self, action: str, user: str, image: Image, snapshot: Any = None
    ) -> None:
        invariants.served_only_when_servable(
            self, action, user, image, snapshot or self.world.snapshot()
        )

    # --- The queue and the worker ----------------------------------------------------

    def deliver(self, message: int = 0, fault: Fault | None = None, ack_lost: bool = False) -> None:
        """One pending message to the worker (any of them: out of order). Its failure
        puts it back (after MAX_RECEIVES, in the dead-letter queue); a lost ack too."""
        taken = self.queue.take(message)
        call, complete = self._deliver([taken], fault, ack_lost)
        complete(*self._run(call, fault))

    def deliver_batch(self, count: int = 2, fault: Fault | None = None) -> None:
        """Up to `count` pending messages in one batch, newest first."""
        taken = [self.queue.take(-1) for _ in range(min(count, len(self.queue.pending)))]
        call, complete = self._deliver(taken, fault, False)
        complete(*self._run(call, fault))

    def _deliver(
        self, messages: list[Message], fault: Fault | None, ack_lost: bool
    ) -> tuple[Callable[[], Any], Callable[..., None]]:
        event = {
            "Records": [
                {
                    "messageId": message.id,
                    "body": message.body,
                    "attributes": {"ApproximateReceiveCount": str(message.receives)},
                    "eventSource": "aws:sqs",
                }
                for message in messages
            ]
        }
        refusals = self.scanner.refusals

        def complete(answer: dict[str, Any] | None, error: BaseException | None) -> None:
            invariants.worker_never_raises(error)
            scanner_refused = self.scanner.refusals != refusals
            failed = (
                {m.id for m in messages}
                if answer is None
                else {f["itemIdentifier"] for f in answer["batchItemFailures"]}
            )
            for message in messages:
                handled = message.id not in failed
                invariants.worker_fails_only_for_a_reason(
                    message, handled, fault or error or scanner_refused
                )
                invariants.poison_messages_are_ignored(message, handled, fault or error)
                if handled:
                    invariants.acknowledged_infected_bytes_are_gone(message, self.world.snapshot())
                where = self.queue.settle(message, handled and not ack_lost)
                self.note(
                    f"deliver m{message.number} ({message.image_id and message.image_id[:6]}): "
                    f"{'handled' if handled else 'failed'}, {where}"
                )

        return lambda: self.world.worker.handle(event), complete

    def duplicate(self, message: int) -> None:
        copy = self.queue.duplicate(message)
        self.note(f"duplicate m{copy.number}")

    def redrive(self) -> None:
        self.note(f"redrive: {self.queue.redrive()} moved")

    def poison(self, kind: str) -> None:
        message = self.queue.send(POISON[kind], None, None)
        self.note(f"poison m{message.number}: {kind}")

    # --- Upkeep, the scanner, time ---------------------------------------------------

    def sweep(self, fault: Fault | None = None) -> None:
        call, complete = self._sweep(fault)
        complete(*self._run(call, fault))

    def _sweep(self, fault: Fault | None) -> tuple[Callable[[], Any], Callable[..., None]]:
        def complete(report: SweepReport | None, error: BaseException | None) -> None:
            invariants.sweep_finishes_without_faults(report, error, fault)
            self.note(f"sweep: {report or repr(error)}")

        return lambda: self.world.maintenance.sweep(None), complete

    def reconcile(self, user: str) -> None:
        answer, error = self._run(lambda: self.world.maintenance.reconcile(user), None)
        invariants.reconcile_finds_no_drift(user, answer, error)

    def advance(self, span: str) -> None:
        self.clock.advance(SPANS[span])
        self.note(f"advance {span}")

    def scanner_state(self, state: str) -> None:
        self.scanner.state = state
        self.note(f"scanner {state}")

    # --- Interleavings ---------------------------------------------------------------

    def pause(self, operation: str, which: int = 0, call: str = "GetItem", nth: int = 1) -> None:
        """Start an operation and stop it just before its `nth` AWS call of kind `call`;
        the simulation goes on meanwhile, until `resume` (or `kill_paused`)."""
        assert self.paused is None
        if operation == "deliver":
            if not self.queue.pending:
                return
            taken = self.queue.take(which)
            run, complete = self._deliver([taken], None, False)
            name, image_id = f"m{taken.number}", taken.image_id
        elif operation == "sweep":
            run, complete = self._sweep(None)
            name, image_id = "sweep", None
        else:
            if not self.uploads:
                return
            upload = self.upload(which)
            run, complete = (self._confirm if operation == "confirm" else self._delete)(upload)
            name, image_id = str(upload), upload.id
        if self.injector.start_paused(run, call, nth):
            self.paused = Paused(operation, name, complete, image_id)
            self.note(f"pause {operation} {name} before {call} {nth}")
        else:
            complete(*self.injector.finish())

    def resume(self) -> None:
        paused, self.paused = self.paused, None
        assert paused is not None
        self.note(f"resume {paused.operation} {paused.target}")
        paused.complete(*self.injector.finish())

    def kill_paused(self) -> None:
        paused, self.paused = self.paused, None
        assert paused is not None
        self.note(f"kill {paused.operation} {paused.target}")
        paused.complete(*self.injector.finish(kill=True))

    # --- Checks ----------------------------------------------------------------------

    def check(self) -> None:
        """Every invariant that holds after every step."""
        self.steps += 1
        self._holds()

    def _holds(self) -> None:
        snapshot = self.world.snapshot()
        for check in invariants.EVERY_STEP:
            check(self, snapshot)

    def quiesce(self, backlog: bool = False) -> None:
        """Let everything settle, at its worst: a paused operation finishes, the
        scanner comes back, every message (dead letters redriven) is delivered until
        none is left, every deadline and grace period passes, DynamoDB's TTL fires and
        the sweep runs; twice. With a backlog, time and the sweep come first and the
        messages after them (late, or dead-lettered until a redrive): the sweep meets
        bytes nobody confirmed, and the worker images the sweep already let go of.
        Then check the quiet-point invariants."""
        if self.paused is not None:
            self.resume()
        self.scanner.state = "up"
        longest = max(self.settings.upload_deadline_seconds, self.settings.idempotency_ttl_seconds)
        # Settling is steps too: what holds after every step holds after each of these.
        for _ in range(2):
            if not backlog:
                self.drain()
                self._holds()
            self.clock.advance(longest + self.settings.finish_grace_seconds + 1)
            self.world.fire_ttl()
            self.sweep()
            self._holds()
            if backlog:
                self.drain()
                self._holds()
        self.drain()
        self._holds()
        for user in USERS:
            self.reconcile(user)
        snapshot = self.world.snapshot()
        for check in invariants.QUIET_POINT:
            check(self, snapshot)
        self.note(f"quiet point{' (after a backlog)' if backlog else ''}")
        self.quiet_at = self.steps

    def drain(self) -> None:
        """Deliver every message, dead letters redriven, until the queue is empty."""
        for _ in range(DRAIN_ROUNDS):
            self.queue.redrive()
            if not self.queue.pending:
                return
            for _ in range(len(self.queue.pending)):
                self.deliver(0)
        invariants.queue_drains(self)


class Checked:
    """A Simulation whose every action is followed by the every-step invariants, as the
    state machine checks them: a regression test reads as the history it replays."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim

    def __getattr__(self, name: str) -> Any:
        action = getattr(self.sim, name)

        def checked(*args: Any, **kwargs: Any) -> None:
            action(*args, **kwargs)
            self.sim.check()

        return checked


@contextmanager
def simulation() -> Iterator[Any]:
    """A fresh deployment under moto for one history, its actions checked as the state
    machine checks them (the regression tests' entry)."""
    with deployment() as deployments:
        sim = fresh(deployments)
        try:
            yield Checked(sim)
        finally:
            if sim.paused is not None:
                sim.injector.finish(kill=True)


def fresh(deployments: Deployments) -> Simulation:
    return Simulation(deployments.fresh(), deployments.audit)


__all__ = [
    "LIST_STATUSES",
    "OPERATIONS",
    "PAUSED",
    "SPANS",
    "VARIANTS",
    "Simulation",
    "simulation",
]
