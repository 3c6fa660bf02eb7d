"""The app shell: health, OpenAPI, and errors that are always JSON."""

import inspect
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from app.domain.errors import Code
from app.http import routes as api
from app.http.problems import STATUS
from app.images.models import ListQuery
from app.storage.clients import AwsClients
from tests.conftest import refusal


def test_health_is_ok(client: TestClient) -> None:
    response = client.get("/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_openapi_documents_every_route(client: TestClient) -> None:
    response = client.get("/openapi.json")

    assert response.status_code == 200
    paths = response.json()["paths"]
    assert set(paths) == {
        "/images",
        "/images/direct",
        "/images/{image_id}",
        "/images/{image_id}/confirm",
        "/images/{image_id}/download",
        "/cdn-cookies",
        "/health",
    }
    operations = [op for path in paths.values() for op in path.values()]
    assert all(op.get("description") for op in operations)
    assert not any("user_id" in str(op.get("parameters", "")) for op in operations)


def test_openapi_documents_every_list_filter_as_an_optional_query_parameter(
    client: TestClient,
) -> None:
    response = client.get("/openapi.json")

    assert response.status_code == 200
    parameters = response.json()["paths"]["/images"]["get"]["parameters"]
    assert [p["name"] for p in parameters] == list(ListQuery.model_fields)
    assert {(p["in"], p["required"]) for p in parameters} == {("query", False)}
    limit = next(p["schema"] for p in parameters if p["name"] == "limit")
    assert (limit["minimum"], limit["maximum"], limit["default"]) == (1, 100, 20)


def test_every_route_is_async(app: FastAPI) -> None:
    """A `def` route costs a threadpool hop per request: under Lambda a new thread each
    time, about 0.5 ms (docs/benchmarks.md). Blocking work goes through `run` instead."""
    routes = [*app.routes, *api.router.routes]  # the app lists its router as one entry
    endpoints = [route.endpoint for route in routes if isinstance(route, APIRoute)]

    assert endpoints
    assert [e.__name__ for e in endpoints if not inspect.iscoroutinefunction(e)] == []


def test_openapi_names_operations_readably(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]

    ids = {
        f"{method.upper()} {path}": operation["operationId"]
        for path, operations in paths.items()
        for method, operation in operations.items()
    }
    assert ids == {
        "POST /images": "images-create",
        "GET /images": "images-list",
        "POST /images/direct": "images-upload-direct",
        "GET /images/{image_id}": "images-get",
        "DELETE /images/{image_id}": "images-delete",
        "POST /images/{image_id}/confirm": "images-confirm",
        "GET /images/{image_id}/download": "images-download",
        "POST /cdn-cookies": "images-cdn-cookies",
        "GET /health": "meta-health",
    }


def test_openapi_links_lead_from_create_to_the_image_operations(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]

    links = paths["/images"]["post"]["responses"]["201"]["links"]
    assert {name: link["operationId"] for name, link in links.items()} == {
        "confirm": "images-confirm",
        "get": "images-get",
        "download": "images-download",
        "delete": "images-delete",
    }
    assert {link["parameters"]["image_id"] for link in links.values()} == {
        "$response.body#/image/id"
    }


def test_openapi_declares_the_problem_model_for_every_error_status(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]

    errors = {
        (method, path, status): response["content"]["application/json"]["schema"]["$ref"]
        for path, operations in paths.items()
        for method, operation in operations.items()
        for status, response in operation["responses"].items()
        if int(status) >= 400
    }
    assert len(errors) > 30
    assert set(errors.values()) == {"#/components/schemas/Problem"}


def test_openapi_enumerates_every_code(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]

    assert schemas["Problem"]["properties"]["code"] == {"$ref": "#/components/schemas/Code"}
    assert schemas["Code"]["enum"] == [code.value for code in Code]


@pytest.mark.parametrize(
    ("method", "path", "code"),
    [
        ("post", "/images", Code.QUOTA_IMAGES),
        ("post", "/images", Code.QUOTA_BYTES),
        ("post", "/images", Code.IDEMPOTENCY_KEY_REUSED),
        ("post", "/images", Code.UPLOAD_EXPIRED),
        ("post", "/images/direct", Code.TOO_LARGE),
        ("post", "/images/direct", Code.INVALID_IMAGE),
        ("get", "/images", Code.INVALID_CURSOR),
        ("post", "/images/{image_id}/confirm", Code.NOT_UPLOADED),
        ("get", "/images/{image_id}", Code.NOT_FOUND),
        ("get", "/images/{image_id}/download", Code.VARIANT_NOT_READY),
        ("get", "/images/{image_id}/download", Code.REJECTED),
        ("delete", "/images/{image_id}", Code.UNAUTHORIZED),
    ],
)
def test_openapi_names_each_code_a_route_answers_under_its_status(
    client: TestClient, method: str, path: str, code: Code
) -> None:
    responses = client.get("/openapi.json").json()["paths"][path][method]["responses"]

    assert f"`{code}`" in responses[str(STATUS[code])]["description"]


def test_openapi_declares_bearer_auth(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()

    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_docs_page_is_served(client: TestClient) -> None:
    response = client.get("/docs")

    assert response.status_code == 200
    assert "swagger-ui" in response.text


def test_unknown_route_is_json_404(client: TestClient) -> None:
    response = client.get("/nope")

    assert refusal(response) == (404, "not_found")
    assert response.json() == {"detail": "Not Found", "code": "not_found"}


def test_wrong_method_is_json_405(client: TestClient, alice: dict[str, str]) -> None:
    response = client.put("/images", headers=alice)

    assert refusal(response) == (405, "method_not_allowed")
    assert "detail" in response.json()


def _failing(monkeypatch: pytest.MonkeyPatch, clients: AwsClients, exc: Exception) -> None:
    def fail(*_: Any, **__: Any) -> Any:
        raise exc

    monkeypatch.setattr(clients.dynamodb, "get_item", fail)


def test_throttled_storage_is_503_with_retry_after(
    client: TestClient,
    alice: dict[str, str],
    clients: AwsClients,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    error = {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"}}
    _failing(monkeypatch, clients, ClientError(error, "GetItem"))  # type: ignore[arg-type]

    response = client.get("/images/abc", headers=alice)

    assert refusal(response) == (503, "unavailable")
    assert response.headers["retry-after"] == "1"
    assert response.json()["detail"].startswith("Storage is busy")


def test_unreachable_storage_is_503(
    client: TestClient,
    alice: dict[str, str],
    clients: AwsClients,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _failing(monkeypatch, clients, EndpointConnectionError(endpoint_url="http://x"))

    response = client.get("/images/abc", headers=alice)

    assert refusal(response) == (503, "unavailable")
    assert response.json() == {
        "detail": "Storage is unreachable, retry shortly",
        "code": "unavailable",
    }


def test_unexpected_error_is_json_500_without_traceback(
    app: Any, alice: dict[str, str], clients: AwsClients, monkeypatch: pytest.MonkeyPatch
) -> None:
    _failing(monkeypatch, clients, RuntimeError("secret internals"))
    client = TestClient(app, raise_server_exceptions=False)

    response = client.get("/images/abc", headers=alice)

    assert refusal(response) == (500, "internal")
    assert response.json() == {"detail": "Internal server error", "code": "internal"}
    assert "secret internals" not in response.text


def test_openapi_publishes_configured_size_limit(client: TestClient, settings: Any) -> None:
    schema = client.get("/openapi.json").json()

    size = schema["components"]["schemas"]["CreateImageRequest"]["properties"]["size"]
    assert size["maximum"] == settings.max_upload_bytes


def test_wrong_method_names_every_allowed_method(client: TestClient) -> None:
    response = client.request("PATCH", "/images")

    assert refusal(response) == (405, "method_not_allowed")
    assert response.headers["allow"] == "GET, POST"
    assert response.json() == {"detail": "Method Not Allowed", "code": "method_not_allowed"}


def test_aws_clients_retry_in_standard_mode_with_bounded_timeouts(clients: AwsClients) -> None:
    for aws_client in (clients.s3, clients.dynamodb):
        config = aws_client.meta.config

        assert config.retries == {"mode": "standard", "total_max_attempts": 3}
        assert config.connect_timeout == 2
        assert config.read_timeout == 10


def test_apps_are_freed_when_dropped() -> None:
    """Nothing global may keep an app alive (FastAPI caches per endpoint function, so an
    endpoint closing over `app` would): tests build hundreds, a process may rebuild."""
    import gc  # noqa: PLC0415

    from fastapi import FastAPI  # noqa: PLC0415

    from app.config import Settings  # noqa: PLC0415
    from app.http.app import create_app  # noqa: PLC0415

    def alive() -> int:
        gc.collect()
        return sum(isinstance(o, FastAPI) for o in gc.get_objects())

    before = alive()
    for _ in range(3):
        TestClient(create_app(Settings(jwt_secret="s" * 40))).get("/docs")

    assert alive() == before


SECURITY_HEADERS = (
    "content-security-policy",
    "x-content-type-options",
    "referrer-policy",
    "x-frame-options",
)


@pytest.mark.parametrize(
    "path",
    [
        "/static/index.html",
        "/static/gallery.js",
        "/static/gallery.css",
        "/static/docs.js",
        "/static/vendor/swagger-ui/swagger-ui.css",
        "/docs",
        "/favicon.ico",
        "/openapi.json",
        "/health",
        "/images",
        "/no-such-page",
    ],
)
def test_every_response_carries_the_gallerys_security_headers(
    client: TestClient, path: str
) -> None:
    page = client.get("/")

    response = client.get(path)

    assert {name: response.headers.get(name) for name in SECURITY_HEADERS} == {
        name: page.headers[name] for name in SECURITY_HEADERS
    }
    assert "script-src" not in page.headers["content-security-policy"]  # 'self' only
    assert "unsafe-inline" not in page.headers["content-security-policy"]
