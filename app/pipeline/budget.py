"""Run a piece of work on hostile input in a child process, bounded in CPU time, memory
and wall-clock time, so that one image can neither stall the worker past its function
timeout nor take its memory; nor, if a decoder crashes, take the worker down with it.

The child is a fork (the caller has already imported what the work needs: a fork is
about a millisecond, a fresh interpreter a few hundred). It is a resource bound, not a
security boundary: it shares the parent's memory image and credentials. It answers
in a plain framed format, never pickle, so a child that misbehaves cannot make the
parent run code.

    frame := length (8 bytes, big-endian) payload
    answer := frame(kind) frame(body)...     kind: b"ok" or b"refused"
"""

import gc
import os
import resource
import select
import signal
import struct
import time
import traceback
from collections.abc import Callable

_LENGTH = struct.Struct(">Q")


class OverBudget(Exception):
    """The work did not finish within its CPU, memory or wall-clock budget, or died."""


class Refused(Exception):
    """The work itself refused its input (raised in the child, with this message)."""


def _mapped_bytes() -> int:
    """The process's address space now (what RLIMIT_AS counts)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * resource.getpagesize()


def _frames(parts: list[bytes]) -> bytes:
    return b"".join(_LENGTH.pack(len(part)) + part for part in parts)


def _unframe(data: bytes) -> list[bytes]:
    parts, offset = [], 0
    while offset < len(data):
        if offset + _LENGTH.size > len(data):
            raise OverBudget("the child's answer is truncated")
        (length,) = _LENGTH.unpack_from(data, offset)
        offset += _LENGTH.size
        if offset + length > len(data):
            raise OverBudget("the child's answer is truncated")
        parts.append(data[offset : offset + length])
        offset += length
    return parts


def _child(
    work: Callable[[], list[bytes]],
    refusal: type[Exception],
    cpu_seconds: int,
    memory_bytes: int,
    out: int,
) -> None:
    # A collection here would walk every object the parent holds, writing to each page
    # (and so copying it): the child lives for one render, it has nothing to collect.
    gc.disable()
    # The soft limit sends SIGXCPU, the hard one a second later SIGKILL; no core file.
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # Address space, counted from what the fork already maps (the parent's, shared).
    limit = _mapped_bytes() + memory_bytes
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        answer = _frames([b"ok", *work()])
    except refusal as exc:
        answer = _frames([b"refused", str(exc).encode()])
    except MemoryError:
        answer = _frames([b"refused", b"needs more memory than a render may use"])
    with os.fdopen(out, "wb") as pipe:
        pipe.write(answer)


def run_bounded(
    work: Callable[[], list[bytes]],
    refusal: type[Exception],
    cpu_seconds: int,
    memory_bytes: int,
    wall_seconds: float,
) -> list[bytes]:
    """`work()`'s parts, computed in a child process. Raises Refused if the work raised
    `refusal` (with its message), OverBudget if it ran out of CPU time, memory or wall
    time, or died any other way."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the caller's code
        os.close(read_end)
        code = 1
        try:
            _child(work, refusal, cpu_seconds, memory_bytes, write_end)
            code = 0
        except BaseException:
            traceback.print_exc()  # our own failure, not the input's: the parent raises
        finally:
            os._exit(code)
    os.close(write_end)
    deadline = time.monotonic() + wall_seconds
    chunks = []
    try:
        with os.fdopen(read_end, "rb", buffering=0) as pipe:
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([pipe], [], [], left)[0]:
                    os.kill(pid, signal.SIGKILL)
                    raise OverBudget(f"took more than {wall_seconds:g} s")
                chunk = pipe.read(1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
    finally:
        _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        cause = os.WTERMSIG(status)
        if cause == signal.SIGXCPU:
            raise OverBudget(f"took more than {cpu_seconds} s of CPU time")
        if cause == signal.SIGKILL:  # the hard CPU limit, or the kernel out of memory
            raise OverBudget("ran out of its CPU or memory budget")
        raise OverBudget(f"the decoder crashed ({signal.Signals(cause).name})")
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError("the bounded work failed (its traceback is on stderr)")
    kind, *parts = _unframe(b"".join(chunks)) or [b""]
    if kind == b"refused" and parts:
        raise Refused(parts[0].decode(errors="replace"))
    if kind != b"ok":
        raise OverBudget("the child gave no answer")
    return parts
