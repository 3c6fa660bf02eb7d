"""The pure ASGI middlewares every HTTP request passes through: its request id and
access line, the body size limit, the security headers. Pure ASGI rather than
BaseHTTPMiddleware, which would buffer streamed bodies and add a task per request;
HTTP requests only, lifespan and anything else pass straight through."""

import time
import uuid
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.domain.errors import Code
from app.http.problems import problem
from app.logs import SANE_REQUEST_ID, access_log, request_id


class HttpMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        await self.handle(scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


# --- Request ids and the access line (see app/logs.py) ----------------------------------


class RequestContext(HttpMiddleware):
    """Set the request id, echo it, write one access line."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        lambda_context = scope.get("aws.context")
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = (
            getattr(lambda_context, "aws_request_id", None)
            or (given if SANE_REQUEST_ID.fullmatch(given) else None)
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


# --- Refuse oversized request bodies before anything reads or parses them ---------------

_TOO_LARGE = problem("Request body too large", Code.BODY_TOO_LARGE)


class BodySizeLimit(HttpMiddleware):
    """413 for a body over `limit_for(path)` bytes.

    A declared Content-Length is checked up front. A body without one (chunked, or as
    Mangum hands it over) is read and counted first, then replayed to the app: FastAPI
    would otherwise buffer all of it, and turn a failure while reading into a 400.
    """

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]) -> None:
        super().__init__(app)
        self._limit_for = limit_for

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self._limit_for(scope["path"])
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit() or int(declared) > limit:
                await _reject(send)
                return
            await self._app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _reject(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self._app(scope, replay, send)


async def _reject(send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(_TOO_LARGE)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": _TOO_LARGE})


# --- Headers every response carries, whatever produced it: pages, static files, the
# API's JSON, errors. One policy for all: a static file served on its own
# (/static/index.html) is as protected as the page that loads it. -------------------------

# Presigned URLs point at S3 (or the emulator): images and PUTs go there, so http(s) for
# images and connections; data: for painted placeholders. No inline script anywhere
# (the docs page loads its own file), so none is allowed.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' https: http: data:; connect-src 'self' https: http:; "
    "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
ALWAYS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    # A browser must never guess a type other than the one we send.
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),  # what frame-ancestors says, for older browsers
]


class SecurityHeaders(HttpMiddleware):
    """Adds the headers on the way out, once per response."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [
                    *message.get("headers", []),
                    *((name, value) for name, value in ALWAYS if name not in present),
                ]
            await send(message)

        await self._app(scope, receive, send_with_headers)
