"""Reading through CloudFront: every URL and cookie the service issues, verified as
CloudFront verifies them, with the public key alone (tests/cdn.py)."""

import json
import time
from datetime import UTC, datetime
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from botocore.signers import CloudFrontSigner
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from moto import mock_aws

from app.composition import build
from app.config import Settings
from app.domain.filenames import content_disposition
from app.storage.cdn import CdnKeyError, CdnUrls, _Signer, cloudfront_b64, key_signer
from app.storage.clients import AwsClients
from app.storage.items import object_key
from tests.cdn import KEY_PAIR_ID, KeyPair, Refused, key_pair, verify_cookies, verify_url
from tests.conftest import AppFactory, PutBytes, deliver, new_image, refusal
from tests.imagefiles import make_image

CDN = "https://images.example.com"
KINDS = ["ecdsa", "rsa"]


@pytest.fixture(scope="module", params=KINDS)
def keys(request: pytest.FixtureRequest) -> KeyPair:
    return key_pair(request.param)


def _cdn_app(make_app: AppFactory, keys: KeyPair, directory: Path, **overrides: Any) -> FastAPI:
    return make_app(
        cdn_url=CDN,
        cdn_key_pair_id=KEY_PAIR_ID,
        cdn_private_key_file=keys.write(directory),
        **overrides,
    )


@pytest.fixture
def cdn_app(make_app: AppFactory, keys: KeyPair, tmp_path: Path) -> FastAPI:
    return _cdn_app(make_app, keys, tmp_path, cdn_cookies=True, cdn_cookie_domain=".example.com")


def _ready(app: FastAPI, user: dict[str, str], put_bytes: PutBytes, **size: int) -> str:
    """An image confirmed and its variants made, through the app's own worker."""
    client = TestClient(app)
    data = make_image("image/png", **size)
    created = client.post("/images", json=new_image("image/png", data), headers=user).json()
    image_id: str = created["image"]["id"]
    put_bytes(image_id, data, "image/png")
    assert client.post(f"/images/{image_id}/confirm", headers=user).status_code == 200
    services = app.state.services
    deliver(services.worker, services.clients, services.settings)
    return image_id


def test_variant_urls_in_get_and_list_verify_with_the_public_key_alone(
    cdn_app: FastAPI, keys: KeyPair, alice: dict[str, str], put_bytes: PutBytes
) -> None:
    client = TestClient(cdn_app)
    image_id = _ready(cdn_app, alice, put_bytes, width=900, height=600)

    got = client.get(f"/images/{image_id}", headers=alice).json()
    listed = client.get("/images", headers=alice).json()["items"][0]
    urls = [v["url"] for image in (got, listed) for v in image["variants"].values()]

    assert len(urls) == 4
    for url in urls:
        granted = verify_url(url, keys.public_pem)
        assert granted.resource.startswith(f"{CDN}/{object_key(image_id).removesuffix('original')}")


def test_variant_urls_are_the_same_across_list_calls_in_one_window(
    cdn_app: FastAPI, alice: dict[str, str], put_bytes: PutBytes
) -> None:
    client = TestClient(cdn_app)
    _ready(cdn_app, alice, put_bytes)

    first = client.get("/images", headers=alice).json()["items"][0]["variants"]
    second = client.get("/images", headers=alice).json()["items"][0]["variants"]

    assert first == second
    assert first["thumb"]["url"].startswith(f"{CDN}/u/")


def test_variant_url_changes_only_when_its_window_does(keys: KeyPair) -> None:
    window = 3600
    now = [window * 500_000 + 10.0]
    urls = CdnUrls(CDN, KEY_PAIR_ID, lambda: keys.private_pem, window, clock=lambda: now[0])
    key = ["u/0123456789abcdef0123/x/thumb-1.webp"]

    first = urls.variant_urls(key, 300)
    now[0] += window - 11  # the last second of the same window
    same = urls.variant_urls(key, 300)
    now[0] += 1
    next_window = urls.variant_urls(key, 300)

    assert same == first
    assert next_window != first
    assert verify_url(first[0], keys.public_pem, now=now[0] - 1).expires == window * 500_001 + 300


