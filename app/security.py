"""Headers every response carries, whatever produced it (routes, errors, static files)."""

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# A browser must never guess a type other than the one we send.
ALWAYS = [(b"x-content-type-options", b"nosniff")]


class SecurityHeaders:
    """Pure ASGI middleware: adds the headers on the way out, once per response."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [
                    *message.get("headers", []),
                    *((name, value) for name, value in ALWAYS if name not in present),
                ]
            await send(message)

        await self._app(scope, receive, send_with_headers)
