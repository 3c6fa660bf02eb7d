"""The application factory: `uvicorn app.main:create_app --factory`, and the Lambda."""

import hashlib
import hmac
import html
from importlib.resources import files
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from app import api
from app.auth import TokenVerifier
from app.config import MULTIPART_OVERHEAD_BYTES, Settings
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


def _operation_id(route: APIRoute) -> str:
    # Pages outside the schema have no tag; their ids are never published.
    return f"{route.tags[0]}-{route.name}" if route.tags else route.name


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
        size["maximum"] = settings.largest_upload
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _add_pages(app: FastAPI, demo_token: str | None) -> None:
    """The gallery at / and the OpenAPI docs, both from files shipped in the package: no
    CDN, so they work offline, and no inline script, so they work under the strict
    Content-Security-Policy every response carries (app/security.py)."""
    index = STATIC.joinpath("index.html").read_text()
    if demo_token:
        index = index.replace(
            "</head>", f'  <meta name="demo-token" content="{html.escape(demo_token)}">\n</head>'
        )
    docs_page = STATIC.joinpath("docs.html").read_text()
    no_store = {"Cache-Control": "no-store"}

    @app.get("/", include_in_schema=False)
    async def gallery() -> HTMLResponse:
        return HTMLResponse(index, headers=no_store)

    # Endpoints must not close over `app`: FastAPI caches facts about each endpoint in a
    # module-level lru_cache keyed by the function, which would keep every app alive.
    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = html.escape(request.scope.get("root_path", "").rstrip("/"))
        return HTMLResponse(docs_page.replace("{root}", root), headers=no_store)

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
        # Readable ids ("images-create"): what generated clients name their functions.
        generate_unique_id_function=_operation_id,
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
    multipart_limit = settings.max_direct_bytes + MULTIPART_OVERHEAD_BYTES
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

    @app.get("/health", tags=["meta"], name="health")
    async def health() -> Health:
        """Liveness: the process is up and serving."""
        return Health()

    _add_pages(app, demo_token)

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response(
            FAVICON, media_type="image/png", headers={"Cache-Control": "public, max-age=86400"}
        )

    return app
