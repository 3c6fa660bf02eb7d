"""Errors as HTTP answers, in one place: every error the app answers is
`{"detail": ..., "code": ...}` (app/images/models.py `Problem`), never a traceback; each
code has one status, here; routes declare theirs in OpenAPI from the same table."""

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException
from starlette.routing import Match

from app.domain.errors import Code, ServiceError
from app.images.models import Problem

log = logging.getLogger(__name__)

STATUS: dict[Code, int] = {
    Code.NOT_FOUND: 404,
    Code.NOT_UPLOADED: 409,
    Code.NOT_READY: 409,
    Code.REJECTED: 409,
    Code.VARIANT_NOT_READY: 409,
    Code.IMAGE_DELETED: 409,
    Code.UPLOAD_EXPIRED: 409,
    Code.INVALID_IMAGE: 422,
    Code.IDEMPOTENCY_KEY_REUSED: 422,
    Code.INVALID_REQUEST: 422,
    Code.INVALID_BODY: 400,
    Code.INVALID_CURSOR: 400,
    Code.TOO_LARGE: 413,
    Code.BODY_TOO_LARGE: 413,
    Code.QUOTA_IMAGES: 429,
    Code.QUOTA_BYTES: 413,
    Code.RATE_LIMITED: 429,
    Code.UNAUTHORIZED: 401,
    Code.METHOD_NOT_ALLOWED: 405,
    Code.UNAVAILABLE: 503,
    Code.CDN_COOKIES_OFF: 409,
    Code.NOT_SCANNED: 409,
    Code.SCAN_FAILED: 409,
    Code.INFECTED: 409,
    Code.INTERNAL: 500,
}
# Starlette's own refusals (no route, no such method, a body it cannot parse).
_FRAMEWORK = {404: Code.NOT_FOUND, 405: Code.METHOD_NOT_ALLOWED, 400: Code.INVALID_BODY}
# Codes whose answers say when to try again.
_RETRY_AFTER = (Code.RATE_LIMITED, Code.UNAVAILABLE, Code.NOT_SCANNED)


def problem(detail: Any, code: Code) -> bytes:
    """An error body. ASCII only, so JSON survives any input (lone surrogates a client
    sent are escaped, not a 500)."""
    return json.dumps({"detail": detail, "code": code}, ensure_ascii=True).encode()


def answer(
    detail: Any, code: Code, headers: dict[str, str] | None = None, status: int | None = None
) -> Response:
    return Response(
        problem(detail, code),
        status_code=status or STATUS[code],
        headers=headers,
        media_type="application/json",
    )


def responses(*codes: Code) -> dict[int | str, dict[str, Any]]:
    """OpenAPI error responses for a route that answers these codes: each status with
    the Problem model, and the codes it carries there (what a client branches on)."""
    by_status: dict[int, list[Code]] = {}
    for code in codes:
        by_status.setdefault(STATUS[code], []).append(code)
    declared: dict[int | str, dict[str, Any]] = {}
    for status, carried in sorted(by_status.items()):
        declared[status] = {
            "model": Problem,
            "description": "; ".join(f"`{code}`" for code in carried),
        }
        if any(code in _RETRY_AFTER for code in carried):
            declared[status]["headers"] = {
                "Retry-After": {
                    "description": "Seconds to wait before trying again",
                    "schema": {"type": "integer"},
                }
            }
    return declared


async def _invalid_request(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for it only
    # FastAPI's default echoes each bad `input` back: a megabyte body would be returned
    # whole. Where, what and why is enough.
    errors = [
        {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}
        for error in exc.errors()
    ]
    return answer(errors, Code.INVALID_REQUEST)


async def _service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)  # noqa: S101 - registered for ServiceError only
    if STATUS[exc.code] >= 500:
        # What on-call needs: which AWS error, on which route (codes only, no payloads).
        log.warning(
            "%s %s -> %s: %s (%r)",
            request.method,
            request.url.path,
            exc.code,
            exc.detail,
            exc.__cause__,
        )
    headers = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    if exc.code == Code.UNAUTHORIZED:
        headers["WWW-Authenticate"] = "Bearer"
    return answer(exc.detail, exc.code, headers)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return answer("Internal server error", Code.INTERNAL)


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


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)  # noqa: S101 - registered for it only
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(_allowed_methods(request))
    code = _FRAMEWORK.get(exc.status_code, Code.INVALID_REQUEST)
    return answer(exc.detail, code, headers, exc.status_code)


def install(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(Exception, _unexpected)
