"""GET /images: newest first, complete pagination, filters that fill pages, safe cursors."""

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Uploader, refusal


def _ids(response: Any) -> list[str]:
    return [item["id"] for item in response.json()["items"]]


def _walk(client: TestClient, headers: dict[str, str], **params: Any) -> list[list[str]]:
    """Every page of a listing, following next_cursor."""
    pages: list[list[str]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = client.get("/images", params=query, headers=headers)
        assert response.status_code == 200, response.text
        pages.append(_ids(response))
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return pages


def test_list_is_newest_first(client: TestClient, alice: dict[str, str], upload: Uploader) -> None:
    first, second, third = upload(alice), upload(alice), upload(alice)

    response = client.get("/images", headers=alice)

    assert response.status_code == 200
    assert _ids(response) == [third["id"], second["id"], first["id"]]
    assert response.json()["next_cursor"] is None


def test_list_empty_is_empty_page(client: TestClient, alice: dict[str, str]) -> None:
    response = client.get("/images", headers=alice)

    assert response.status_code == 200
    assert response.json() == {"items": [], "next_cursor": None}


def test_list_shows_only_callers_images(
    client: TestClient, alice: dict[str, str], bob: dict[str, str], upload: Uploader
) -> None:
    mine = upload(alice)
    upload(bob)

    response = client.get("/images", headers=alice)

    assert response.status_code == 200
    assert _ids(response) == [mine["id"]]


def test_list_pages_cover_everything_once(
    client: TestClient, alice: dict[str, str], upload: Uploader
) -> None:
    uploaded = [upload(alice)["id"] for _ in range(7)]

    pages = _walk(client, alice, limit=3)

    assert [len(page) for page in pages] == [3, 3, 1]
    assert [i for page in pages for i in page] == uploaded[::-1]


def test_list_exact_multiple_has_no_empty_last_page(
    client: TestClient, alice: dict[str, str], upload: Uploader
) -> None:
    for _ in range(4):
        upload(alice)

    pages = _walk(client, alice, limit=2)

    assert [len(page) for page in pages] == [2, 2]


def test_list_defaults_to_ready_only(
    client: TestClient, alice: dict[str, str], upload: Uploader, create: Uploader
) -> None:
    ready = upload(alice)
    create(alice)

    response = client.get("/images", headers=alice)

    assert response.status_code == 200
    assert _ids(response) == [ready["id"]]


def test_list_status_pending_shows_pending(
    client: TestClient, alice: dict[str, str], upload: Uploader, create: Uploader
) -> None:
    upload(alice)
    pending = create(alice)

    response = client.get("/images", params={"status": "pending"}, headers=alice)

    assert response.status_code == 200
    assert _ids(response) == [pending["id"]]


def test_list_filters_by_content_type(
    client: TestClient, alice: dict[str, str], upload: Uploader
) -> None:
    jpeg = upload(alice, "image/jpeg")
    upload(alice, "image/png")

    response = client.get("/images", params={"content_type": "image/jpeg"}, headers=alice)

    assert response.status_code == 200
    assert _ids(response) == [jpeg["id"]]


def test_list_filters_by_tag_case_insensitively(
    client: TestClient, alice: dict[str, str], upload: Uploader
) -> None:
    cat = upload(alice, tags=["cat", "pet"])
    upload(alice, tags=["dog"])

    response = client.get("/images", params={"tag": "CAT"}, headers=alice)

    assert response.status_code == 200
    assert _ids(response) == [cat["id"]]


def test_list_filters_by_created_range_inclusive(
    client: TestClient, alice: dict[str, str], upload: Uploader
) -> None:
    _first, second, third, _fourth = (upload(alice) for _ in range(4))

    response = client.get(
        "/images",
        params={"created_after": second["created_at"], "created_before": third["created_at"]},
        headers=alice,
    )

    assert response.status_code == 200
    assert _ids(response) == [third["id"], second["id"]]


def test_list_sparse_filter_still_fills_pages(
    client: TestClient, alice: dict[str, str], upload: Uploader
) -> None:
    tagged = [upload(alice, tags=["rare"] if i % 4 == 0 else ["common"])["id"] for i in range(24)]
    rare = [image_id for i, image_id in enumerate(tagged) if i % 4 == 0]

    pages = _walk(client, alice, tag="rare", limit=2)

    assert [len(page) for page in pages] == [2, 2, 2]
    assert [i for page in pages for i in page] == rare[::-1]


def test_list_combined_filters_apply_together(
    client: TestClient, alice: dict[str, str], upload: Uploader
) -> None:
    match = upload(alice, "image/gif", tags=["x"])
    upload(alice, "image/png", tags=["x"])
    upload(alice, "image/gif", tags=["y"])

    response = client.get(
        "/images", params={"tag": "x", "content_type": "image/gif"}, headers=alice
    )

    assert response.status_code == 200
    assert _ids(response) == [match["id"]]


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 101},
        {"limit": "many"},
        {"status": "deleting"},
        {"status": "everything"},
        {"content_type": "text/html"},
        {"tag": "no spaces"},
        {"tag": "x" * 51},
        {"created_after": "yesterday"},
        {"created_before": "2026-13-45T00:00:00Z"},
        {"created_after": "2026-02-01T00:00:00"},
        {"created_after": "1700000000"},
        {"created_after": "0001-01-01T00:00:00+01:00"},
        {"cursor": ""},
        {"cursor": "c" * 1025},
        {"unknown": "1"},
    ],
)
def test_list_rejects_bad_query(
    client: TestClient, alice: dict[str, str], params: dict[str, Any]
) -> None:
    response = client.get("/images", params=params, headers=alice)

    assert refusal(response) == (422, "invalid_request")
    assert response.json()["detail"][0]["loc"][0] == "query"


