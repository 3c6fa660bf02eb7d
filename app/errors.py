"""Domain errors and the one place that turns them (and everything else) into HTTP."""

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match

log = logging.getLogger(__name__)


class ServiceError(Exception):
    """Base of every error the service reports on purpose; `status` is its HTTP code."""

    status = 500
    headers: dict[str, str] | None = None

    def __init__(self, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if headers is not None:
            self.headers = headers


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409


class InvalidImage(ServiceError):
    status = 422


class IdempotencyMismatch(ServiceError):
    """An Idempotency-Key reused with a different request (Stripe's convention: 422)."""

    status = 422


class TooLarge(ServiceError):
    status = 413


class TooMany(ServiceError):
    """A per-user count quota (images, unconfirmed uploads) is used up."""

    status = 429


class BadCursor(ServiceError):
    status = 400


class Unauthorized(ServiceError):
    status = 401
    headers = {"WWW-Authenticate": "Bearer"}  # noqa: RUF012 - read-only class constant


class Unavailable(ServiceError):
    """AWS throttled us or could not be reached; the client should retry later."""

    status = 503
    headers = {"Retry-After": "1"}  # noqa: RUF012 - read-only class constant


def image_not_found() -> NotFound:
    # One message for "missing" and "someone else's": the two must be indistinguishable.
    return NotFound("Image not found")


class SafeJSONResponse(JSONResponse):
    """JSON that survives any input: lone surrogates a client sent are escaped, not a 500."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode()


async def _invalid_request(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for it only
    # FastAPI's default echoes each bad `input` back: a megabyte body would be returned
    # whole. Where, what and why is enough.
    errors = [
        {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}
        for error in exc.errors()
    ]
    return SafeJSONResponse({"detail": errors}, status_code=422)


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)  # noqa: S101 - registered for ServiceError only
    if exc.status >= 500:
        # What on-call needs: which AWS error, on which route (codes only, no payloads).
        log.warning(
            "%s %s -> %s: %s (%r)",
            request.method,
            request.url.path,
            exc.status,
            exc.detail,
            exc.__cause__,
        )
    return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=exc.headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse({"detail": "Internal server error"}, status_code=500)


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _allowed_methods(request: Request) -> list[str]:
    """Starlette names only the methods of the first route it tried, and GET and POST
    /images are two routes. A literal path of the published API (/images/direct) owns
    its methods even where a template (/images/{image_id}) would also match it; any
    other path gets every method the router would take."""
    documented = request.app.openapi()["paths"].get(request.scope["path"])
    if documented:
        return sorted(method.upper() for method in documented)
    return [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL
            for route in request.app.router.routes
        )
    ]


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)  # noqa: S101 - registered for it only
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(_allowed_methods(request))
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(Exception, _unexpected)
