"""AWS Lambda entry point: `app.lambda_handler.handler`.

API Gateway (REST v1, HTTP API v2) and function URL events go through Mangum to the same
app uvicorn serves. EventBridge's scheduled event runs the sweep of abandoned uploads.
Everything is built once per cold start; AWS clients on first use.
"""

from dataclasses import asdict
from typing import Any

from mangum import Mangum
from mangum.types import ASGI
from starlette.types import Receive, Scope, Send

from app.config import Settings
from app.main import create_app


def _served_under(root_path: str, asgi: ASGI) -> ASGI:
    """Mangum strips the stage from the path but leaves `root_path` empty, so /docs
    would fetch /openapi.json outside the stage; the server sets the root path."""

    async def app_under_stage(scope: Scope, receive: Receive, send: Send) -> None:
        await asgi({**scope, "root_path": root_path}, receive, send)

    return app_under_stage


settings = Settings()
app = create_app(settings)
asgi_handler = Mangum(
    _served_under(settings.api_base_path, app) if settings.api_base_path else app,
    lifespan="off",
    api_gateway_base_path=settings.api_base_path or "/",
)


# Leave this much of the invocation's time to report back before Lambda stops it.
SWEEP_MARGIN_SECONDS = 5


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if event.get("source") == "aws.events":
        budget = context.get_remaining_time_in_millis() / 1000 - SWEEP_MARGIN_SECONDS
        return asdict(app.state.maintenance.sweep(seconds=max(budget, 1)))
    return asgi_handler(event, context)