def test_variant_urls_signed_by_two_processes_are_the_same(
    make_app: AppFactory, keys: KeyPair, tmp_path: Path
) -> None:
    """Deterministic signatures (RFC 6979 for ECDSA): another Lambda instance hands out
    the very same URL, so a browser's cached thumb stays good."""
    one, other = (_cdn_app(make_app, keys, tmp_path) for _ in range(2))
    key = "u/0123456789abcdef0123/x/thumb-1.webp"

    urls = [app.state.services.storage.cdn.variant_urls([key], 300)[0] for app in (one, other)]

    assert urls[0] == urls[1]


def test_variant_url_outlives_the_window_it_was_signed_in_by_the_ttl(
    cdn_app: FastAPI, keys: KeyPair, alice: dict[str, str], put_bytes: PutBytes
) -> None:
    client = TestClient(cdn_app)
    image_id = _ready(cdn_app, alice, put_bytes)
    settings = cdn_app.state.services.settings

    before = time.time()  # CloudFront checks policies on the wall clock
    url = client.get(f"/images/{image_id}", headers=alice).json()["variants"]["thumb"]["url"]
    after = time.time()
    granted = verify_url(url, keys.public_pem, now=after)

    ttl, window = settings.download_url_ttl_seconds, settings.variant_url_window_seconds
    assert before + ttl <= granted.expires <= after + ttl + window


def test_download_of_the_original_is_a_signed_cdn_url_naming_the_verified_type(
    cdn_app: FastAPI, keys: KeyPair, alice: dict[str, str], put_bytes: PutBytes
) -> None:
    client = TestClient(cdn_app)
    image_id = _ready(cdn_app, alice, put_bytes)

    link = client.get(f"/images/{image_id}/download", headers=alice).json()
    granted = verify_url(link["url"], keys.public_pem)
    query = parse_qs(urlsplit(link["url"]).query)

    assert urlsplit(granted.resource).path == f"/{object_key(image_id)}"
    assert query["response-content-type"] == ["image/png"]
    assert query["response-content-disposition"] == [content_disposition("photo.img.png")]


def test_download_redirect_and_variant_download_are_signed_cdn_urls(
    cdn_app: FastAPI, keys: KeyPair, alice: dict[str, str], put_bytes: PutBytes
) -> None:
    client = TestClient(cdn_app)
    image_id = _ready(cdn_app, alice, put_bytes)

    redirect = client.get(
        f"/images/{image_id}/download?redirect=true", headers=alice, follow_redirects=False
    )
    thumb = client.get(f"/images/{image_id}/download?variant=thumb", headers=alice).json()

    assert redirect.status_code == 307
    verify_url(redirect.headers["location"], keys.public_pem)
    assert "/thumb-" in verify_url(thumb["url"], keys.public_pem).resource


def test_a_signed_url_tampered_with_does_not_verify(
    cdn_app: FastAPI, keys: KeyPair, alice: dict[str, str], put_bytes: PutBytes
) -> None:
    client = TestClient(cdn_app)
    image_id = _ready(cdn_app, alice, put_bytes)
    url = client.get(f"/images/{image_id}", headers=alice).json()["variants"]["thumb"]["url"]

    with pytest.raises(Refused):
        verify_url(url.replace("/thumb-", "/preview-"), keys.public_pem)


def test_a_url_of_another_users_object_cannot_be_obtained(
    cdn_app: FastAPI, alice: dict[str, str], bob: dict[str, str], put_bytes: PutBytes
) -> None:
    client = TestClient(cdn_app)
    image_id = _ready(cdn_app, alice, put_bytes)

    answers = [
        client.get(f"/images/{image_id}", headers=bob),
        client.get(f"/images/{image_id}/download", headers=bob),
        client.get(f"/images/{image_id}/download?variant=thumb", headers=bob),
    ]
    listed = client.get("/images", headers=bob).json()["items"]

    assert [refusal(answer) for answer in answers] == [(404, "not_found")] * 3
    assert listed == []


