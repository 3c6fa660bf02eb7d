"""Structured logs: one JSON object per line, each with the request id it belongs to.

The request id is Lambda's `aws_request_id` under Mangum, else the caller's
`X-Request-ID` when it is sane, else a fresh one; it is echoed in `X-Request-ID`. The
access line is written here rather than by uvicorn, whose access log runs outside the
request's context. Nothing logs headers, bodies or response URLs, so neither tokens
nor presigned signatures can reach a log.
"""

import logging
import re
import sys
import time
import uuid
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter
from starlette.types import Message, Receive, Scope, Send

from app.asgi import HttpMiddleware

request_id: ContextVar[str] = ContextVar("request_id", default="-")
_SANE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
access_log = logging.getLogger("app.access")

# Libraries whose DEBUG (and some INFO) lines carry secrets or user data: botocore logs
# canonical requests with signatures and request bodies (items, tags), urllib3 and httpx
# log URLs with presigned queries, moto and werkzeug every emulated call. They stay at
# WARNING whatever IMAGES_LOG_LEVEL says: at DEBUG the service's own lines are enough.
QUIET_LIBRARIES = (
    "boto3",
    "botocore",
    "s3transfer",
    "urllib3",
    "httpx",
    "httpcore",
    "aws_xray_sdk",
    "moto",
    "werkzeug",
    "multipart",
    "PIL",
)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is when a record is emitted, not when the handler was
    made: test runners and the Lambda runtime may swap it after start-up."""

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, _: object) -> None:
        pass


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


def configure_logging(level: str) -> None:
    """JSON on stderr for the root logger and uvicorn's; safe to call more than once."""
    handler = _StderrHandler()
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    )
    handler.addFilter(_RequestIdFilter())
    handler.set_name("app-json")
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if h.get_name() != "app-json"] + [handler]
    root.setLevel(level)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
    # Our access line replaces uvicorn's (see the module docstring).
    logging.getLogger("uvicorn.access").disabled = True


class RequestContext(HttpMiddleware):
    """Set the request id, echo it, write one access line."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        lambda_context = scope.get("aws.context")
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = (
            getattr(lambda_context, "aws_request_id", None)
            or (given if _SANE_ID.match(given) else None)
            or uuid.uuid4().hex
        )
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self._app(scope, receive, send_with_id)
        finally:
            access_log.info(
                "request",
                extra={
                    "method": scope["method"],
                    # The path only: query strings can carry cursors, never worth a log.
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
            request_id.reset(token)
