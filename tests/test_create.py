"""POST /images: validation, limits, the pending record and the signed upload URL."""

import json
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.http.app import create_app
from app.storage.clients import AwsClients
from tests.conftest import SECRET, new_image, refusal
from tests.imagefiles import FORMATS


def _post(client: TestClient, headers: dict[str, str], **changes: Any) -> Any:
    return client.post("/images", json={**new_image(), **changes}, headers=headers)


def test_create_returns_pending_image_and_upload(client: TestClient, alice: dict[str, str]) -> None:
    response = _post(client, alice, title="Sunset", description="Over the sea", tags=["Sea", "sun"])

    assert response.status_code == 201
    body = response.json()
    image, upload = body["image"], body["upload"]
    assert set(image) == {
        "id",
        "filename",
        "content_type",
        "size",
        "status",
        "reason",
        "title",
        "description",
        "tags",
        "created_at",
        "uploaded_at",
        "width",
        "height",
        "placeholder",
        "variants",
        "scan",
    }
    assert image["status"] == "pending"
    assert image["scan"] == {"status": "pending", "signature": None, "reason": None}
    assert image["placeholder"] is None
    assert [v["url"] for v in image["variants"].values()] == [None, None]
    assert {name: v["status"] for name, v in image["variants"].items()} == {
        "thumb": "pending",
        "preview": "pending",
    }
    assert image["tags"] == ["sea", "sun"]
    assert (image["uploaded_at"], image["width"], image["height"]) == (None, None, None)
    assert upload["method"] == "PUT"
    assert upload["headers"] == {
        "Content-Type": "image/png",
        "Content-Length": str(image["size"]),
        "x-amz-tagging": "state=pending",
        "If-None-Match": "*",
    }


def test_create_signs_type_length_pending_tag_and_write_once(
    client: TestClient, alice: dict[str, str]
) -> None:
    response = _post(client, alice)

    assert response.status_code == 201
    query = parse_qs(urlsplit(response.json()["upload"]["url"]).query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-SignedHeaders"][0].split(";") == [
        "content-length",
        "content-type",
        "host",
        "if-none-match",
        "x-amz-tagging",
    ]
    assert query["X-Amz-Expires"] == ["900"]


def test_create_upload_expires_after_configured_ttl(
    client: TestClient, alice: dict[str, str]
) -> None:
    response = _post(client, alice)

    assert response.status_code == 201
    body = response.json()
    created = datetime.fromisoformat(body["image"]["created_at"])
    expires = datetime.fromisoformat(body["upload"]["expires_at"])
    assert (expires - created).total_seconds() == 900


def test_create_key_is_chosen_by_server_not_filename(
    client: TestClient, alice: dict[str, str]
) -> None:
    response = _post(client, alice, filename="../../etc/passwd.png")

    assert response.status_code == 201
    body = response.json()
    image_id = body["image"]["id"]
    assert urlsplit(body["upload"]["url"]).path == f"/u/{image_id[-20:]}/{image_id}/original"


def test_create_writes_pending_record_due_at_its_deadline_without_ttl(
    client: TestClient, alice: dict[str, str], clients: AwsClients, settings: Settings
) -> None:
    response = _post(client, alice)

    assert response.status_code == 201
    image = response.json()["image"]
    item = clients.dynamodb.get_item(
        TableName=settings.table, Key={"image_id": {"S": image["id"]}}
    )["Item"]
    assert item["status"] == {"S": "pending"}
    assert item["user_id"] == {"S": "alice"}
    created = datetime.fromisoformat(image["created_at"]).timestamp()
    assert int(item["due_at"]["N"]) == int(created) + settings.upload_deadline_seconds
    assert item["sweep_shard"] == {"S": image["id"][0]}
    # DynamoDB's TTL would delete it without giving its reserved quota back.
    assert "expires_at" not in item


def test_create_ids_are_unique(client: TestClient, alice: dict[str, str]) -> None:
    ids = {_post(client, alice).json()["image"]["id"] for _ in range(20)}

    assert len(ids) == 20


@pytest.mark.parametrize("content_type", list(FORMATS))
def test_create_accepts_each_image_type(
    client: TestClient, alice: dict[str, str], content_type: str
) -> None:
    response = _post(client, alice, content_type=content_type)

    assert response.status_code == 201
    assert response.json()["image"]["content_type"] == content_type


@pytest.mark.parametrize("content_type", ["image/svg+xml", "text/html", "application/pdf", ""])
def test_create_rejects_other_types(
    client: TestClient, alice: dict[str, str], content_type: str
) -> None:
    response = _post(client, alice, content_type=content_type)

    assert refusal(response) == (422, "invalid_request")
    assert response.json()["detail"][0]["loc"] == ["body", "content_type"]


