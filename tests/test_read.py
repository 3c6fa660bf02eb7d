"""GET /images/{id} and GET /images/{id}/download."""

from datetime import datetime
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from fastapi.testclient import TestClient

from app.domain.filenames import content_disposition, download_name
from app.storage.items import object_key
from tests.conftest import Uploader, refusal


def test_get_returns_image(client: TestClient, alice: dict[str, str], upload: Uploader) -> None:
    image = upload(alice, title="Cat")

    response = client.get(f"/images/{image['id']}", headers=alice)

    assert response.status_code == 200
    assert response.json() == image


def test_get_pending_image_shows_pending(
    client: TestClient, alice: dict[str, str], create: Uploader
) -> None:
    image = create(alice)

    response = client.get(f"/images/{image['id']}", headers=alice)

    assert response.status_code == 200
    assert response.json()["status"] == "pending"


def test_get_other_users_image_is_404(
    client: TestClient, alice: dict[str, str], bob: dict[str, str], upload: Uploader
) -> None:
    image = upload(alice)

    response = client.get(f"/images/{image['id']}", headers=bob)

    assert refusal(response) == (404, "not_found")
    assert response.json() == {"detail": "Image not found", "code": "not_found"}


def test_get_unknown_id_is_404(client: TestClient, alice: dict[str, str]) -> None:
    response = client.get("/images/0123456789abcdef0123456789abcdef", headers=alice)

    assert refusal(response) == (404, "not_found")
    assert response.json() == {"detail": "Image not found", "code": "not_found"}


def test_get_malformed_id_is_422(client: TestClient, alice: dict[str, str]) -> None:
    response = client.get(f"/images/{'x' * 65}", headers=alice)

    assert refusal(response) == (422, "invalid_request")
    assert response.json()["detail"][0]["loc"] == ["path", "image_id"]


def test_download_returns_presigned_get(
    client: TestClient, alice: dict[str, str], upload: Uploader
) -> None:
    image = upload(alice)

    response = client.get(f"/images/{image['id']}/download", headers=alice)

    assert response.status_code == 200
    body = response.json()
    url = urlsplit(body["url"])
    query = parse_qs(url.query)
    assert url.path == f"/{object_key(image['id'])}"
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Expires"] == ["300"]
    remaining = datetime.fromisoformat(body["expires_at"]) - datetime.now(
        datetime.fromisoformat(body["expires_at"]).tzinfo
    )
    assert 290 <= remaining.total_seconds() <= 300


def test_download_url_carries_original_filename(
    client: TestClient, alice: dict[str, str], upload: Uploader
) -> None:
    image = upload(alice, filename='Ünïcode "quoted"/path;name.png')

    response = client.get(f"/images/{image['id']}/download", headers=alice)

    assert response.status_code == 200
    disposition = parse_qs(urlsplit(response.json()["url"]).query)["response-content-disposition"]
    assert disposition == [content_disposition('Ünïcode "quoted"/path;name.png')]


def test_download_name_gets_the_verified_types_extension(
    client: TestClient, alice: dict[str, str], upload: Uploader
) -> None:
    image = upload(alice, filename="invoice.html")  # the bytes are a verified PNG

    response = client.get(f"/images/{image['id']}/download", headers=alice)

    assert response.status_code == 200
    query = parse_qs(urlsplit(response.json()["url"]).query)
    assert query["response-content-disposition"] == [content_disposition("invoice.html.png")]
    assert query["response-content-type"] == ["image/png"]


@pytest.mark.parametrize(
    ("filename", "content_type", "expected"),
    [
        ("Holiday.JPG", "image/jpeg", "Holiday.JPG"),
        ("scan.jpeg", "image/jpeg", "scan.jpeg"),
        ("photo", "image/webp", "photo.webp"),
        ("anim.gif.exe", "image/gif", "anim.gif.exe.gif"),
        ("page.svg", "image/png", "page.svg.png"),
    ],
)
def test_download_name_ends_in_an_extension_of_its_type(
    filename: str, content_type: str, expected: str
) -> None:
    assert download_name(filename, content_type) == expected


def test_api_responses_forbid_type_sniffing(
    client: TestClient, alice: dict[str, str], upload: Uploader
) -> None:
    image = upload(alice)

    responses = [
        client.get(f"/images/{image['id']}", headers=alice),
        client.get(
            f"/images/{image['id']}/download?redirect=true", headers=alice, follow_redirects=False
        ),
        client.get("/images/nope", headers=alice),
        client.get("/static/gallery.js"),
        client.get("/"),
    ]

    assert [r.headers["x-content-type-options"] for r in responses] == ["nosniff"] * 5


def test_content_disposition_has_ascii_fallback_and_utf8_name() -> None:
    header = content_disposition('Ünï "q"/a;b\\c\r\n.png')

    fallback, encoded = header.split("; filename*=UTF-8''")
    assert fallback == 'attachment; filename="_n_ _q__a_b_c__.png"'
    assert unquote(encoded) == 'Ünï "q"/a;b\\c\r\n.png'
    assert header.isascii()


def test_download_redirect_is_307_to_url(
    client: TestClient, alice: dict[str, str], upload: Uploader
) -> None:
    image = upload(alice)

    response = client.get(
        f"/images/{image['id']}/download?redirect=true", headers=alice, follow_redirects=False
    )

    assert response.status_code == 307
    assert urlsplit(response.headers["location"]).path == f"/{object_key(image['id'])}"


def test_download_pending_image_is_409(
    client: TestClient, alice: dict[str, str], create: Uploader
) -> None:
    image = create(alice)

    response = client.get(f"/images/{image['id']}/download", headers=alice)

    assert refusal(response) == (409, "not_ready")
    assert response.json() == {"detail": "The image is not confirmed yet", "code": "not_ready"}


def test_download_other_users_image_is_404(
    client: TestClient, alice: dict[str, str], bob: dict[str, str], upload: Uploader
) -> None:
    image = upload(alice)

    response = client.get(f"/images/{image['id']}/download", headers=bob)

    assert refusal(response) == (404, "not_found")
    assert response.json() == {"detail": "Image not found", "code": "not_found"}


def test_download_other_users_pending_image_is_404_not_409(
    client: TestClient, alice: dict[str, str], bob: dict[str, str], create: Uploader
) -> None:
    image = create(alice)

    response = client.get(f"/images/{image['id']}/download", headers=bob)

    assert refusal(response) == (404, "not_found")


def test_download_unknown_id_is_404(client: TestClient, alice: dict[str, str]) -> None:
    response = client.get("/images/nope/download", headers=alice)

    assert refusal(response) == (404, "not_found")
