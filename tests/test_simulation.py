"""The simulation (tests/simulation, docs/simulation.md) within `make test`'s budget: random
histories of clients, S3, the queue, the worker, the sweep, the scanner, faults and time
over the real service graph, every invariant checked after every step. A failure names
the broken invariant, the seed and the replay command, and Hypothesis prints the shrunk
history as a list of steps (each rule one call of tests/simulation/simulation.py's API,
which tests/test_simulation_regressions.py replays). `make simulate` is the long run."""

import logging
from collections.abc import Iterator

import pytest

from tests.simulation import faultpoints
from tests.simulation.machine import BUDGET_EXAMPLES, BUDGET_STEPS, SEED, run
from tests.simulation.stats import Stats


@pytest.fixture
def quiet_logs() -> Iterator[None]:
    # The service logs every fault it survives: thousands of records per run, which
    # pytest would capture and keep, none of them news.
    logging.disable(logging.CRITICAL)
    yield
    logging.disable(logging.NOTSET)


# The budget is steps, not seconds: about 45 s on an idle core, more on a busy machine.
# A failure then shrinks for up to five minutes (Hypothesis' own limit) before printing
# its history: the timeout stops only a run that hangs.
@pytest.mark.timeout(600)
@pytest.mark.usefixtures("quiet_logs")
def test_random_histories_keep_every_invariant() -> None:
    stats = run(BUDGET_EXAMPLES, BUDGET_STEPS, SEED)

    assert stats.examples >= BUDGET_EXAMPLES
    # Histories run most of their length (Hypothesis ends some early: about 77 steps
    # each on average): a precondition that starved the rules, or histories ending
    # early, would make the budget test far less than it claims.
    assert stats.steps >= BUDGET_EXAMPLES * BUDGET_STEPS * 0.7


# The systematic half: every single fault at every AWS call of each common story
# (tests/simulation/faultpoints.py). A test of its own, so the two halves share the
# suite's workers.
@pytest.mark.timeout(600)
@pytest.mark.usefixtures("quiet_logs")
def test_every_single_fault_keeps_every_invariant() -> None:
    stats = Stats()
    ran = faultpoints.run(stats)

    # Every story's faulted operation makes at least one write, which fails five ways:
    # a story that stopped reaching its operation would have none.
    assert set(ran) == set(faultpoints.STORIES)
    assert min(ran.values()) >= 5
    assert stats.steps >= ran.total() * 3
