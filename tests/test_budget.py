"""Work on hostile input runs in a child process bounded in CPU, memory and wall time."""

import faulthandler
import os
import signal
import time

import pytest

from app.pipeline.budget import OverBudget, Refused, run_bounded

MiB = 1024 * 1024


class _Refusal(Exception):
    pass


def _spin() -> list[bytes]:
    while True:
        pass


def test_work_within_budget_answers_its_parts() -> None:
    parts = run_bounded(lambda: [b"a", b"", b"x" * (3 * MiB)], _Refusal, 5, 256 * MiB, 10)

    assert parts == [b"a", b"", b"x" * (3 * MiB)]


def test_work_over_its_cpu_time_is_stopped_within_a_second_of_it() -> None:
    started = time.monotonic()

    with pytest.raises(OverBudget, match="more than 1 s of CPU time"):
        run_bounded(_spin, _Refusal, 1, 256 * MiB, 30)

    assert time.monotonic() - started < 3


def test_work_over_its_wall_time_is_stopped() -> None:
    def wait() -> list[bytes]:
        time.sleep(30)
        return []

    with pytest.raises(OverBudget, match=r"more than 0\.5 s"):
        run_bounded(wait, _Refusal, 5, 256 * MiB, 0.5)


def test_work_over_its_memory_is_refused() -> None:
    def hog() -> list[bytes]:
        return [bytes(512 * MiB)]

    with pytest.raises(Refused, match="more memory"):
        run_bounded(hog, _Refusal, 5, 128 * MiB, 30)


def test_a_crash_in_the_child_is_over_budget_not_the_callers_end() -> None:
    def crash() -> list[bytes]:
        faulthandler.disable()  # pytest's: its dump of the child's stack is noise here
        os.kill(os.getpid(), signal.SIGSEGV)
        return []

    with pytest.raises(OverBudget, match="crashed \\(SIGSEGV\\)"):
        run_bounded(crash, _Refusal, 5, 256 * MiB, 10)


def test_the_works_own_refusal_comes_back_with_its_message() -> None:
    def refuse() -> list[bytes]:
        raise _Refusal("not an image")

    with pytest.raises(Refused, match=r"^not an image$"):
        run_bounded(refuse, _Refusal, 5, 256 * MiB, 10)


def test_an_unexpected_error_in_the_work_is_the_callers_to_retry(
    capfd: pytest.CaptureFixture[str],
) -> None:
    def bug() -> list[bytes]:
        raise KeyError("oops")

    with pytest.raises(RuntimeError, match="failed"):
        run_bounded(bug, _Refusal, 5, 256 * MiB, 10)
    assert "KeyError: 'oops'" in capfd.readouterr().err