def _cookies(answer: Any) -> dict[str, Any]:
    jar: SimpleCookie = SimpleCookie()
    for header in answer.headers.get_list("set-cookie"):
        jar.load(header)
    return dict(jar)


def test_cookies_cover_exactly_the_callers_own_objects(
    cdn_app: FastAPI,
    keys: KeyPair,
    alice: dict[str, str],
    bob: dict[str, str],
    put_bytes: PutBytes,
) -> None:
    client = TestClient(cdn_app)
    hers, his = _ready(cdn_app, alice, put_bytes), _ready(cdn_app, bob, put_bytes)
    answer = client.post("/cdn-cookies", headers=alice)
    values = {name: morsel.value for name, morsel in _cookies(answer).items()}

    granted = verify_cookies(values, f"{CDN}/{object_key(hers)}", keys.public_pem)

    assert answer.status_code == 204
    assert granted.resource == f"{CDN}/u/{hers[-20:]}/*"
    assert json.loads(granted.policy)["Statement"][0]["Resource"] == granted.resource
    with pytest.raises(Refused, match="does not cover"):
        verify_cookies(values, f"{CDN}/{object_key(his)}", keys.public_pem)


def test_cookies_are_secure_http_only_same_site_on_the_users_path_and_domain(
    cdn_app: FastAPI, alice: dict[str, str], put_bytes: PutBytes
) -> None:
    client = TestClient(cdn_app)
    image_id = _ready(cdn_app, alice, put_bytes)

    cookies = _cookies(client.post("/cdn-cookies", headers=alice))

    assert set(cookies) == {"CloudFront-Policy", "CloudFront-Signature", "CloudFront-Key-Pair-Id"}
    for morsel in cookies.values():
        assert (morsel["secure"], morsel["httponly"], morsel["samesite"]) == (True, True, "lax")
        assert (morsel["path"], morsel["domain"]) == (f"/u/{image_id[-20:]}/", ".example.com")
        assert int(morsel["max-age"]) == 3600


def test_cookies_expire_when_their_policy_says(
    cdn_app: FastAPI, keys: KeyPair, alice: dict[str, str], put_bytes: PutBytes
) -> None:
    client = TestClient(cdn_app)
    image_id = _ready(cdn_app, alice, put_bytes)
    signed_at = time.time()  # CloudFront's policy is on the wall clock, as S3's signatures
    values = {n: m.value for n, m in _cookies(client.post("/cdn-cookies", headers=alice)).items()}
    url = f"{CDN}/{object_key(image_id)}"

    verify_cookies(values, url, keys.public_pem, now=signed_at + 3599)
    with pytest.raises(Refused, match="expired"):
        verify_cookies(values, url, keys.public_pem, now=time.time() + 3601)


def test_cookies_not_offered_are_409_with_their_code(
    make_app: AppFactory, keys: KeyPair, tmp_path: Path, alice: dict[str, str]
) -> None:
    without_cdn, without_cookies = make_app(), _cdn_app(make_app, keys, tmp_path)

    answers = [
        TestClient(app).post("/cdn-cookies", headers=alice)
        for app in (without_cdn, without_cookies)
    ]

    assert [refusal(answer) for answer in answers] == [(409, "cdn_cookies_off")] * 2
    assert all(not answer.headers.get_list("set-cookie") for answer in answers)


def test_cookies_need_a_token(cdn_app: FastAPI) -> None:
    assert refusal(TestClient(cdn_app).post("/cdn-cookies")) == (401, "unauthorized")


def test_gallery_is_told_cookies_are_offered(cdn_app: FastAPI, make_app: AppFactory) -> None:
    offered = TestClient(cdn_app).get("/").text
    plain = TestClient(make_app()).get("/").text

    assert '<meta name="cdn-cookies" content="3600">' in offered
    assert 'name="cdn-cookies"' not in plain


