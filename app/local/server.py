"""moto's server in this process, requests serialized, its state optionally kept.

moto serves each request on its own thread, but its backends are not thread-safe: a
TransactWriteItems copies table state while another request writes to it, and fails
with "dictionary changed size during iteration" (a 500, then our 503). Real AWS applies
each request atomically, so requests go into moto one at a time, which is what a real
service looks like to a client. The one exception is SQS's long poll: moto waits for
messages on its own condition variable, and holding the lock there would stall every
other request for up to 20 s.

moto also deep-copies every table a transaction touches, to roll back if it is
cancelled: each create, confirm and delete costs time in proportion to the whole
table, and a gallery of a few thousand images would crawl. With requests serialized,
remembering just the items the transaction touches is enough (see `_item_rollback`).

With a StateStore (`make run`), what each request changed is written to the data
directory before its answer leaves (app/local/state.py).

    python -m app.local --port 5000     # the same emulator alone (the tests use it)
"""

import argparse
import copy
import io
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.config import Settings
from app.local.state import Restored, StateStore

if TYPE_CHECKING:
    from werkzeug.serving import BaseWSGIServer


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class OneAtATime:
    """WSGI middleware: one request at a time into the wrapped app, but long polls; and,
    with a StateStore, what each successful request changed kept before it answers."""

    def __init__(self, app: Any, lock: threading.Lock, state: StateStore | None = None) -> None:
        self._app = app
        self._state = state
        self.lock = lock

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        body = _read_body(environ) if self._state is not None else b""
        status = ""

        def started(code: str, headers: Any, *args: Any) -> Any:
            nonlocal status
            status = code
            return start_response(code, headers, *args)

        if environ.get("HTTP_X_AMZ_TARGET") == "AmazonSQS.ReceiveMessage":
            answer = list(self._app(environ, started))
            # Receiving moves messages past their receive limit to the dead-letter queue.
            with self.lock:
                self._keep(environ, body, status)
            return answer
        with self.lock:
            # The body too: a lazy response iterable would run after the lock is gone.
            answer = list(self._app(environ, started))
            self._keep(environ, body, status)
            return answer

    def _keep(self, environ: dict[str, Any], body: bytes, status: str) -> None:
        if self._state is not None and status.startswith("2"):
            self._state.after(environ, body)


def _read_body(environ: dict[str, Any]) -> bytes:
    """The request's body, read once and put back for the app."""
    length = environ.get("CONTENT_LENGTH")
    stream = environ["wsgi.input"]
    if length:
        body: bytes = stream.read(int(length))
    elif environ.get("wsgi.input_terminated"):  # chunked: werkzeug ends the stream itself
        body = stream.read()
    else:
        body = b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def _item_rollback() -> None:
    """Make moto's TransactWriteItems roll back the items it touched instead of restoring
    deep copies of whole tables. Only safe with requests serialized (OneAtATime)."""
    from moto.dynamodb.models import DynamoDBBackend  # noqa: PLC0415
    from moto.dynamodb.models.table import Table  # noqa: PLC0415

    backend_class: Any = DynamoDBBackend
    table_class: Any = Table
    transact: Callable[..., None] = backend_class.transact_write_items
    if getattr(transact, "rolls_back_items", False):
        return

    def touched(backend: Any, entries: list[dict[str, Any]]) -> list[tuple[str, Any, Any]]:
        before = []
        for entry in entries:
            ((_, op),) = entry.items()
            table = backend.get_table(op["TableName"])
            key = op.get("Key") or {
                name: op["Item"][name]
                for name in (table.hash_key_attr, table.range_key_attr)
                if name is not None
            }
            item = backend.get_item(op["TableName"], key)
            attrs = None if item is None else copy.deepcopy(item.to_json()["Attributes"])
            before.append((op["TableName"], key, attrs))
        return before

    def transact_write_items(backend: Any, transact_items: list[dict[str, Any]]) -> None:
        try:
            before = touched(backend, transact_items)
        except Exception:  # malformed, or an unknown table: moto itself reports it
            before = None
        copy_table = getattr(table_class, "__deepcopy__", None)
        table_class.__deepcopy__ = lambda table, memo: table
        try:
            transact(backend, transact_items)
        except Exception:
            for table_name, key, attrs in reversed(before or []):
                if attrs is None:
                    backend.delete_item(table_name, key)
                else:
                    backend.put_item(table_name, attrs, overwrite=True)
            raise
        finally:
            if copy_table is None:
                del table_class.__deepcopy__
            else:
                table_class.__deepcopy__ = copy_table

    transact_write_items.rolls_back_items = True  # type: ignore[attr-defined]
    backend_class.transact_write_items = transact_write_items


class EmbeddedAws:
    """moto's server on loopback, requests serialized; stops with the process."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, state: StateStore | None = None
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._state = state
        # Held by each request into moto, and by whatever else touches its state.
        self.lock = threading.Lock()
        self._server: BaseWSGIServer | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _build(self) -> "BaseWSGIServer":
        # moto is a `local` extra, absent from the Lambda image: import it only here.
        from moto.moto_server.werkzeug_app import (  # noqa: PLC0415
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server  # noqa: PLC0415

        _item_rollback()
        app = OneAtATime(DomainDispatcherApplication(create_backend_app), self.lock, self._state)
        return make_server(
            self.host, self.port, app, threaded=True, request_handler=MotoRequestHandler
        )

    def start(self) -> str:
        # One line per emulated AWS call would bury the service's own log.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server = self._build()
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self.url

    def serve_forever(self) -> None:
        self._build().serve_forever()


@dataclass(frozen=True)
class Embedded:
    settings: Settings  # pointing at the emulator
    aws: EmbeddedAws
    state: StateStore

    def restore(self) -> Restored:
        """Load the kept state (once the service has created its resources), between
        requests; from then on, what requests change is kept."""
        with self.aws.lock:
            return self.state.restore()


def start_embedded_aws(settings: Settings, fresh: bool = False) -> Embedded:
    """Start the emulator on a free loopback port, keeping its state in the data
    directory (emptied first if `fresh`); settings that point at it."""
    # Any credentials do for moto; without some, botocore refuses to sign at all.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "embedded")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "embedded")
    state = StateStore(settings.data_dir)
    state.open(fresh=fresh)
    aws = EmbeddedAws(state=state)
    url = aws.start()
    return Embedded(settings.model_copy(update={"aws_endpoint_url": url}), aws, state)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m app.local", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args(argv)
    print(f"Embedded AWS emulator (moto, one request at a time): http://{args.host}:{args.port}")
    EmbeddedAws(args.host, args.port).serve_forever()


if __name__ == "__main__":
    main()