def test_create_size_over_the_published_maximum_is_422(
    client: TestClient, alice: dict[str, str], settings: Settings
) -> None:
    """The schema publishes the maximum: beyond it is a field out of range, like any."""
    maximum = client.get("/openapi.json").json()["components"]["schemas"]["CreateImageRequest"][
        "properties"
    ]["size"]["maximum"]

    response = _post(client, alice, size=maximum + 1)

    assert maximum == settings.largest_upload
    assert refusal(response) == (422, "invalid_request")
    assert response.json()["detail"][0]["loc"] == ["body", "size"]
    assert str(maximum) in response.json()["detail"][0]["msg"]


def test_create_accepts_size_at_limit(
    client: TestClient, alice: dict[str, str], settings: Settings
) -> None:
    response = _post(client, alice, size=settings.max_upload_bytes)

    assert response.status_code == 201


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("size", 0),
        ("size", -1),
        ("size", "ten"),
        ("filename", ""),
        ("filename", "x" * 256),
        ("title", "t" * 201),
        ("description", "d" * 2001),
        ("tags", [f"t{i}" for i in range(21)]),
        ("tags", ["has space"]),
        ("tags", ["x" * 51]),
        ("tags", [""]),
        ("tags", ["ünicode"]),
        ("tags", "not-a-list"),
        ("unknown_field", 1),
    ],
)
def test_create_rejects_invalid_field(
    client: TestClient, alice: dict[str, str], field: str, value: Any
) -> None:
    response = _post(client, alice, **{field: value})

    assert refusal(response) == (422, "invalid_request")
    assert response.json()["detail"][0]["loc"][:2] == ["body", field]


def test_create_rejects_lone_surrogate_in_filename(
    client: TestClient, alice: dict[str, str]
) -> None:
    raw = b'{"filename": "bad\\ud800.png", "content_type": "image/png", "size": 10}'

    response = client.post(
        "/images", content=raw, headers={**alice, "Content-Type": "application/json"}
    )

    assert refusal(response) == (422, "invalid_request")
    assert response.json()["detail"][0]["loc"] == ["body", "filename"]


def test_create_accepts_bounds(client: TestClient, alice: dict[str, str]) -> None:
    response = _post(
        client,
        alice,
        filename="f" * 255,
        title="t" * 200,
        description="d" * 2000,
        tags=[f"t{i}" for i in range(20)],
    )

    assert response.status_code == 201
    assert len(response.json()["image"]["tags"]) == 20


def test_create_deduplicates_tags_case_insensitively(
    client: TestClient, alice: dict[str, str]
) -> None:
    response = _post(client, alice, tags=["Cat", "cat", "CAT", "dog"])

    assert response.status_code == 201
    assert response.json()["image"]["tags"] == ["cat", "dog"]


def test_create_rejects_malformed_json(client: TestClient, alice: dict[str, str]) -> None:
    response = client.post(
        "/images", content=b"{not json", headers={**alice, "Content-Type": "application/json"}
    )

    assert refusal(response) == (422, "invalid_request")
    assert "detail" in response.json()


def test_create_without_token_is_401(client: TestClient) -> None:
    response = client.post("/images", json=new_image())

    assert refusal(response) == (401, "unauthorized")
    assert response.json() == {"detail": "Missing bearer token", "code": "unauthorized"}


def test_create_presigns_for_public_endpoint_when_configured(aws: None) -> None:
    settings = Settings(
        jwt_secret=SECRET,
        aws_endpoint_url="http://localstack:4566",
        s3_public_endpoint_url="http://localhost:4566",
    )
    app = create_app(settings)

    url = app.state.services.clients.s3_presign.generate_presigned_url(
        "get_object", Params={"Bucket": "images", "Key": "k"}
    )
    service_side = app.state.services.clients.s3.meta.endpoint_url

    assert url.startswith("http://localhost:4566/images/k?")
    assert service_side == "http://localstack:4566"


def test_create_oversized_json_is_413(client: TestClient, alice: dict[str, str]) -> None:
    huge = b'{"filename": "' + b"x" * 70_000 + b'"}'

    response = client.post(
        "/images", content=huge, headers={**alice, "Content-Type": "application/json"}
    )

    assert refusal(response) == (413, "body_too_large")
    assert response.json() == {"detail": "Request body too large", "code": "body_too_large"}


def test_create_oversized_chunked_json_is_413(client: TestClient, alice: dict[str, str]) -> None:
    def chunks() -> Any:
        for _ in range(100):
            yield b" " * 1024

    response = client.post(
        "/images", content=chunks(), headers={**alice, "Content-Type": "application/json"}
    )

    assert refusal(response) == (413, "body_too_large")
    assert response.json() == {"detail": "Request body too large", "code": "body_too_large"}


def test_create_chunked_json_within_limit_is_accepted(
    client: TestClient, alice: dict[str, str]
) -> None:
    body = json.dumps(new_image()).encode()

    response = client.post(
        "/images",
        content=iter([body[:10], body[10:]]),
        headers={**alice, "Content-Type": "application/json"},
    )

    assert response.status_code == 201