def test_list_bad_query_names_the_field(client: TestClient, alice: dict[str, str]) -> None:
    response = client.get("/images", params={"limit": 0}, headers=alice)

    assert refusal(response) == (422, "invalid_request")
    assert response.json()["detail"][0]["loc"] == ["query", "limit"]


def test_list_repeated_parameter_takes_the_last(
    client: TestClient, alice: dict[str, str], upload: Uploader
) -> None:
    for _ in range(3):
        upload(alice)

    response = client.get("/images?limit=1&limit=2", headers=alice)

    assert response.status_code == 200
    assert len(response.json()["items"]) == 2


def test_list_inverted_date_range_is_empty_page(
    client: TestClient, alice: dict[str, str], upload: Uploader, aws_calls: Any
) -> None:
    upload(alice)
    aws_calls.clear()

    response = client.get(
        "/images",
        params={"created_after": "2026-02-01T00:00:00Z", "created_before": "2026-01-01T00:00:00Z"},
        headers=alice,
    )

    assert response.status_code == 200
    assert response.json() == {"items": [], "next_cursor": None}
    assert not aws_calls


def test_list_date_filter_accepts_offsets_and_early_years(
    client: TestClient, alice: dict[str, str], upload: Uploader
) -> None:
    image = upload(alice)

    response = client.get(
        "/images",
        params={
            "created_after": "0091-06-20T13:59:30.1z",
            "created_before": "9999-01-01T00:00:00+05:30",
        },
        headers=alice,
    )

    assert response.status_code == 200
    assert _ids(response) == [image["id"]]


def test_list_accepts_limit_bounds(client: TestClient, alice: dict[str, str]) -> None:
    statuses = [
        client.get("/images", params={"limit": n}, headers=alice).status_code for n in (1, 100)
    ]

    assert statuses == [200, 200]


@pytest.fixture
def cursor(client: TestClient, alice: dict[str, str], upload: Uploader) -> str:
    for _ in range(3):
        upload(alice)
    value: str = client.get("/images", params={"limit": 1}, headers=alice).json()["next_cursor"]
    return value


@pytest.mark.parametrize("garbage", ["garbage", "a.b", "....", "e30.e30", "%%%", "0"])
def test_list_cursor_of_the_wrong_shape_is_422(
    client: TestClient, alice: dict[str, str], cursor: str, garbage: str
) -> None:
    """The schema says what a cursor looks like: a request it refuses is refused as such."""
    response = client.get("/images", params={"cursor": garbage}, headers=alice)

    assert refusal(response) == (422, "invalid_request")
    assert response.json()["detail"][0]["loc"] == ["query", "cursor"]


@pytest.mark.parametrize(
    "forged", ["e30." + "A" * 22, "WyJhIiwiYiJd." + "_" * 22, "x" * 200 + "." + "0" * 22]
)
def test_list_well_formed_cursor_we_never_issued_is_400(
    client: TestClient, alice: dict[str, str], cursor: str, forged: str
) -> None:
    response = client.get("/images", params={"cursor": forged}, headers=alice)

    assert refusal(response) == (400, "invalid_cursor")
    assert response.json() == {"detail": "Invalid cursor", "code": "invalid_cursor"}


def test_list_edited_cursor_is_400(client: TestClient, alice: dict[str, str], cursor: str) -> None:
    payload, mac = cursor.split(".")
    edited = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + "." + mac

    response = client.get("/images", params={"cursor": edited}, headers=alice)

    assert refusal(response) == (400, "invalid_cursor")


def test_list_other_users_cursor_is_400(
    client: TestClient, bob: dict[str, str], cursor: str
) -> None:
    response = client.get("/images", params={"cursor": cursor}, headers=bob)

    assert refusal(response) == (400, "invalid_cursor")
    assert response.json() == {"detail": "Invalid cursor", "code": "invalid_cursor"}


def test_list_cursor_under_other_filters_is_400(
    client: TestClient, alice: dict[str, str], cursor: str
) -> None:
    response = client.get("/images", params={"cursor": cursor, "tag": "x"}, headers=alice)

    assert refusal(response) == (400, "invalid_cursor")


def test_list_without_token_is_401(client: TestClient) -> None:
    response = client.get("/images")

    assert refusal(response) == (401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"