def test_without_a_cdn_urls_are_s3_presigned(
    make_app: AppFactory, alice: dict[str, str], put_bytes: PutBytes
) -> None:
    app = make_app()
    image_id = _ready(app, alice, put_bytes)

    url = (
        TestClient(app).get(f"/images/{image_id}", headers=alice).json()["variants"]["thumb"]["url"]
    )

    assert "X-Amz-Signature=" in url
    assert "Key-Pair-Id" not in url


# --- The key and the signer -------------------------------------------------------------


@given(
    resource=st.text(min_size=1, max_size=80),
    moment=st.integers(min_value=0, max_value=4_102_444_800),
)
def test_the_canned_policy_is_botocores_byte_for_byte(resource: str, moment: int) -> None:
    when = datetime.fromtimestamp(moment, UTC)

    ours = _Signer("K", lambda _: b"").build_policy(resource, when)

    assert ours == CloudFrontSigner("K", lambda _: b"").build_policy(resource, when)


@given(st.binary(max_size=200))
def test_cloudfront_base64_is_botocores(data: bytes) -> None:
    assert (
        cloudfront_b64(data) == CloudFrontSigner("K", lambda _: b"")._url_b64encode(data).decode()
    )


@pytest.mark.parametrize(
    ("kind", "problem"),
    [("rsa-1024", "2048"), ("p384", "P-256"), ("garbage", "PEM")],
)
def test_a_key_cloudfront_does_not_take_is_refused(kind: str, problem: str) -> None:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec, rsa  # noqa: PLC0415

    if kind == "garbage":
        pem = b"not a key"
    else:
        key = (
            rsa.generate_private_key(65537, 1024)  # noqa: S505 - the size refused
            if kind == "rsa-1024"
            else ec.generate_private_key(ec.SECP384R1())
        )
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    with pytest.raises(CdnKeyError, match=problem):
        key_signer(pem)


def test_the_private_key_is_read_from_ssm_once(
    keys: KeyPair, alice: dict[str, str], settings: Settings
) -> None:
    with mock_aws():
        configured = Settings(
            **{
                **settings.model_dump(),
                "cdn_url": CDN,
                "cdn_key_pair_id": KEY_PAIR_ID,
                "cdn_private_key_parameter": "/images/cdn-key",
            }
        )
        clients = AwsClients(configured)
        clients.ssm.put_parameter(
            Name="/images/cdn-key", Value=keys.private_pem.decode(), Type="SecureString"
        )
        calls: list[str] = []
        clients.ssm.meta.events.register(
            "before-call.ssm.GetParameter", lambda **_: calls.append("GetParameter")
        )
        cdn = build(configured, clients).storage.cdn
        assert cdn is not None

        urls = [cdn.variant_urls([f"u/x/{n}/thumb.webp"], 300)[0] for n in range(3)]

    assert calls == ["GetParameter"]
    assert all(verify_url(url, keys.public_pem).resource.startswith(CDN) for url in urls)


# --- Transfer Acceleration -------------------------------------------------------------


def test_upload_urls_use_the_accelerate_endpoint_when_it_is_on(
    make_app: AppFactory, alice: dict[str, str], settings: Settings
) -> None:
    with mock_aws():
        accelerated = Settings(**{**settings.model_dump(), "s3_accelerate": True})
        objects = build(accelerated).storage.objects

        url, _ = objects.presign_put("0" * 24 + "1" * 20, "image/png", 10, 900)

    assert urlsplit(url).netloc == f"{settings.bucket}.s3-accelerate.amazonaws.com"


@pytest.mark.parametrize(
    ("bucket", "endpoint"),
    [("my.images", None), ("images", "http://localhost:4566")],
    ids=["dotted-bucket", "custom-endpoint"],
)
def test_acceleration_that_cannot_work_is_refused_at_start(
    bucket: str, endpoint: str | None
) -> None:
    with pytest.raises(ValueError, match="s3_accelerate"):
        Settings(s3_accelerate=True, bucket=bucket, aws_endpoint_url=endpoint)


def test_a_partial_cdn_configuration_is_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cdn_key_pair_id"):
        Settings(cdn_url=CDN, cdn_private_key_file=tmp_path / "k.pem")
