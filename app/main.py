"""The application factory: `uvicorn app.main:create_app --factory`, and the Lambda."""

import hashlib
import hmac
from importlib.resources import files
from typing import Any

from fastapi import FastAPI, Response
from pydantic import BaseModel

from app import api
from app.auth import TokenVerifier
from app.config import Settings
from app.errors import install_error_handlers
from app.limits import BodySizeLimit
from app.logs import RequestContext, configure_logging
from app.pagination import CursorCodec
from app.service import Clock, ImageService
from app.storage.clients import AwsClients
from app.storage.images import ImageStore

FAVICON = files("app").joinpath("static/favicon.png").read_bytes()


class Health(BaseModel):
    status: str = "ok"


def _cursor_secret(settings: Settings) -> bytes:
    if settings.cursor_secret is not None:
        return settings.cursor_secret.get_secret_value().encode()
    if settings.jwt_secret is None:
        raise RuntimeError("set IMAGES_CURSOR_SECRET (or IMAGES_JWT_SECRET) to sign cursors")
    # Derived, not reused: a cursor MAC must never double as a valid token signature.
    return hmac.new(
        settings.jwt_secret.get_secret_value().encode(), b"images/list-cursor", hashlib.sha256
    ).digest()


def _publish_limits(app: FastAPI, settings: Settings) -> None:
    """Put the configured upload limit in the OpenAPI schema, so that what the schema
    allows is exactly what the API accepts (the models only know S3's 5 GiB ceiling)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()
        size = schema["components"]["schemas"]["CreateImageRequest"]["properties"]["size"]
        size["maximum"] = min(settings.max_upload_bytes, settings.max_bytes_per_user)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(
    settings: Settings | None = None,
    clients: AwsClients | None = None,
    clock: Clock | None = None,
) -> FastAPI:
    """Build the app. AWS clients are created lazily, on first use, and then shared."""
    settings = settings or Settings()
    configure_logging(settings.log_level)
    app = FastAPI(
        title="Image service",
        version="0.1.0",
        summary="Upload, list, download and delete images through presigned S3 URLs.",
    )
    app.state.settings = settings
    app.state.verifier = TokenVerifier(settings)
    app.state.clients = clients = clients or AwsClients(settings)
    app.state.service = ImageService(
        ImageStore(clients, settings),
        settings,
        CursorCodec(_cursor_secret(settings)),
        clock,
    )
    install_error_handlers(app)
    multipart_limit = settings.max_direct_bytes + 64 * 1024  # the file plus form fields
    app.add_middleware(
        BodySizeLimit,
        limit_for=lambda path: (
            multipart_limit if path == "/images/direct" else settings.max_json_body_bytes
        ),
    )
    app.add_middleware(RequestContext)
    app.include_router(api.router)

    _publish_limits(app, settings)

    @app.get("/health", tags=["meta"])
    def health() -> Health:
        """Liveness: the process is up and serving."""
        return Health()

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(
            FAVICON, media_type="image/png", headers={"Cache-Control": "public, max-age=86400"}
        )

    return app
