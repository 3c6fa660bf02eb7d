"""DELETE /images/{id}: always 204, removes bytes and record, never someone else's."""

from fastapi.testclient import TestClient

from tests.conftest import Uploader, refusal
from tests.stores import Stores


def test_delete_removes_record_and_object(
    client: TestClient, alice: dict[str, str], upload: Uploader, stores: Stores
) -> None:
    image = upload(alice)

    response = client.delete(f"/images/{image['id']}", headers=alice)

    assert response.status_code == 204
    assert response.content == b""
    assert stores.stored(image["id"]) == (False, False)


def test_delete_then_get_is_404(
    client: TestClient, alice: dict[str, str], upload: Uploader
) -> None:
    image = upload(alice)
    client.delete(f"/images/{image['id']}", headers=alice)

    response = client.get(f"/images/{image['id']}", headers=alice)

    assert refusal(response) == (404, "not_found")


def test_delete_twice_is_204(client: TestClient, alice: dict[str, str], upload: Uploader) -> None:
    image = upload(alice)
    client.delete(f"/images/{image['id']}", headers=alice)

    response = client.delete(f"/images/{image['id']}", headers=alice)

    assert response.status_code == 204


def test_delete_unknown_id_is_204(client: TestClient, alice: dict[str, str]) -> None:
    response = client.delete("/images/0123456789abcdef0123456789abcdef", headers=alice)

    assert response.status_code == 204


def test_delete_pending_image_removes_record(
    client: TestClient, alice: dict[str, str], create: Uploader, stores: Stores
) -> None:
    image = create(alice)

    response = client.delete(f"/images/{image['id']}", headers=alice)

    assert response.status_code == 204
    assert stores.stored(image["id"]) == (False, False)


def test_delete_other_users_image_is_204_and_keeps_it(
    client: TestClient, alice: dict[str, str], bob: dict[str, str], upload: Uploader, stores: Stores
) -> None:
    image = upload(alice)

    response = client.delete(f"/images/{image['id']}", headers=bob)

    assert response.status_code == 204
    assert stores.stored(image["id"]) == (True, True)
    assert client.get(f"/images/{image['id']}", headers=alice).json() == image


def test_delete_removes_image_from_list(
    client: TestClient, alice: dict[str, str], upload: Uploader
) -> None:
    kept, gone = upload(alice), upload(alice)
    client.delete(f"/images/{gone['id']}", headers=alice)

    response = client.get("/images", headers=alice)

    assert response.status_code == 200
    assert [item["id"] for item in response.json()["items"]] == [kept["id"]]


def test_delete_without_token_is_401(client: TestClient) -> None:
    response = client.delete("/images/abc")

    assert refusal(response) == (401, "unauthorized")
