"""AWS Lambda entry point of the API function: `app.http.lambda_handler.handler`.

A dispatch table of the event kinds this function receives (as Mangum picks its own
handler per HTTP event shape): API Gateway (REST v1, HTTP API v2) and function URL
requests go through Mangum to the same app uvicorn serves; EventBridge's schedule runs
the sweep. Everything is built once per cold start; AWS clients on first use. The
worker is another function (app/pipeline/lambda_handler.py): nothing here imports
Pillow.
"""

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from mangum import Mangum
from mangum.types import ASGI
from starlette.types import Receive, Scope, Send

from app.composition import build
from app.config import Settings
from app.http.app import create_app
from app.tracing import enable_xray

# Leave this much of the invocation's time to report back before Lambda stops it.
SWEEP_MARGIN_SECONDS = 5

Event = dict[str, Any]
Handle = Callable[[Event, Any], dict[str, Any]]


def _served_under(root_path: str, asgi: ASGI) -> ASGI:
    """Mangum strips the stage from the path but leaves `root_path` empty, so /docs
    would fetch /openapi.json outside the stage; the server sets the root path."""

    async def app_under_stage(scope: Scope, receive: Receive, send: Send) -> None:
        await asgi({**scope, "root_path": root_path}, receive, send)

    return app_under_stage


settings = Settings()
if settings.xray:
    enable_xray()
services = build(settings)
if services.storage.cdn is not None:
    # The private key, read once here (SSM) rather than by a first request: provisioned
    # concurrency pays for it ahead of traffic, and a wrong key fails the start, loudly.
    services.storage.cdn.check()
app = create_app(services=services)
asgi_handler = Mangum(
    _served_under(settings.api_base_path, app) if settings.api_base_path else app,
    lifespan="off",
    api_gateway_base_path=settings.api_base_path or "/",
)


def _sweep(_event: Event, context: Any) -> dict[str, Any]:
    budget = context.get_remaining_time_in_millis() / 1000 - SWEEP_MARGIN_SECONDS
    return asdict(services.maintenance.sweep(seconds=max(budget, 1)))


def _http(event: Event, context: Any) -> dict[str, Any]:
    response: dict[str, Any] = asgi_handler(event, context)
    return response


HANDLERS: tuple[
    tuple[str, Callable[[Event], bool], Callable[[Event, Any], dict[str, Any]]], ...
] = (
    ("schedule", lambda event: event.get("source") == "aws.events", _sweep),
    # API Gateway v1 and v2 and function URLs all carry a requestContext.
    ("http", lambda event: "requestContext" in event, _http),
)


def handler(event: Event, context: Any) -> dict[str, Any]:
    for _, matches, handle in HANDLERS:
        if matches(event):
            return handle(event, context)
    raise ValueError(f"unsupported event (keys: {sorted(event)[:10]})")
