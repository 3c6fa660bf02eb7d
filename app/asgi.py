"""The shape our pure ASGI middlewares share (request ids, body limits, security
headers): HTTP requests only; lifespan and anything else pass straight through. Pure
ASGI rather than BaseHTTPMiddleware, which would buffer streamed bodies and add a task
per request."""

from starlette.types import ASGIApp, Receive, Scope, Send


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
