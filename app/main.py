"""The application factory: `uvicorn app.main:create_app --factory`, and the Lambda."""

import hashlib
import hmac
import html
from importlib.resources import files
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from app import api
from app.auth import TokenVerifier
from app.config import Settings
from app.errors import install_error_handlers
from app.limits import BodySizeLimit
from app.logs import RequestContext, configure_logging
from app.maintenance import Maintenance
from app.pagination import CursorCodec
from app.security import SecurityHeaders
from app.service import Clock, ImageService
from app.storage import Storage
from app.storage.clients import AwsClients

STATIC = files("app").joinpath("static")
FAVICON = STATIC.joinpath("favicon.png").read_bytes()


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


def _add_pages(app: FastAPI, demo_token: str | None) -> None:
    """The gallery at / and the OpenAPI docs, both from files shipped in the package: no
    CDN, so they work offline and under a strict Content-Security-Policy."""
    index = STATIC.joinpath("index.html").read_text()
    if demo_token:
        index = index.replace(
            "</head>", f'  <meta name="demo-token" content="{html.escape(demo_token)}">\n</head>'
        )
    page_headers = {
        # Presigned URLs point at S3 (or the emulator): images and PUTs go there.
        "Content-Security-Policy": "default-src 'self'; img-src 'self' https: http: data:; "
        "connect-src 'self' https: http:; frame-ancestors 'none'; base-uri 'none'",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }

    @app.get("/", include_in_schema=False)
    def gallery() -> HTMLResponse:
        return HTMLResponse(index, headers=page_headers)

    # Endpoints must not close over `app`: FastAPI caches facts about each endpoint in a
    # module-level lru_cache keyed by the function, which would keep every app alive.
    @app.get("/docs", include_in_schema=False)
    def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=f"{root}{request.app.openapi_url}",
            title=f"{request.app.title} - API",
            swagger_js_url=f"{root}/static/vendor/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{root}/static/vendor/swagger-ui/swagger-ui.css",
            swagger_favicon_url=f"{root}/favicon.ico",
        )

    app.mount("/static", StaticFiles(packages=[("app", "static")]), name="static")


def create_app(
    settings: Settings | None = None,
    clients: AwsClients | None = None,
    clock: Clock | None = None,
    demo_token: str | None = None,
) -> FastAPI:
    """Build the app. AWS clients are created lazily, on first use, and then shared.

    `demo_token` is offered on the gallery's sign-in: only `make run` passes one, for
    its development secret."""
    settings = settings or Settings()
    configure_logging(settings.log_level)
    app = FastAPI(
        title="Image service",
        version="0.1.0",
        summary="Upload, list, download and delete images through presigned S3 URLs.",
        docs_url=None,  # served from the package below, not from a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.verifier = TokenVerifier(settings)
    app.state.clients = clients = clients or AwsClients(settings)
    app.state.storage = storage = Storage.connect(clients, settings)
    app.state.service = service = ImageService(
        storage, settings, CursorCodec(_cursor_secret(settings)), clock
    )
    app.state.maintenance = Maintenance(service, storage, settings)
    install_error_handlers(app)
    multipart_limit = settings.max_direct_bytes + 64 * 1024  # the file plus form fields
    app.add_middleware(
        BodySizeLimit,
        limit_for=lambda path: (
            multipart_limit if path == "/images/direct" else settings.max_json_body_bytes
        ),
    )
    app.add_middleware(SecurityHeaders)
    app.add_middleware(RequestContext)
    app.include_router(api.router)

    _publish_limits(app, settings)

    @app.get("/health", tags=["meta"])
    def health() -> Health:
        """Liveness: the process is up and serving."""
        return Health()

    _add_pages(app, demo_token)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(
            FAVICON, media_type="image/png", headers={"Cache-Control": "public, max-age=86400"}
        )

    return app
