"""Headers every response carries, whatever produced it: pages, static files, the API's
JSON, errors. One policy for all: a static file served on its own (/static/index.html)
is as protected as the page that loads it."""

from starlette.types import Message, Receive, Scope, Send

from app.asgi import HttpMiddleware

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
