"""Structured logs: JSON lines, a request id on each, no secrets in any of them."""

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Uploader


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
