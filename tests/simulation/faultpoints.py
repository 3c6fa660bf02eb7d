"""The simulation's systematic half: every single fault at every AWS call of each common
story, each story then settled at a quiet point and held to every invariant.

Random histories (machine.py) find the interleavings nobody thought of, but they rarely
land one particular fault on one particular call: a re-send of the one transaction in
the one delivery that finds malware took more than 24,000 random steps and was still
not drawn. The stories below are short, so each can be run once per fault point: its
faulted operation is run clean first, the AWS calls it makes are named by kind and
occurrence ("the 2nd TransactWriteItems"), and then, for each one and each way a call
fails (faults.MODES), the story runs again from fresh stores with that one fault.
Deterministic and exhaustive over single faults; a failure prints the story as the
calls of the plain API that replay it, ready to be a regression test.
"""

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from tests.simulation.faults import MODES, WRITES, Fault
from tests.simulation.simulation import Simulation, fresh
from tests.simulation.stats import STATS, Stats
from tests.simulation.world import Deployments, deployment

AT = object()  # where a story's fault goes


@dataclass(frozen=True)
class Step:
    action: str  # a method of Simulation
    kwargs: tuple[tuple[str, Any], ...] = ()

    def call(self, fault: Fault | None) -> str:
        arguments = ", ".join(
            f"{name}={fault if value is AT else value!r}" for name, value in self.kwargs
        )
        return f"sim.{self.action}({arguments})"

    def run(self, sim: Simulation, fault: Fault | None) -> None:
        kwargs = {name: fault if value is AT else value for name, value in self.kwargs}
        getattr(sim, self.action)(**kwargs)


def _step(action: str, **kwargs: Any) -> Step:
    return Step(action, tuple(kwargs.items()))


def _uploaded(payload: str) -> Step:
    """The client's create and its PUT (S3's event is queued)."""
    return _step("create", user="alice", payload=payload)


@dataclass(frozen=True)
class Story:
    before: tuple[Step, ...]  # the steps before the faulted one
    faulted: Step
    backlog: bool = False  # how it settles: time and the sweep before the messages


DELIVERED = _step("deliver", message=0)
# The operations a story faults, on the newest image or message.
DELIVER = _step("deliver", message=0, fault=AT)
CONFIRM = _step("confirm", image=0, fault=AT)
DELETE = _step("delete", image=0, fault=AT)
SWEEP = _step("sweep", fault=AT)
DEADLINE = _step("advance", span="deadline")

STORIES = {
    "a clean upload, delivered": Story((_uploaded("good"),), DELIVER),
    "an infected upload, delivered": Story((_uploaded("infected"),), DELIVER),
    "refused bytes, delivered": Story((_uploaded("garbage"),), DELIVER),
    "a clean upload, confirmed before its message": Story((_uploaded("good"),), CONFIRM),
    "refused bytes, confirmed": Story((_uploaded("garbage"),), CONFIRM),
    "an infected upload, confirmed before its message": Story((_uploaded("infected"),), CONFIRM),
    "a ready image, deleted": Story((_uploaded("good"), DELIVERED), DELETE),
    "an image whose message is still queued, deleted": Story(
        (_uploaded("good"),), DELETE, backlog=True
    ),
    "an image found infected, deleted": Story((_uploaded("infected"), DELIVERED), DELETE),
    "a keyed create": Story(
        (), _step("create", user="alice", keyed=True, fault=AT, payload="good")
    ),
    "an upload never PUT, swept after its deadline": Story(
        (_step("create", user="alice"), DEADLINE), SWEEP
    ),
    "bytes PUT in time but never confirmed, swept before their message": Story(
        (_uploaded("good"), DEADLINE), SWEEP, backlog=True
    ),
}


@dataclass(frozen=True)
class Point:
    story: str
    fault: Fault

    def history(self) -> str:
        story = STORIES[self.story]
        steps = [step.call(None) for step in story.before] + [story.faulted.call(self.fault)]
        steps.append(f"sim.quiesce(backlog={story.backlog})")
        return "\n".join(f"    {step}" for step in steps)


def _calls(deployments: Deployments, story: str) -> list[str]:
    """The AWS calls the story's faulted step makes when nothing fails."""
    sim = fresh(deployments)
    for step in STORIES[story].before:
        step.run(sim, None)
    STORIES[story].faulted.run(sim, None)
    return list(sim.injector.made)


# A read changes nothing: sent twice it is the same read, and a process that dies after
# it died before it; its failures are the error and the lost answer (a timeout).
READ_MODES = ("unavailable", "lost", "crash")


def points(deployments: Deployments) -> Iterator[Point]:
    """Every single fault at every call of every story, in a fixed order."""
    for story in STORIES:
        seen: Counter[str] = Counter()
        for call in _calls(deployments, story):
            seen[call] += 1
            for mode in MODES if call in WRITES else READ_MODES:
                yield Point(story, Fault(mode, call, seen[call]))


def _replay(sim: Simulation, point: Point, steps: Callable[[], None]) -> None:
    story = STORIES[point.story]
    for step in story.before:
        step.run(sim, None)
        steps()
    story.faulted.run(sim, point.fault)
    steps()
    sim.quiesce(story.backlog)
    steps()


def run(stats: Stats = STATS) -> Counter[str]:
    """Every fault point, counting its steps in `stats`; raises at the first broken
    invariant, naming the story, the fault and the history that replays it. How many
    points each story ran."""
    ran: Counter[str] = Counter()
    with deployment() as deployments:
        for point in list(points(deployments)):
            sim = fresh(deployments)

            def counted(sim: Simulation = sim) -> None:
                sim.check()
                stats.steps += 1

            try:
                _replay(sim, point, counted)
            except Exception as exc:
                stats.failed(exc)
                exc.add_note(
                    f"Fault point {ran.total() + 1}: {point.story}, {point.fault}. Replay (as in "
                    f"tests/test_simulation_regressions.py):\n"
                    f"  with simulation() as sim:\n{point.history()}\n"
                    "The simulation's trace (last steps):\n  " + "\n  ".join(sim.trace[-30:])
                )
                raise
            finally:
                if sim.paused is not None:
                    sim.injector.finish(kill=True)
            ran[point.story] += 1
            stats.examples += 1
    return ran
