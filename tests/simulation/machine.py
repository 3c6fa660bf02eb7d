"""The Hypothesis state machine: random histories of clients, S3, the queue, the worker,
the sweep, the scanner, faults and time, drawn step by step and replayed exactly from
a seed. Each rule is one call of the Simulation API (tests/simulation/simulation.py),
so a shrunk failing history prints as a list of such calls, and reads as a regression
test. `run()` is the one entry: the budgeted run in `make test`, `make simulate`'s long
run and the mutant script all go through it."""

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import HealthCheck, Phase, Verbosity, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tests.simulation import faultpoints
from tests.simulation.faults import CALLS, MODES, WRITE, Fault
from tests.simulation.queue import POISON
from tests.simulation.scanner import STATES
from tests.simulation.simulation import (
    LIST_STATUSES,
    MOST_IMAGES,
    OPERATIONS,
    PAUSED,
    SPANS,
    VARIANTS,
    Simulation,
    fresh,
)
from tests.simulation.stats import STATS, Stats
from tests.simulation.world import PAYLOADS, USERS, Deployments, deployment

# `make test`'s budget: the same seed every run; every planted defect must be found
# within it (bench/mutants.py, docs/simulation.md).
SEED = 20261119
BUDGET_EXAMPLES = 60
BUDGET_STEPS = 100


_DEPLOYMENTS: list[Deployments] = []

F = TypeVar("F", bound=Callable[..., Any])


def step(function: F) -> F:
    """A rule or invariant: a failure in it is noted (steps and time to find it) with the
    history's last steps, as the simulation traced them."""

    @functools.wraps(function)
    def wrapped(self: "SimulationMachine", *args: Any, **kwargs: Any) -> Any:
        try:
            return function(self, *args, **kwargs)
        except Exception as exc:
            self.failed = True
            STATS.failed(exc)
            exc.add_note(
                "The simulation's trace (last steps):\n  " + "\n  ".join(self.sim.trace[-30:])
            )
            raise

    return wrapped  # type: ignore[return-value]


# A race needs two actors on one image: a third of the time the image a paused operation
# works on, a third one of the newest two.
images = st.one_of(st.just(PAUSED), st.integers(0, 1), st.integers(0, MOST_IMAGES - 1))
messages = st.integers(0, 7)
users = st.sampled_from(USERS)
# Half the time "its nth write", whatever kind (see faults.py).
calls = st.one_of(st.just(WRITE), st.sampled_from(CALLS))
nths = st.integers(1, 3)
# A fault at one AWS call of the operation, half the time.
faults = st.one_of(st.none(), st.builds(Fault, mode=st.sampled_from(MODES), call=calls, nth=nths))
sometimes = st.sampled_from([False, False, False, True])
# Time mostly creeps (half the time a second or a minute): an upload URL lives 15
# minutes, and histories whose every span expired every upload would explore little else.
spans = st.one_of(st.sampled_from(["second", "minute"]), st.sampled_from(list(SPANS)))
# Steps between two quiet points mid-history: each one lets every upload run out.
QUIET_EVERY = 20


class SimulationMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.sim: Simulation = fresh(_DEPLOYMENTS[-1])
        self.failed = False
        STATS.examples += 1

    def teardown(self) -> None:
        """Every history ends at a quiet point, unless it failed already (a second
        failure would hide the first)."""
        if not self.failed:
            self.last_quiet_point()
        elif self.sim.paused is not None:
            self.sim.injector.finish(kill=True)

    @step
    def last_quiet_point(self) -> None:
        self.sim.quiesce(backlog=True)

    @initialize()
    def start(self) -> None:
        """Every history starts with an upload under way."""
        self.sim.create("alice")

    # --- Clients ---------------------------------------------------------------------

    @precondition(lambda self: len(self.sim.uploads) < MOST_IMAGES)
    @rule(
        user=users,
        size=st.integers(0, 1),
        keyed=st.booleans(),
        answer_lost=sometimes,
        fault=faults,
        payload=st.one_of(st.none(), st.sampled_from(PAYLOADS)),
    )
    @step
    def create(
        self,
        user: str,
        size: int,
        keyed: bool,
        answer_lost: bool,
        fault: Fault | None,
        payload: str | None,
    ) -> None:
        self.sim.create(user, size, keyed, answer_lost, fault, payload)

    @precondition(lambda self: len(self.sim.uploads) < MOST_IMAGES)
    @rule(user=users, payload=st.sampled_from(PAYLOADS))
    @step
    def upload(self, user: str, payload: str) -> None:
        """Create, then PUT at once, nothing lost: the common case weighs more."""
        self.sim.create(user, payload=payload)

    @precondition(lambda self: self.sim.keyed)
    @rule(which=st.integers(0, 7), answer_lost=sometimes)
    @step
    def retry_create(self, which: int, answer_lost: bool) -> None:
        self.sim.retry_create(which, answer_lost)

    @precondition(lambda self: self.sim.uploads)
    @rule(image=images, payload=st.sampled_from(PAYLOADS))
    @step
    def put(self, image: int, payload: str) -> None:
        self.sim.put(image, payload)

    @precondition(lambda self: self.sim.uploads)
    @rule(image=images, payload=st.sampled_from(PAYLOADS))
    @step
    def put_again(self, image: int, payload: str) -> None:
        """Another PUT (most clients PUT then confirm: PUTs weigh twice)."""
        self.sim.put(image, payload)

    @precondition(lambda self: self.sim.uploads)
    @rule(image=images, fault=faults, reupload=st.one_of(st.none(), st.sampled_from(PAYLOADS)))
    @step
    def confirm(self, image: int, fault: Fault | None, reupload: str | None) -> None:
        self.sim.confirm(image, fault, reupload)

    @precondition(lambda self: self.sim.uploads)
    @rule(image=images)
    @step
    def get(self, image: int) -> None:
        self.sim.get(image)

    @rule(user=users, status=st.sampled_from(LIST_STATUSES))
    @step
    def list_images(self, user: str, status: str) -> None:
        self.sim.list_images(user, status)

    @precondition(lambda self: self.sim.uploads)
    @rule(image=images, variant=st.sampled_from(VARIANTS))
    @step
    def download(self, image: int, variant: str) -> None:
        self.sim.download(image, variant)

    @precondition(lambda self: self.sim.uploads)
    @rule(image=images, fault=faults)
    @step
    def delete(self, image: int, fault: Fault | None) -> None:
        self.sim.delete(image, fault)

    # --- The queue and the worker ----------------------------------------------------

    @precondition(lambda self: self.sim.queue.pending)
    @rule(message=messages, fault=faults, ack_lost=sometimes)
    @step
    def deliver(self, message: int, fault: Fault | None, ack_lost: bool) -> None:
        self.sim.deliver(message, fault, ack_lost)

    @precondition(lambda self: self.sim.queue.pending)
    @rule(message=messages, fault=faults)
    @step
    def deliver_again(self, message: int, fault: Fault | None) -> None:
        """Deliveries weigh twice: a queue is mostly delivering."""
        self.sim.deliver(message, fault)

    @precondition(lambda self: len(self.sim.queue.pending) > 1)
    @rule(count=st.integers(2, 4), fault=faults)
    @step
    def deliver_batch(self, count: int, fault: Fault | None) -> None:
        self.sim.deliver_batch(count, fault)

    @precondition(lambda self: self.sim.queue.sent)
    @rule(message=st.one_of(st.integers(0, 1), st.integers(0, 15)))
    @step
    def duplicate(self, message: int) -> None:
        self.sim.duplicate(message)

    @precondition(lambda self: self.sim.queue.dead)
    @rule()
    @step
    def redrive(self) -> None:
        self.sim.redrive()

    @rule(kind=st.sampled_from(sorted(POISON)))
    @step
    def poison(self, kind: str) -> None:
        self.sim.poison(kind)

    # --- Upkeep, the scanner, time ---------------------------------------------------

    @rule(fault=faults)
    @step
    def sweep(self, fault: Fault | None) -> None:
        self.sim.sweep(fault)

    @rule(user=users)
    @step
    def reconcile(self, user: str) -> None:
        self.sim.reconcile(user)

    @rule(span=spans)
    @step
    def advance(self, span: str) -> None:
        self.sim.advance(span)

    @rule(state=st.sampled_from(STATES))
    @step
    def scanner(self, state: str) -> None:
        self.sim.scanner_state(state)

    # --- Interleavings ---------------------------------------------------------------

    @precondition(lambda self: self.sim.paused is None)
    @rule(operation=st.sampled_from(OPERATIONS), which=images, call=calls, nth=nths)
    @step
    def pause(self, operation: str, which: int, call: str, nth: int) -> None:
        self.sim.pause(operation, which, call, nth)

    @precondition(lambda self: self.sim.paused is None)
    @rule(operation=st.sampled_from(OPERATIONS), which=images, call=calls, nth=nths)
    @step
    def pause_again(self, operation: str, which: int, call: str, nth: int) -> None:
        """Pauses weigh twice: interleavings are what no hand-written test covers."""
        self.sim.pause(operation, which, call, nth)

    # One rule, not two: a paused operation then stays paused for about as many steps as
    # there are rules, long enough for a second actor to act on its image.
    @precondition(lambda self: self.sim.paused is not None)
    @rule(kill=sometimes)
    @step
    def finish_paused(self, kill: bool) -> None:
        """The paused operation goes on to its end, or its process dies where it stopped."""
        if kill:
            self.sim.kill_paused()
        else:
            self.sim.resume()

    @precondition(lambda self: self.sim.steps - self.sim.quiet_at >= QUIET_EVERY)
    @rule(backlog=st.booleans())
    @step
    def quiesce(self, backlog: bool) -> None:
        self.sim.quiesce(backlog)

    # --- After every step ------------------------------------------------------------

    @invariant()
    @step
    def invariants_hold(self) -> None:
        STATS.steps += 1
        self.sim.check()


def run(
    examples: int = BUDGET_EXAMPLES,
    steps: int = BUDGET_STEPS,
    seed_value: int = SEED,
    shrink: bool = True,
    verbose: bool = False,
    fault_points: bool = False,
) -> Stats:
    """Run the simulation: `examples` histories of up to `steps` steps each, drawn from
    `seed_value` (with `fault_points`, after every fault point of faultpoints.py).
    Raises on the first broken invariant, after printing its seed and (shrunk, unless
    `shrink` is False) history."""
    STATS.restart()
    if fault_points:
        STATS.half = "fault points"
        faultpoints.run(STATS)
        STATS.half = "random histories"
    phases = [Phase.explicit, Phase.generate] + ([Phase.shrink] if shrink else [])
    configured = settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        database=None,
        print_blob=True,
        phases=phases,
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.verbose if verbose else Verbosity.normal,
    )

    def factory() -> SimulationMachine:
        return SimulationMachine()

    with deployment() as deployments:
        _DEPLOYMENTS.append(deployments)
        try:
            run_state_machine_as_test(seed(seed_value)(factory), settings=configured)
        except BaseException as exc:
            exc.add_note(
                f"Simulation seed {seed_value} ({examples} examples x {steps} steps); "
                f"first failure after {STATS.first_failure and STATS.first_failure[0]} steps. "
                f"Replay: python -m tests.simulation --seed {seed_value} "
                f"--examples {examples} --steps {steps}"
            )
            raise
        finally:
            _DEPLOYMENTS.pop()
    return STATS
