"""Structured logs: JSON lines, a request id on each, no secrets in any of them."""

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from tests.conftest import AppFactory, Uploader, bearer
from tests.imagefiles import make_image


def _lines(captured: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in captured.splitlines() if line.strip()]


def test_every_log_line_is_json_with_a_request_id(
    client: TestClient,
    alice: dict[str, str],
    upload: Uploader,
    capfd: pytest.CaptureFixture[str],
) -> None:
    capfd.readouterr()
    image = upload(alice)
    client.get(f"/images/{image['id']}/download", headers=alice)

    lines = _lines(capfd.readouterr().err)

    access = [line for line in lines if line["logger"] == "app.access"]
    assert [(line["method"], line["status"]) for line in access] == [
        ("POST", 201),
        ("POST", 200),
        ("GET", 200),
    ]
    assert all(line["request_id"] != "-" for line in access)
    assert len({line["request_id"] for line in access}) == 3


def test_logs_hold_no_tokens_or_signatures(
    client: TestClient,
    alice: dict[str, str],
    upload: Uploader,
    capfd: pytest.CaptureFixture[str],
) -> None:
    capfd.readouterr()
    image = upload(alice)
    link = client.get(f"/images/{image['id']}/download", headers=alice).json()["url"]
    client.get("/images", params={"limit": 1}, headers=alice)
    client.get("/images", headers={"Authorization": "Bearer not-a-valid-token-xyz"})

    output = capfd.readouterr().err

    assert output
    assert alice["Authorization"].split()[1] not in output
    assert "not-a-valid-token-xyz" not in output
    assert "X-Amz-Signature" not in output
    assert link.split("?")[1] not in output


def test_request_id_is_echoed(client: TestClient) -> None:
    response = client.get("/health", headers={"X-Request-ID": "trace-123"})

    assert response.status_code == 200
    assert response.headers["x-request-id"] == "trace-123"


def test_unsafe_request_id_is_replaced(client: TestClient) -> None:
    response = client.get("/health", headers={"X-Request-ID": "bad id\nwith newline"})

    assert response.status_code == 200
    assert response.headers["x-request-id"] != "bad id\nwith newline"
    assert len(response.headers["x-request-id"]) == 32


def test_no_token_signature_or_item_reaches_the_log_at_debug(
    make_app: AppFactory,
    put_bytes: Any,
    settings: Settings,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """At the most verbose level the service allows: botocore would print canonical
    requests with their signatures and the items it writes."""
    client = TestClient(make_app(log_level="DEBUG"))
    alice = bearer(settings, "alice")
    capfd.readouterr()
    data = make_image()
    created = client.post(
        "/images",
        headers={**alice, "Idempotency-Key": "debug-key"},
        json={"filename": "secret-holiday.png", "content_type": "image/png", "size": len(data)},
    ).json()
    put_bytes(created["image"]["id"], data, "image/png")
    client.post(f"/images/{created['image']['id']}/confirm", headers=alice)
    link = client.get(f"/images/{created['image']['id']}/download", headers=alice).json()["url"]
    client.get("/images", headers=alice)

    output = capfd.readouterr().err

    assert '"level": "DEBUG"' in output or '"level": "INFO"' in output  # logging is on
    assert alice["Authorization"].split()[1] not in output
    for secret in ("X-Amz-Signature", "Signature=", "Credential=", "secret-holiday"):
        assert secret not in output
    assert link.split("?")[1] not in output
    assert created["upload"]["url"].split("?")[1] not in output
