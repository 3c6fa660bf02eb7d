"""The fault injector: every AWS call the service makes passes through it (each client's
`_make_api_call`, as in tests/test_faults.py, one level above botocore's own retries).

Calls are named by their kind and occurrence ("the 2nd UpdateItem of this confirm", or
"its 2nd write", whatever kind), not by their position: every call of an operation can
be named so, and a name drawn at random lands on a call the operation makes far more
often than a position does. Writes get a name of their own because an operation's
dangerous moment is just before one of its few writes, with what it read gone stale.

- A fault on one call of one operation (confirm, delete, a worker delivery, the sweep,
  create): the call fails before it runs (`unavailable`), lands and its answer is lost
  (`lost`: botocore gave up), lands and is sent again as botocore does after a read
  timeout (`resent`: the caller gets the second answer), or the process dies just
  before it (`crash`) or just after it landed (`crash_after`).
- A pause: an operation run on a thread of its own stops just before one of its calls
  while the simulation does other things, then resumes (or dies there): the
  interleavings between two operations, at the granularity of AWS calls.
- DynamoDB's ClientRequestToken, which moto ignores: a TransactWriteItems re-sent with
  the token of one that committed (within ten minutes) answers that success again
  without applying anything; without a token it runs again, as on AWS.
"""

import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError, ReadTimeoutError

if TYPE_CHECKING:
    from tests.simulation.world import Clock

MODES = ("unavailable", "lost", "resent", "crash", "crash_after")
# Every kind of AWS call the service makes.
CALLS = (
    "GetItem",
    "Query",
    "UpdateItem",
    "TransactWriteItems",
    "GetObject",
    "PutObjectTagging",
    "PutObject",
    "DeleteObject",
    "DeleteObjects",
)
WRITES = frozenset(
    {
        "UpdateItem",
        "TransactWriteItems",
        "PutObjectTagging",
        "PutObject",
        "DeleteObject",
        "DeleteObjects",
    }
)
WRITE = "write"  # any of WRITES


def names(call: str, operation: str) -> bool:
    """Whether `call` (a kind of call, or WRITE) names this AWS operation."""
    return call == operation or (call == WRITE and operation in WRITES)


TOKEN_SECONDS = 600  # how long DynamoDB remembers a ClientRequestToken


class Killed(BaseException):
    """The process running the operation died here (nothing after this line runs: not
    even the service's own `except Exception`)."""


@dataclass(frozen=True)
class Fault:
    """Fail the operation's `nth` AWS call of kind `call`, this way (MODES)."""

    mode: str
    call: str
    nth: int = 1

    def __post_init__(self) -> None:
        if self.mode not in MODES or self.call not in (*CALLS, WRITE) or self.nth < 1:
            raise ValueError(f"no such fault: {self}")

    def __str__(self) -> str:
        return f"{self.mode} at {self.call} {self.nth}"


@dataclass
class Claim:
    """An Idempotency-Key's claim as a committed transaction wrote it."""

    claim: str
    record: str
    at: float
    expires_at: int


@dataclass
class _Pause:
    call: str
    nth: int
    thread: threading.Thread | None = None
    calls: int = 0
    state: str = "running"  # running, paused, resumed, killed, done
    result: Any = None
    error: BaseException | None = None
    condition: threading.Condition = field(default_factory=threading.Condition)


def _unavailable(operation: str) -> ClientError:
    return ClientError(
        {"Error": {"Code": "ServiceUnavailable", "Message": "injected"}},  # type: ignore[typeddict-item]
        operation,
    )


