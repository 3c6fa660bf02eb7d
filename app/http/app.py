"""The application factory: `uvicorn app.http.app:create_app --factory`, and the Lambda."""

from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel

from app.composition import Services, build
from app.config import MULTIPART_OVERHEAD_BYTES, Settings
from app.http import problems, routes
from app.http.auth import TokenVerifier
from app.http.middleware import BodySizeLimit, RequestContext, SecurityHeaders
from app.http.pages import add_pages
from app.images.service import ORIGINAL
from app.logs import configure_logging


class Health(BaseModel):
    status: str = "ok"


def _operation_id(route: APIRoute) -> str:
    # Pages outside the schema have no tag; their ids are never published.
    return f"{route.tags[0]}-{route.name}" if route.tags else route.name


def _publish_configuration(app: FastAPI, settings: Settings) -> None:
    """Put what depends on the configuration in the OpenAPI schema, so that what the
    schema allows is exactly what the API accepts: the upload limit (the models only
    know S3's 5 GiB ceiling) and the variant names a download takes."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        size = schema["components"]["schemas"]["CreateImageRequest"]["properties"]["size"]
        size["maximum"] = settings.largest_upload
        download = schema["paths"]["/images/{image_id}/download"]["get"]
        (variant,) = (p for p in download["parameters"] if p["name"] == "variant")
        variant["schema"]["enum"] = [ORIGINAL, *settings.variants]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(
    settings: Settings | None = None,
    *,
    services: Services | None = None,
    demo_token: str | None = None,
) -> FastAPI:
    """The app over `services` (else built from `settings`: app/composition.py). AWS
    clients are created on first use, then shared.

    `demo_token` is offered on the gallery's sign-in: only `make run` passes one, for
    its development secret."""
    services = services or build(settings or Settings())
    settings = services.settings
    configure_logging(settings.log_level)
    app = FastAPI(
        title="Image service",
        version="0.1.0",
        summary="Upload, list, download and delete images through presigned S3 URLs.",
        docs_url=None,  # served from the package (app/http/pages.py), not from a CDN
        redoc_url=None,
        # Readable ids ("images-create"): what generated clients name their functions.
        generate_unique_id_function=_operation_id,
    )
    app.state.services = services
    app.state.verifier = TokenVerifier(settings)
    _ = services.images  # fail at start, not on the first list, without a cursor key
    problems.install(app)
    multipart_limit = settings.max_direct_bytes + MULTIPART_OVERHEAD_BYTES
    app.add_middleware(
        BodySizeLimit,
        limit_for=lambda path: (
            multipart_limit if path == "/images/direct" else settings.max_json_body_bytes
        ),
    )
    app.add_middleware(SecurityHeaders)
    app.add_middleware(RequestContext)
    app.include_router(routes.router)
    _publish_configuration(app, settings)

    @app.get("/health", tags=["meta"], name="health")
    async def health() -> Health:
        """Liveness: the process is up and serving."""
        return Health()

    add_pages(app, settings, demo_token)
    return app
