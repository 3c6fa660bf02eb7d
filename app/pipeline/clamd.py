"""clamd's protocol, the part the worker speaks (clamd(8), "COMMANDS"): INSTREAM streams
the bytes in length-prefixed chunks and answers one line; VERSION names the engine and
its definitions. Written here rather than taken from a library: the Python clients on
PyPI (clamd, pyclamd) have had no release for years, and this is forty lines, tested
against a real clamd (tests/test_scanning.py).

Commands are sent in the `z` form (NUL-terminated, NUL-terminated replies), so a reply
never depends on a newline in a signature name.
"""

import socket
import struct
import time
from dataclasses import dataclass

# clamd reads INSTREAM in chunks; its StreamMaxLength bounds the whole stream.
_CHUNK = 256 * 1024


class ClamdUnavailable(Exception):
    """clamd could not be reached or stopped answering: scan later, never assume clean."""


@dataclass(frozen=True, slots=True)
class Reply:
    """What clamd said of a stream: a signature (malware), an error, or neither (OK)."""

    signature: str | None = None
    error: str | None = None


def _connect(address: str, timeout: float) -> socket.socket:
    try:
        if not address.startswith("unix://"):
            host, _, port = address.removeprefix("tcp://").rpartition(":")
            return socket.create_connection((host, int(port)), timeout=timeout)
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            connection.settimeout(timeout)
            connection.connect(address.removeprefix("unix://"))
        except OSError:
            connection.close()
            raise
    except OSError as exc:
        raise ClamdUnavailable(f"clamd at {address}: {exc}") from exc
    return connection


def _within(connection: socket.socket, deadline: float, address: str) -> None:
    """The next socket call may take what is left of the scan's time: a socket timeout
    bounds each call, and a clamd that trickles keeps every call short but the whole
    scan long (past the worker's own time limit, sized from this one)."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise ClamdUnavailable(f"clamd at {address} did not finish within its time")
    connection.settimeout(left)


def _reply(connection: socket.socket, address: str, deadline: float) -> str:
    received = bytearray()
    try:
        while not received.endswith(b"\0"):
            _within(connection, deadline, address)
            chunk = connection.recv(4096)
            if not chunk:
                break
            received += chunk
    except OSError as exc:
        raise ClamdUnavailable(f"clamd at {address}: {exc}") from exc
    if not received.endswith(b"\0"):
        raise ClamdUnavailable(f"clamd at {address} closed the connection mid-answer")
    return received[:-1].decode(errors="replace").strip()


def version(address: str, timeout: float) -> str:
    """The engine and its definitions, e.g. 'ClamAV 1.4.3/27470/Sun Nov 29 09:36:20 2026'."""
    deadline = time.monotonic() + timeout
    with _connect(address, timeout) as connection:
        try:
            connection.sendall(b"zVERSION\0")
        except OSError as exc:
            raise ClamdUnavailable(f"clamd at {address}: {exc}") from exc
        return _reply(connection, address, deadline)


def instream(address: str, data: bytes, timeout: float) -> Reply:
    """Scan `data` as one stream, within `timeout` seconds in all."""
    deadline = time.monotonic() + timeout
    with _connect(address, timeout) as connection:
        try:
            connection.sendall(b"zINSTREAM\0")
            view = memoryview(data)
            for start in range(0, len(data), _CHUNK):
                chunk = view[start : start + _CHUNK]
                _within(connection, deadline, address)
                connection.sendall(struct.pack(">I", len(chunk)) + chunk)
            connection.sendall(struct.pack(">I", 0))
        except OSError as exc:
            # clamd closes the socket once a stream passes its StreamMaxLength: its answer
            # (if any) says so; a reset alone is a scanner gone away.
            try:
                answer = _reply(connection, address, deadline)
            except ClamdUnavailable:
                raise ClamdUnavailable(f"clamd at {address}: {exc}") from exc
            return parse(answer)
        return parse(_reply(connection, address, deadline))


def parse(answer: str) -> Reply:
    """'stream: OK' | 'stream: <signature> FOUND' | '<message> ERROR'."""
    if answer.endswith(" FOUND"):
        return Reply(signature=answer.removeprefix("stream:").removesuffix(" FOUND").strip())
    if answer.endswith("ERROR"):
        return Reply(error=answer.removeprefix("stream:").removesuffix("ERROR").strip(" :."))
    if answer.removeprefix("stream:").strip() == "OK":
        return Reply()
    return Reply(error=f"clamd answered {answer[:200]!r}")
