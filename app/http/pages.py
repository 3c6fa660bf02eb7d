"""The pages: the gallery at /, the OpenAPI docs, their files and the favicon, all
shipped in the package (no CDN: they work offline) and with no inline script (they work
under the strict Content-Security-Policy every response carries). The gallery's list of
formats and variants is written into its page from the tables, not copied into JS."""

import html
import json
import mimetypes
from importlib.resources import files

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from app.config import Settings
from app.domain.formats import FORMATS

STATIC = files("app").joinpath("static")
FAVICON_FILE = "favicon.png"
FAVICON = STATIC.joinpath(FAVICON_FILE).read_bytes()
_NO_STORE = {"Cache-Control": "no-store"}


def _meta(name: str, content: str) -> str:
    return f'  <meta name="{name}" content="{html.escape(content)}">\n'


def gallery_page(settings: Settings, demo_token: str | None) -> str:
    """index.html with what it needs to know: the accepted formats (the file picker, the
    type filter, a file's type from its name), the variants, and a demo token if any."""
    page = STATIC.joinpath("index.html").read_text()
    extensions = {
        ext.lstrip("."): f.content_type for f in reversed(FORMATS) for ext in f.extensions
    }
    head = _meta("formats", json.dumps(extensions, sort_keys=True))
    head += _meta("variants", json.dumps(list(settings.variants)))
    if demo_token:
        head += _meta("demo-token", demo_token)
    if settings.cdn_cookies:
        head += _meta("cdn-cookies", str(settings.cdn_cookie_ttl_seconds))
    accept = ",".join([f.content_type for f in FORMATS] + sorted(f".{e}" for e in extensions))
    options = "".join(
        f'\n              <option value="{f.content_type}">{html.escape(f.label)}</option>'
        for f in FORMATS
        if f.guessable
    )
    return (
        page.replace("</head>", head + "</head>")
        .replace("{accept}", accept)
        .replace("{labels}", ", ".join(f.label for f in FORMATS if f.guessable))
        .replace("{type_options}", options)
    )


def add_pages(app: FastAPI, settings: Settings, demo_token: str | None) -> None:
    gallery_html = gallery_page(settings, demo_token)
    docs_page = STATIC.joinpath("docs.html").read_text()

    @app.get("/", include_in_schema=False)
    async def gallery() -> HTMLResponse:
        return HTMLResponse(gallery_html, headers=_NO_STORE)

    # Endpoints must not close over `app`: FastAPI caches facts about each endpoint in a
    # module-level lru_cache keyed by the function, which would keep every app alive.
    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = html.escape(request.scope.get("root_path", "").rstrip("/"))
        return HTMLResponse(docs_page.replace("{root}", root), headers=_NO_STORE)

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response(
            FAVICON,
            media_type=mimetypes.guess_type(FAVICON_FILE)[0],
            headers={"Cache-Control": "public, max-age=86400"},
        )

    app.mount("/static", StaticFiles(packages=[("app", "static")]), name="static")
