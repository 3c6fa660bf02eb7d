"""The Lambda handler fed real API Gateway event shapes (tests/events/, adapted)."""

import base64
import importlib
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import pytest

from app.config import DIRECT_UPLOAD_CEILING, LAMBDA_PAYLOAD_BYTES, Settings
from app.storage.items import object_key
from app.storage.resources import ensure_resources
from tests.conftest import SECRET, bearer
from tests.imagefiles import make_image, png_of_size
from tests.lambda_events import (
    Context,
    function_url_event,
    http_api_event,
    response_json,
    rest_api_event,
    sqs_event,
)
from tests.lambda_runtime import ROOT
from tests.servers import BASE_ENV

Loader = Callable[..., ModuleType]
JWT_SETTINGS = Settings(jwt_secret=SECRET)


@pytest.fixture
def load_handler(aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Loader]:
    """Import app.http.lambda_handler afresh (a cold start) with the given environment."""

    def load(**env: str) -> ModuleType:
        for name, value in {"IMAGES_JWT_SECRET": SECRET, **env}.items():
            monkeypatch.setenv(name, value)
        sys.modules.pop("app.http.lambda_handler", None)
        module = importlib.import_module("app.http.lambda_handler")
        ensure_resources(module.app.state.services.clients, module.settings)
        return module

    yield load
    sys.modules.pop("app.http.lambda_handler", None)


def _invoke(module: ModuleType, event: dict[str, Any]) -> dict[str, Any]:
    response: dict[str, Any] = module.handler(event, Context())
    return response


def _create_body(data: bytes | None = None, **fields: Any) -> str:
    data = data if data is not None else make_image()
    return json.dumps(
        {"filename": "l.png", "content_type": "image/png", "size": len(data), **fields}
    )


def test_http_api_health(load_handler: Loader) -> None:
    response = _invoke(load_handler(), http_api_event("GET", "/health"))

    assert response["statusCode"] == 200
    assert response_json(response) == {"status": "ok"}


def test_http_api_uses_authorizer_claims_as_owner(load_handler: Loader) -> None:
    module = load_handler(IMAGES_AUTH_MODE="apigateway", IMAGES_CURSOR_SECRET="c" * 40)
    json_headers = {"content-type": "application/json"}

    created = _invoke(
        module,
        http_api_event(
            "POST", "/images", body=_create_body(), headers=json_headers, claims={"sub": "carol"}
        ),
    )
    image_id = response_json(created)["image"]["id"]
    mine = _invoke(module, http_api_event("GET", f"/images/{image_id}", claims={"sub": "carol"}))
    theirs = _invoke(module, http_api_event("GET", f"/images/{image_id}", claims={"sub": "dave"}))

    assert created["statusCode"] == 201
    assert mine["statusCode"] == 200
    assert theirs["statusCode"] == 404
    record = module.app.state.services.clients.dynamodb.get_item(
        TableName="images", Key={"image_id": {"S": image_id}}
    )["Item"]
    assert record["user_id"] == {"S": "carol"}


def test_http_api_without_claims_is_401(load_handler: Loader) -> None:
    module = load_handler(IMAGES_AUTH_MODE="apigateway", IMAGES_CURSOR_SECRET="c" * 40)

    response = _invoke(module, http_api_event("GET", "/images", claims=None))

    assert response["statusCode"] == 401
    assert response_json(response) == {
        "detail": "No verified identity in the request",
        "code": "unauthorized",
    }


def test_http_api_ignores_identity_headers_without_claims(load_handler: Loader) -> None:
    module = load_handler(IMAGES_AUTH_MODE="apigateway", IMAGES_CURSOR_SECRET="c" * 40)
    forged = {**bearer(JWT_SETTINGS, "mallory"), "x-user-id": "carol"}

    response = _invoke(module, http_api_event("GET", "/images", headers=forged, claims=None))

    assert response["statusCode"] == 401


def test_rest_api_uses_cognito_claims(load_handler: Loader) -> None:
    module = load_handler(IMAGES_AUTH_MODE="apigateway", IMAGES_CURSOR_SECRET="c" * 40)

    created = _invoke(
        module,
        rest_api_event(
            "POST",
            "/images",
            body=_create_body(),
            claims={"sub": "erin"},
            headers={"Content-Type": "application/json"},
        ),
    )
    listed = _invoke(
        module,
        rest_api_event("GET", "/images", query={"status": "pending"}, claims={"sub": "erin"}),
    )

    assert created["statusCode"] == 201
    assert listed["statusCode"] == 200
    assert [i["id"] for i in response_json(listed)["items"]] == [
        response_json(created)["image"]["id"]
    ]


def test_rest_api_without_claims_is_401(load_handler: Loader) -> None:
    module = load_handler(IMAGES_AUTH_MODE="apigateway", IMAGES_CURSOR_SECRET="c" * 40)

    response = _invoke(module, rest_api_event("GET", "/images", claims=None))

    assert response["statusCode"] == 401