class Injector:
    def __init__(self) -> None:
        self._clock: Clock | None = None
        self.reset(None)

    def reset(self, clock: "Clock | None") -> None:
        self._clock = clock
        self._plan: Fault | None = None
        self._calls = 0
        self.fired: list[str] = []
        self._tokens: dict[str, tuple[str, float, Any]] = {}
        self.claims: list[Claim] = []
        self._pause: _Pause | None = None
        # The calls the operation armed last made, in order (tests/simulation/faultpoints.py
        # names each one as a fault point).
        self.made: list[str] = []
        self._armed = False

    # --- Faults on the operation the simulation runs now -----------------------------

    def arm(self, fault: Fault | None) -> None:
        self._plan, self._calls = fault, 0
        self.made = []
        self._armed = True

    def disarm(self) -> Fault | None:
        plan, self._plan = self._plan, None
        self._armed = False
        return plan

    def install(self, client: Any) -> None:
        real = client._make_api_call

        def call(operation: str, params: dict[str, Any]) -> Any:
            return self._call(real, operation, params)

        client._make_api_call = call

    def _call(self, real: Callable[..., Any], operation: str, params: dict[str, Any]) -> Any:
        pause = self._pause
        if pause is not None and threading.current_thread() is pause.thread:
            if names(pause.call, operation):
                pause.calls += 1
                if pause.calls == pause.nth:
                    self._wait_here(pause)
        else:
            if self._armed:
                self.made.append(operation)
            if self._plan is not None and names(self._plan.call, operation):
                self._calls += 1
                if self._calls == self._plan.nth:
                    fault, self._plan = self._plan, None
                    return self._fire(fault, real, operation, params)
        return self._send(real, operation, params)

    def _fire(
        self, fault: Fault, real: Callable[..., Any], operation: str, params: dict[str, Any]
    ) -> Any:
        self.fired.append(f"{operation}:{fault.mode}")
        if fault.mode == "unavailable":
            raise _unavailable(operation)
        if fault.mode == "crash":
            raise Killed(operation)
        try:
            first = self._send(real, operation, params)
        except ClientError:
            first = None  # an error answer, lost just the same
        if fault.mode == "lost":
            raise ReadTimeoutError(endpoint_url=f"https://aws/{operation}")
        if fault.mode == "crash_after":
            raise Killed(operation)
        del first  # resent: botocore sends the same request again; the caller gets that
        return self._send(real, operation, params)

    # --- DynamoDB's own idempotency, which moto lacks --------------------------------

    def _send(self, real: Callable[..., Any], operation: str, params: dict[str, Any]) -> Any:
        token = params.get("ClientRequestToken") if operation == "TransactWriteItems" else None
        if token is None:
            answer = real(operation, params)
            if operation == "TransactWriteItems":
                self._observe(params)
            return answer
        now = self._clock.timestamp() if self._clock else 0.0
        digest = hashlib.sha256(
            json.dumps(
                {k: v for k, v in params.items() if k != "ClientRequestToken"},
                sort_keys=True,
                default=str,
            ).encode()
        ).hexdigest()
        seen = self._tokens.get(token)
        if seen is not None and now - seen[1] < TOKEN_SECONDS:
            if seen[0] != digest:
                raise ClientError(
                    {"Error": {"Code": "IdempotentParameterMismatchException", "Message": ""}},  # type: ignore[typeddict-item]
                    operation,
                )
            return seen[2]
        answer = real(operation, params)
        self._tokens[token] = (digest, now, answer)
        self._observe(params)
        return answer

    def _observe(self, params: dict[str, Any]) -> None:
        """A transaction landed: note which record an Idempotency-Key claim went with."""
        puts = [item["Put"]["Item"] for item in params["TransactItems"] if "Put" in item]
        claims = [item for item in puts if item["image_id"]["S"].startswith("idempotency#")]
        records = [item for item in puts if "user_id" in item]
        for claim in claims:
            for record in records:
                self.claims.append(
                    Claim(
                        claim["image_id"]["S"],
                        record["image_id"]["S"],
                        self._clock.timestamp() if self._clock else 0.0,
                        int(claim["expires_at"]["N"]),
                    )
                )

    # --- Pauses: an operation stopped between two AWS calls --------------------------

    @property
    def paused(self) -> bool:
        return self._pause is not None

    def start_paused(self, operation: Callable[[], Any], call: str, nth: int) -> bool:
        """Run `operation` on a thread of its own until just before its `nth` AWS call of
        kind `call`. True if it stopped there (False: it finished first; `finish` has
        its outcome)."""
        assert self._pause is None, "one paused operation at a time"
        pause = _Pause(call, nth)
        self._pause = pause

        def run() -> None:
            try:
                pause.result = operation()
            except BaseException as exc:
                pause.error = exc
            with pause.condition:
                pause.state = "done"
                pause.condition.notify_all()

        pause.thread = threading.Thread(target=run, name="paused-operation", daemon=True)
        with pause.condition:
            pause.thread.start()
            pause.condition.wait_for(lambda: pause.state in ("paused", "done"))
        return pause.state == "paused"

    def _wait_here(self, pause: _Pause) -> None:
        with pause.condition:
            pause.state = "paused"
            pause.condition.notify_all()
            pause.condition.wait_for(lambda: pause.state in ("resumed", "killed"))
            killed = pause.state == "killed"
        if killed:
            raise Killed("paused operation killed")

    def finish(self, kill: bool = False) -> tuple[Any, BaseException | None]:
        """Let the paused operation go on to its end (or die where it stopped); its
        result or the exception it ended with."""
        pause = self._pause
        assert pause is not None
        assert pause.thread is not None
        with pause.condition:
            if pause.state == "paused":
                pause.state = "killed" if kill else "resumed"
                pause.condition.notify_all()
            pause.condition.wait_for(lambda: pause.state == "done")
        pause.thread.join()
        self._pause = None
        return pause.result, pause.error
