"""POST /images/direct: one multipart request, verified like confirm, answered ready."""

from collections import Counter
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.http.app import create_app
from app.storage.clients import AwsClients
from app.storage.resources import ensure_resources
from tests.conftest import SECRET, bearer, refusal
from tests.imagefiles import make_image
from tests.stores import Stores


def _post(
    client: TestClient,
    headers: dict[str, str],
    data: bytes,
    content_type: str = "image/png",
    **form: Any,
) -> Any:
    return client.post(
        "/images/direct",
        headers=headers,
        data=form,
        files={"file": ("cat photo.png", data, content_type)},
    )


def _records(clients: AwsClients, settings: Settings) -> int:
    response = clients.dynamodb.query(
        TableName=settings.table,
        IndexName="user_id-created_at",
        KeyConditionExpression="user_id = :u",
        ExpressionAttributeValues={":u": {"S": "alice"}},
    )
    return response["Count"]


def test_direct_upload_is_ready_and_downloadable(client: TestClient, alice: dict[str, str]) -> None:
    data = make_image("image/jpeg", width=30, height=40)

    response = _post(
        client,
        alice,
        data,
        "image/jpeg",
        title="Cat",
        description="On the sofa",
        tags=["Pets", "cat"],
    )
    image = response.json()
    link = client.get(f"/images/{image['id']}/download", headers=alice)
    listed = client.get("/images", headers=alice).json()["items"]

    assert response.status_code == 201
    assert (image["status"], image["width"], image["height"]) == ("ready", 30, 40)
    assert (image["filename"], image["size"], image["tags"]) == (
        "cat photo.png",
        len(data),
        ["pets", "cat"],
    )
    assert link.status_code == 200
    assert [item["id"] for item in listed] == [image["id"]]


def test_direct_upload_of_non_image_is_422_and_stores_nothing(
    client: TestClient,
    alice: dict[str, str],
    clients: AwsClients,
    settings: Settings,
    stores: Stores,
) -> None:
    fake = b"\x89PNG\r\n\x1a\n<html>not an image</html>".ljust(500, b" ")

    response = _post(client, alice, fake)

    assert refusal(response) == (422, "invalid_image")
    assert response.json() == {
        "detail": "The uploaded bytes are not a valid image/png image",
        "code": "invalid_image",
    }
    assert _records(clients, settings) == 0
    assert stores.keys() == []


def test_direct_upload_of_other_type_is_422(client: TestClient, alice: dict[str, str]) -> None:
    response = _post(client, alice, b"hello", "text/plain")

    assert refusal(response) == (422, "invalid_request")
    assert response.json()["detail"][0]["loc"] == ["body", "content_type"]


def test_direct_upload_with_bad_tag_is_422(client: TestClient, alice: dict[str, str]) -> None:
    response = _post(client, alice, make_image(), tags=["no spaces"])

    assert refusal(response) == (422, "invalid_request")
    assert response.json()["detail"][0]["loc"][:2] == ["body", "tags"]


def test_direct_upload_of_empty_file_is_422(client: TestClient, alice: dict[str, str]) -> None:
    response = _post(client, alice, b"")

    assert refusal(response) == (422, "invalid_image")


@pytest.fixture
def small_direct(aws: None) -> tuple[TestClient, Settings]:
    settings = Settings(jwt_secret=SECRET, max_direct_bytes=2000)
    app = create_app(settings)
    ensure_resources(app.state.services.clients, settings)
    return TestClient(app), settings


def test_direct_upload_over_limit_is_413(small_direct: tuple[TestClient, Settings]) -> None:
    client, settings = small_direct
    data = make_image(width=64, height=64, color="white").ljust(2001, b"\0")

    response = _post(client, bearer(settings, "alice"), data)

    assert refusal(response) == (413, "too_large")
    assert response.json() == {
        "detail": "size 2001 exceeds the limit of 2000 bytes",
        "code": "too_large",
    }


def test_direct_upload_far_over_limit_is_refused_before_parsing(
    small_direct: tuple[TestClient, Settings],
) -> None:
    client, settings = small_direct

    response = _post(client, bearer(settings, "alice"), b"\0" * 200_000)

    assert refusal(response) == (413, "body_too_large")
    assert response.json() == {"detail": "Request body too large", "code": "body_too_large"}


def test_direct_upload_without_token_is_401(client: TestClient) -> None:
    response = _post(client, {}, make_image())

    assert refusal(response) == (401, "unauthorized")


def test_direct_upload_round_trips(
    client: TestClient, alice: dict[str, str], aws_calls: Counter[str]
) -> None:
    response = _post(client, alice, make_image())

    assert response.status_code == 201
    assert aws_calls == Counter(
        {"dynamodb.TransactWriteItems": 2, "s3.PutObject": 1, "s3.PutObjectTagging": 1}
    )


@pytest.mark.parametrize("part_type", [None, "application/octet-stream"])
@pytest.mark.parametrize("content_type", ["image/jpeg", "image/png", "image/heic", "image/avif"])
def test_direct_upload_without_an_image_type_takes_it_from_the_bytes(
    client: TestClient, alice: dict[str, str], part_type: str | None, content_type: str
) -> None:
    data = make_image(content_type, width=30, height=20)
    part = ("photo", data) if part_type is None else ("photo", data, part_type)

    response = client.post("/images/direct", headers=alice, files={"file": part})

    assert response.status_code == 201, response.text
    assert (response.json()["content_type"], response.json()["width"]) == (content_type, 30)


def test_direct_upload_of_unknown_bytes_without_a_type_is_422(
    client: TestClient, alice: dict[str, str]
) -> None:
    response = client.post(
        "/images/direct", headers=alice, files={"file": ("notes", b"just some text" * 10)}
    )

    assert refusal(response) == (422, "invalid_request")
    assert response.json()["detail"][0]["loc"] == ["body", "content_type"]
