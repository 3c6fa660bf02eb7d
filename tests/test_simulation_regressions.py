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


def test_confirm_under_way_when_a_delete_answers_may_answer_as_before_it() -> None:
    """Found 2026-12 by the long run, against the invariant: a confirm paused between
    recording the refusal and deleting the refused bytes, a DELETE answering 204 meanwhile,
    then the confirm answering 422 with the reason. The two overlapped, so the confirm may
    be ordered first; only a request sent after the 204 must find nothing."""
    with simulation() as sim:
        sim.create("bob", payload="garbage")
        sim.pause("confirm", 0, "write", 2)
        sim.delete(0)
        sim.resume()
        sim.quiesce()


def test_delivery_paused_while_its_duplicate_fails_twice_settles() -> None:
    """Found 2026-12 by the long run, in the simulation itself: a delivery paused while a
    duplicate of its message failed twice; the queue then settled the wrong copy (equal
    fields) and lost track of the paused one."""
    with simulation() as sim:
        sim.create("alice", payload="good")
        sim.duplicate(0)
        sim.pause("deliver", 0, "GetItem", 1)
        sim.deliver(0, Fault("unavailable", "GetItem", 1))
        sim.deliver(0, Fault("unavailable", "GetItem", 1))
        sim.resume()
        sim.quiesce()
