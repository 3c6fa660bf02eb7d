"""Identity: only a verified token's `sub` names the caller."""

import base64
import json
import subprocess
import sys
import time
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.http.app import create_app
from app.http.auth import TokenVerifier
from tests.conftest import SECRET, AppFactory, bearer, refusal


def _token(claims: dict[str, Any], secret: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=algorithm)


def _claims(**changes: Any) -> dict[str, Any]:
    return {"sub": "alice", "exp": int(time.time()) + 60, **changes}


def _get(client: TestClient, token: str) -> Any:
    return client.get("/images", headers={"Authorization": f"Bearer {token}"})


def test_valid_token_is_accepted(client: TestClient) -> None:
    response = _get(client, _token(_claims()))

    assert response.status_code == 200


def test_expired_token_is_401(client: TestClient) -> None:
    response = _get(client, _token(_claims(exp=int(time.time()) - 5)))

    assert refusal(response) == (401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == {"detail": "Invalid or expired token", "code": "unauthorized"}


def test_token_without_exp_is_401(client: TestClient) -> None:
    response = _get(client, _token({"sub": "alice"}))

    assert refusal(response) == (401, "unauthorized")


def test_token_without_sub_is_401(client: TestClient) -> None:
    response = _get(client, _token({"exp": int(time.time()) + 60}))

    assert refusal(response) == (401, "unauthorized")


def test_token_with_empty_sub_is_401(client: TestClient) -> None:
    response = _get(client, _token(_claims(sub="")))

    assert refusal(response) == (401, "unauthorized")


def test_token_signed_with_other_secret_is_401(client: TestClient) -> None:
    response = _get(client, _token(_claims(), secret="another-secret-of-enough-length-42"))

    assert refusal(response) == (401, "unauthorized")


def test_alg_none_token_is_401(client: TestClient) -> None:
    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    unsigned = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(_claims())}."

    response = _get(client, unsigned)

    assert refusal(response) == (401, "unauthorized")


def test_hs512_token_is_401(client: TestClient) -> None:
    response = _get(client, _token(_claims(), algorithm="HS512"))

    assert refusal(response) == (401, "unauthorized")


@pytest.mark.parametrize("header", ["Basic YWxpY2U6cHc=", "Bearer", "Bearer not.a.jwt", "alice"])
def test_malformed_authorization_is_401(client: TestClient, header: str) -> None:
    response = client.get("/images", headers={"Authorization": header})

    assert refusal(response) == (401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"
    assert "detail" in response.json()


def test_user_header_or_parameter_cannot_choose_identity(
    client: TestClient, alice: dict[str, str]
) -> None:
    response = client.get(
        "/images", params={"user_id": "bob"}, headers={**alice, "X-User-Id": "bob"}
    )

    assert refusal(response) == (
        422,
        "invalid_request",
    )  # unknown query parameters are refused outright


@pytest.fixture
def strict_settings() -> Settings:
    return Settings(
        jwt_secret=SECRET, jwt_issuer="https://issuer.example", jwt_audience="images-api"
    )


def test_configured_issuer_and_audience_accept_matching_token(
    aws: None, strict_settings: Settings
) -> None:
    client = TestClient(create_app(strict_settings))

    response = client.get("/health", headers=bearer(strict_settings, "alice"))
    subject = TokenVerifier(strict_settings).subject(
        _token(_claims(iss="https://issuer.example", aud="images-api"))
    )

    assert response.status_code == 200
    assert subject == "alice"


@pytest.mark.parametrize(
    "claims",
    [
        _claims(aud="images-api"),
        _claims(iss="https://issuer.example"),
        _claims(iss="https://evil.example", aud="images-api"),
        _claims(iss="https://issuer.example", aud="other-api"),
    ],
)
def test_configured_issuer_and_audience_reject_mismatch(
    aws: None, strict_settings: Settings, claims: dict[str, Any]
) -> None:
    client = TestClient(create_app(strict_settings))

    response = _get(client, _token(claims))

    assert refusal(response) == (401, "unauthorized")


def test_app_refuses_to_start_without_secret(aws: None) -> None:
    with pytest.raises(RuntimeError, match="IMAGES_JWT_SECRET"):
        create_app(Settings(jwt_secret=None))


def test_token_command_prints_a_token_the_service_accepts(client: TestClient) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app", "token", "carol"],
        capture_output=True,
        text=True,
        check=True,
        env={"IMAGES_JWT_SECRET": SECRET, "PATH": ""},
    )

    response = _get(client, result.stdout.strip())

    assert response.status_code == 200
    assert jwt.decode(result.stdout.strip(), SECRET, algorithms=["HS256"])["sub"] == "carol"


def test_short_secret_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValueError, match="at least 32") as error:
        Settings(jwt_secret="too-short-secret")

    assert "too-short-secret" not in str(error.value)


def test_token_verified_before_is_refused_once_expired(
    client: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = bearer(settings, "alice", ttl=60)
    first = client.get("/images", headers=headers)  # verified, and remembered
    later = time.time() + 61
    monkeypatch.setattr(time, "time", lambda: later)

    again = client.get("/images", headers=headers)

    assert first.status_code == 200
    assert refusal(again) == (401, "unauthorized")


@pytest.mark.parametrize(
    ("lifetime", "status"),
    [(3600, 200), (3601, 401), (None, 401)],
    ids=["within", "too-long", "no-iat"],
)
def test_maximum_token_lifetime_when_configured(
    make_app: AppFactory, lifetime: int | None, status: int
) -> None:
    client = TestClient(make_app(jwt_max_lifetime_seconds=3600))
    now = int(time.time())
    claims = _claims(exp=now + 60)
    if lifetime is not None:
        claims["iat"] = now + 60 - lifetime

    response = _get(client, _token(claims))

    assert response.status_code == status