def test_base64_encoded_json_body_is_decoded(load_handler: Loader) -> None:
    module = load_handler()
    headers = {"content-type": "application/json", **bearer(JWT_SETTINGS, "alice")}

    response = _invoke(
        module,
        http_api_event(
            "POST", "/images", body=_create_body(), headers=headers, base64_encoded=True
        ),
    )

    assert response["statusCode"] == 201
    assert response_json(response)["image"]["status"] == "pending"


def test_binary_response_is_base64_encoded(load_handler: Loader) -> None:
    response = _invoke(load_handler(), http_api_event("GET", "/favicon.ico"))

    assert response["statusCode"] == 200
    assert response["isBase64Encoded"] is True
    assert base64.b64decode(response["body"]).startswith(b"\x89PNG\r\n\x1a\n")


def test_stage_prefix_is_stripped(load_handler: Loader) -> None:
    module = load_handler(IMAGES_API_BASE_PATH="/prod")

    response = _invoke(module, http_api_event("GET", "/health", stage="prod"))

    assert response["statusCode"] == 200
    assert response_json(response) == {"status": "ok"}


def test_docs_work_under_stage(load_handler: Loader) -> None:
    module = load_handler(IMAGES_API_BASE_PATH="/prod")

    docs = _invoke(module, http_api_event("GET", "/docs", stage="prod"))
    schema = _invoke(module, http_api_event("GET", "/openapi.json", stage="prod"))

    assert docs["statusCode"] == 200
    assert "/prod/openapi.json" in docs["body"]
    assert schema["statusCode"] == 200
    assert response_json(schema)["servers"] == [{"url": "/prod"}]


def test_rest_api_under_stage_routes_by_resource_path(load_handler: Loader) -> None:
    module = load_handler(IMAGES_API_BASE_PATH="/prod")

    response = _invoke(module, rest_api_event("GET", "/health", stage="prod"))

    assert response["statusCode"] == 200


def test_function_url_with_bearer_token(load_handler: Loader) -> None:
    module = load_handler()

    response = _invoke(
        module, function_url_event("GET", "/images", headers=bearer(JWT_SETTINGS, "alice"))
    )

    assert response["statusCode"] == 200
    assert response_json(response) == {"items": [], "next_cursor": None}


def test_function_url_without_token_is_401(load_handler: Loader) -> None:
    response = _invoke(load_handler(), function_url_event("GET", "/images"))

    assert response["statusCode"] == 401
    assert response["headers"]["www-authenticate"] == "Bearer"


def test_request_id_is_lambdas(load_handler: Loader) -> None:
    response = _invoke(load_handler(), http_api_event("GET", "/health"))

    assert response["headers"]["x-request-id"] == Context.aws_request_id


def _multipart(data: bytes, content_type: str, **fields: str) -> tuple[bytes, str]:
    boundary = "----imagesboundary7MA4YWxkTrZu0gW"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="d.png"\r\n'
        f"Content-Type: {content_type}\r\n\r\n".encode()
        + data
        + b"\r\n"
    )
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), boundary


def test_direct_upload_through_base64_event(load_handler: Loader) -> None:
    module = load_handler()
    data = make_image("image/png", width=20, height=10)
    body, boundary = _multipart(data, "image/png", title="Direct", tags="Lambda")
    headers = {
        "content-type": f"multipart/form-data; boundary={boundary}",
        **bearer(JWT_SETTINGS, "alice"),
    }

    response = _invoke(
        module,
        http_api_event("POST", "/images/direct", body=body, headers=headers, base64_encoded=True),
    )

    assert response["statusCode"] == 201
    image = response_json(response)
    assert (image["status"], image["width"], image["height"]) == ("ready", 20, 10)
    assert (image["title"], image["tags"], image["filename"]) == ("Direct", ["lambda"], "d.png")
    stored = module.app.state.services.clients.s3.get_object(
        Bucket="images", Key=object_key(image["id"])
    )
    assert stored["Body"].read() == data


def test_scheduled_event_runs_the_sweep_within_the_invocation_time(
    load_handler: Loader, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = load_handler()
    headers = {"content-type": "application/json", **bearer(JWT_SETTINGS, "alice")}
    _invoke(module, http_api_event("POST", "/images", body=_create_body(), headers=headers))
    later = datetime.now(UTC) + timedelta(days=2)  # past the upload deadline
    monkeypatch.setattr(module.app.state.services.maintenance, "clock", lambda: later)
    budgets: list[float | None] = []
    real_sweep = module.app.state.services.maintenance.sweep

    def sweep(seconds: float | None = None) -> Any:
        budgets.append(seconds)
        return real_sweep(seconds)

    monkeypatch.setattr(module.app.state.services.maintenance, "sweep", sweep)

    response = module.handler(
        {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}, Context()
    )

    assert (response["removed"], response["complete"]) == (1, True)
    # Context says 30 s remain: the sweep stops early enough to report back.
    assert budgets == [30 - module.SWEEP_MARGIN_SECONDS]


def test_api_handler_never_imports_the_imaging_library() -> None:
    """Its cold start must not pay for Pillow: serve an event in a fresh process, then
    look at what it imported."""
    code = (
        "import json, sys\n"
        "from app.http.lambda_handler import handler\n"
        "from tests.lambda_events import Context, http_api_event\n"
        "response = handler(http_api_event('GET', '/health'), Context())\n"
        "imaging = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('PIL', 'pillow_heif') or m.startswith('app.pipeline.render') "
        "or m in ('app.pipeline.worker', 'app.pipeline.placeholder'))\n"
        "print(json.dumps([response['statusCode'], imaging]))\n"
    )
    env = {**BASE_ENV, "IMAGES_JWT_SECRET": SECRET}

    result = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True
    )

    assert json.loads(result.stdout) == [200, []]


