"""AWS Lambda entry point of the worker function: `app.pipeline.lambda_handler.handler`
(template.yaml sets it as the image's command). Nothing here imports the HTTP framework:
the worker's cold start pays for boto3, the pipeline and Pillow only."""

from functools import cache
from typing import Any

from app.composition import Services, build
from app.config import Settings
from app.logs import configure_logging
from app.tracing import enable_xray


@cache
def _services() -> Services:
    settings = Settings()
    configure_logging(settings.log_level)
    if settings.xray:
        enable_xray()
    return build(settings)


def handler(event: dict[str, Any], _context: Any) -> dict[str, Any]:
    """An SQS batch of upload notifications. The service graph is built on the first
    invocation of an environment, then reused; AWS clients on their first use."""
    return _services().worker.handle(event)
