"""Idempotency-Key on POST /images and POST /images/direct: a retry never makes a second
image, a reused key with another body is refused, and users' keys never meet."""

from collections import Counter
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from tests.conftest import Clock, Uploader, new_image, refusal
from tests.imagefiles import make_image

KEY = {"Idempotency-Key": "3f1c2d7e-upload-1"}


def _create(client: TestClient, headers: dict[str, str], **fields: Any) -> Any:
    return client.post("/images", json=new_image(**fields), headers={**headers, **KEY})


def _pending_ids(client: TestClient, headers: dict[str, str]) -> list[str]:
    page = client.get("/images", params={"status": "pending"}, headers=headers).json()
    return [item["id"] for item in page["items"]]


def test_create_with_same_key_and_body_answers_the_first_image_again(
    client: TestClient, alice: dict[str, str]
) -> None:
    first = _create(client, alice, title="Beach")
    again = _create(client, alice, title="Beach")

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json()["image"] == first.json()["image"]
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert again.json()["upload"]["headers"] == first.json()["upload"]["headers"]
    assert _pending_ids(client, alice) == [first.json()["image"]["id"]]


def test_create_with_same_key_and_another_body_is_422(
    client: TestClient, alice: dict[str, str]
) -> None:
    _create(client, alice, title="Beach")

    response = _create(client, alice, title="Mountains")

    assert refusal(response) == (422, "idempotency_key_reused")
    assert "Idempotency-Key" in response.json()["detail"]
    assert len(_pending_ids(client, alice)) == 1


def test_create_body_differing_only_in_form_is_the_same_request(
    client: TestClient, alice: dict[str, str]
) -> None:
    first = _create(client, alice, tags=["Cats", "dogs"])

    again = _create(client, alice, tags=["cats", "DOGS", "cats"])

    assert again.status_code == 201
    assert again.json()["image"]["id"] == first.json()["image"]["id"]


def test_create_keys_of_different_users_never_collide(
    client: TestClient, alice: dict[str, str], bob: dict[str, str]
) -> None:
    mine = _create(client, alice)
    theirs = _create(client, bob)

    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert mine.json()["image"]["id"] != theirs.json()["image"]["id"]
    assert "idempotent-replayed" not in theirs.headers


def test_create_key_is_remembered_for_a_day(
    client: TestClient, alice: dict[str, str], clock: Clock, settings: Settings
) -> None:
    first = _create(client, alice).json()["image"]["id"]
    clock.advance(settings.idempotency_ttl_seconds - 60)
    within = _create(client, alice).json()["image"]["id"]
    clock.advance(120)

    after = _create(client, alice)

    assert settings.idempotency_ttl_seconds >= 24 * 3600
    assert within == first
    assert after.status_code == 201
    assert after.json()["image"]["id"] != first


def test_create_key_replay_of_a_confirmed_image_answers_it_ready(
    client: TestClient, alice: dict[str, str], put_bytes: Any
) -> None:
    data = make_image()
    first = client.post("/images", json=new_image(data=data), headers={**alice, **KEY}).json()
    put_bytes(first["image"]["id"], data, "image/png")
    client.post(f"/images/{first['image']['id']}/confirm", headers=alice)

    again = client.post("/images", json=new_image(data=data), headers={**alice, **KEY})

    assert again.status_code == 201
    assert again.json()["image"]["id"] == first["image"]["id"]
    assert again.json()["image"]["status"] == "ready"


def test_create_key_replay_after_the_image_was_deleted_is_409(
    client: TestClient, alice: dict[str, str]
) -> None:
    first = _create(client, alice).json()["image"]["id"]
    client.delete(f"/images/{first}", headers=alice)

    response = _create(client, alice)

    assert refusal(response) == (409, "image_deleted")
    assert "deleted" in response.json()["detail"]


@pytest.mark.parametrize("key", ["", "has space", "x" * 256, "del\x7fchar"])
def test_create_with_malformed_key_is_422_and_creates_nothing(
    client: TestClient, alice: dict[str, str], key: str
) -> None:
    response = client.post("/images", json=new_image(), headers={**alice, "Idempotency-Key": key})

    assert refusal(response) == (422, "invalid_request")
    assert response.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    assert _pending_ids(client, alice) == []


def test_create_with_key_is_still_one_round_trip(
    client: TestClient, alice: dict[str, str], aws_calls: Counter[str]
) -> None:
    _create(client, alice)

    assert aws_calls == Counter({"dynamodb.TransactWriteItems": 1})


def test_direct_upload_with_same_key_and_file_answers_the_first_image(
    client: TestClient, alice: dict[str, str]
) -> None:
    files = {"file": ("d.png", make_image(width=5, height=4), "image/png")}

    first = client.post("/images/direct", files=files, headers={**alice, **KEY})
    again = client.post("/images/direct", files=files, headers={**alice, **KEY})

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert [i["id"] for i in client.get("/images", headers=alice).json()["items"]] == [
        first.json()["id"]
    ]


def test_direct_upload_with_same_key_and_another_file_is_422(
    client: TestClient, alice: dict[str, str]
) -> None:
    client.post(
        "/images/direct",
        files={"file": ("d.png", make_image(color="red"), "image/png")},
        headers={**alice, **KEY},
    )

    response = client.post(
        "/images/direct",
        files={"file": ("d.png", make_image(color="blue"), "image/png")},
        headers={**alice, **KEY},
    )

    assert refusal(response) == (422, "idempotency_key_reused")


def test_create_and_direct_upload_do_not_share_a_key_by_accident(
    client: TestClient, alice: dict[str, str], create: Uploader
) -> None:
    data = make_image()
    _create(client, alice, data=data)

    response = client.post(
        "/images/direct",
        files={"file": ("photo.img", data, "image/png")},
        headers={**alice, **KEY},
    )

    assert refusal(response) == (422, "idempotency_key_reused")  # the key names another request
