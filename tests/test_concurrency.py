"""Races: the conditional writes, not luck, decide the outcome."""

import threading
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.conftest import Uploader, refusal
from tests.stores import Stores


@pytest.fixture(autouse=True)
def _atomic(atomic_aws: None) -> None:
    """Every test here races requests."""


def _together(*calls: Callable[[], Any]) -> list[Any]:
    """Run the calls in threads released at the same instant; their results in order."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int, call: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            results[index] = call()
        except Exception as exc:
            results[index] = exc

    threads = [threading.Thread(target=run, args=item) for item in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def test_concurrent_confirms_agree_and_count_once(
    client: TestClient, alice: dict[str, str], pending: Uploader, stores: Stores
) -> None:
    image_id = pending(alice)["id"]

    responses = _together(
        *[lambda: client.post(f"/images/{image_id}/confirm", headers=alice) for _ in range(8)]
    )

    assert [r.status_code for r in responses] == [200] * 8
    assert len({r.text for r in responses}) == 1
    assert stores.usage("alice")[0] == 1


def test_concurrent_deletes_are_all_204_and_remove_once(
    client: TestClient, alice: dict[str, str], upload: Uploader, stores: Stores
) -> None:
    image = upload(alice)
    upload(alice)

    responses = _together(
        *[lambda: client.delete(f"/images/{image['id']}", headers=alice) for _ in range(8)]
    )

    assert [r.status_code for r in responses] == [204] * 8
    assert refusal(client.get(f"/images/{image['id']}", headers=alice)) == (404, "not_found")
    assert stores.usage("alice")[0] == 1


def test_confirm_racing_delete_never_resurrects(
    client: TestClient, alice: dict[str, str], pending: Uploader, stores: Stores
) -> None:
    outcomes = set()
    for _ in range(15):
        image_id = pending(alice)["id"]

        confirm, delete = _together(
            lambda: client.post(f"/images/{image_id}/confirm", headers=alice),  # noqa: B023
            lambda: client.delete(f"/images/{image_id}", headers=alice),  # noqa: B023
        )

        outcomes.add(confirm.status_code)
        assert confirm.status_code in (200, 404)
        assert delete.status_code == 204
        assert refusal(client.get(f"/images/{image_id}", headers=alice)) == (404, "not_found")
        assert not stores.has_object(image_id)
    assert client.get("/images", headers=alice).json()["items"] == []
    assert stores.usage("alice")[0] == 0


def test_confirm_whose_bytes_a_delete_just_removed_is_404(
    app: FastAPI,
    client: TestClient,
    alice: dict[str, str],
    pending: Uploader,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The interleaving the race above can hit: confirm reads the record, then the DELETE
    runs to its end, then confirm looks for the bytes. The image is gone, not unsent."""
    image_id = pending(alice)["id"]
    objects = app.state.services.storage.objects
    read_prefix = objects.read_prefix

    def deleted_first(*args: Any) -> Any:
        app.state.services.images.delete("alice", image_id)
        return read_prefix(*args)

    monkeypatch.setattr(objects, "read_prefix", deleted_first)

    response = client.post(f"/images/{image_id}/confirm", headers=alice)

    assert refusal(response) == (404, "not_found")
    assert response.json() == {"detail": "Image not found", "code": "not_found"}