def test_api_handler_refuses_an_event_it_does_not_serve(load_handler: Loader) -> None:
    with pytest.raises(ValueError, match="unsupported event"):
        load_handler().handler({"Records": [{"eventSource": "aws:sqs"}]}, Context())


def test_worker_handler_confirms_and_makes_variants_from_an_sqs_event(
    load_handler: Loader, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = load_handler()
    clients = module.app.state.services.clients
    headers = {"content-type": "application/json", **bearer(JWT_SETTINGS, "alice")}
    data = make_image("image/png", width=400, height=300)
    created = response_json(
        _invoke(module, http_api_event("POST", "/images", body=_create_body(data), headers=headers))
    )
    clients.s3.put_object(
        Bucket="images",
        Key=object_key(created["image"]["id"]),
        Body=data,
        ContentType="image/png",
        Tagging="state=pending",
        IfNoneMatch="*",
    )
    url = clients.sqs.get_queue_url(QueueName="images-uploads")["QueueUrl"]
    messages = clients.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    worker = importlib.import_module("app.pipeline.lambda_handler")
    worker._services.cache_clear()  # a cold start, with this test's environment

    result = worker.handler(sqs_event(messages, "arn:aws:sqs:us-east-1:123456789012:q"), Context())
    fetched = _invoke(
        module, http_api_event("GET", f"/images/{created['image']['id']}", headers=headers)
    )

    assert result == {"batchItemFailures": []}
    image = response_json(fetched)
    assert (image["status"], image["variants"]["thumb"]["width"]) == ("ready", 320)
    assert image["variants"]["thumb"]["url"]


def _largest_direct_event(file_size: int) -> dict[str, Any]:
    """POST /images/direct of a file of `file_size` bytes with every form field at its
    longest, as API Gateway hands it to Lambda: the whole body base64-encoded."""
    body, boundary = _multipart(
        png_of_size(file_size),
        "image/png",
        title="t" * 200,
        description="d" * 2000,
    )
    field = f'--{boundary}\r\nContent-Disposition: form-data; name="tags"\r\n\r\n'
    tags = b"".join(f"{field}{'g' * 48}{n:02d}\r\n".encode() for n in range(20))
    headers = {
        "content-type": f"multipart/form-data; boundary={boundary}",
        **bearer(JWT_SETTINGS, "alice"),
        "user-agent": "u" * 512,
    }
    return http_api_event(
        "POST", "/images/direct", body=tags + body, headers=headers, base64_encoded=True
    )


def test_largest_allowed_direct_upload_fits_lambdas_payload_limit(load_handler: Loader) -> None:
    module = load_handler()
    event = _largest_direct_event(DIRECT_UPLOAD_CEILING)

    response = _invoke(module, event)

    assert len(json.dumps(event).encode()) <= LAMBDA_PAYLOAD_BYTES
    assert response["statusCode"] == 201, response["body"][:300]
    assert response_json(response)["size"] == DIRECT_UPLOAD_CEILING


def test_direct_upload_one_byte_over_the_limit_is_413(load_handler: Loader) -> None:
    response = _invoke(load_handler(), _largest_direct_event(DIRECT_UPLOAD_CEILING + 1))

    assert response["statusCode"] == 413


@pytest.mark.parametrize(("xray", "patched"), [("false", False), ("true", True)])
def test_xray_is_imported_and_patched_only_when_enabled(xray: str, patched: bool) -> None:
    """Off by default: the SDK costs a cold start about 200 ms (docs/benchmarks.md)."""
    code = (
        "import json, sys\n"
        "from app.http.lambda_handler import handler\n"
        "from tests.lambda_events import Context, http_api_event\n"
        "response = handler(http_api_event('GET', '/health'), Context())\n"
        "patched = 'aws_xray_sdk' in sys.modules and 'botocore' in "
        "sys.modules['aws_xray_sdk.core.patcher']._PATCHED_MODULES\n"
        "print(json.dumps([response['statusCode'], patched]))\n"
    )
    env = {**BASE_ENV, "IMAGES_JWT_SECRET": SECRET, "IMAGES_XRAY": xray}

    result = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True
    )

    assert json.loads(result.stdout) == [200, patched]
