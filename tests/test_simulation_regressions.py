"""Every history the simulation (tests/simulation, docs/simulation.md) has found, replayed
step by step through its plain API, each step followed by the every-step invariants and
each history ending at a quiet point, as the state machine runs them. Histories the
simulation finds later are added here, shrunk, as they were printed."""

import logging
from collections.abc import Iterator

import pytest

from tests.simulation.faults import Fault
from tests.simulation.simulation import simulation


@pytest.fixture(autouse=True)
def quiet_logs() -> Iterator[None]:
    # The service logs the faults it survives; none of them is news here.
    logging.disable(logging.CRITICAL)
    yield
    logging.disable(logging.NOTSET)


def test_put_racing_a_delete_is_removed_and_never_recorded_clean() -> None:
    """Found 2026-12 against the invariant, not the service: a clean image's delete stops
    between its bytes and its record, and the client PUTs again while its upload URL
    lives; the new bytes land under the key of an image being deleted. They are nobody's:
    never recorded clean, and removed once the delete and the worker are done."""
    with simulation() as sim:
        sim.create("alice")
        sim.put(0, "good")
        sim.advance("second")
        sim.deliver(0)
        sim.advance("second")
        sim.pause("delete", 0, "write", 3)
        sim.put(0, "infected")
        sim.quiesce()


def test_infection_whose_finder_died_is_still_reported_by_its_redelivery() -> None:
    """Found 2026-12 by the long run, a real defect: the worker marked the image infected
    and its process died before the audit line; the redelivery found the record infected
    and only removed the bytes, so the operator was never told."""
    with simulation() as sim:
        sim.create("alice", payload="infected")
        sim.deliver(0, Fault("crash_after", "TransactWriteItems", 2))
        sim.quiesce()


def test_infection_whose_finder_died_is_still_reported_by_the_sweep() -> None:
    """The same, with the message late (a backlog): the sweep meets the infected record
    first, removes what is left, and tells the operator."""
    with simulation() as sim:
        sim.create("alice", payload="infected")
        sim.deliver(0, Fault("crash_after", "TransactWriteItems", 2))
        sim.quiesce(backlog=True)
