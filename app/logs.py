"""Structured logs: one JSON object per line, each with the request id it belongs to.

The request id is Lambda's `aws_request_id` under Mangum, else the caller's
`X-Request-ID` when it is sane, else a fresh one; it is echoed in `X-Request-ID`. The
access line is written by the HTTP edge (app/http/middleware.py) rather than by
uvicorn, whose access log runs outside the request's context. Nothing logs headers,
bodies or response URLs, so neither tokens nor presigned signatures can reach a log.
Every entry point configures logging here, the worker too: nothing here imports the
HTTP framework.
"""

import logging
import re
import sys
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter

request_id: ContextVar[str] = ContextVar("request_id", default="-")
SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
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
