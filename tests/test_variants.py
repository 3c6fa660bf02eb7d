"""Named variants are configuration (IMAGES_VARIANTS): a set changed with no code change
is made, described, listed and served; images made before get new or changed variants
from the backfill; a bad definition stops the service, naming the field."""

import io
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.__main__ import main
from app.config import Settings
from app.domain.variants import DEFAULT_VARIANTS, VariantSpec
from app.storage.items import variant_key
from tests.conftest import SECRET, AppFactory, PutBytes, deliver, new_image, refusal
from tests.imagefiles import make_image
from tests.servers import make_run_refused
from tests.stores import Stores

SQUARE = {"width": 256, "height": 256, "fit": "cover"}
WITH_SQUARE = {
    **{name: spec.model_dump() for name, spec in DEFAULT_VARIANTS.items()},
    "square": SQUARE,
}


def _uploaded(app: Any, put_bytes: PutBytes, alice: dict[str, str], data: bytes) -> str:
    """Create, PUT, and let the worker make what is configured."""
    client = TestClient(app)
    image = client.post("/images", json=new_image("image/png", data), headers=alice).json()
    put_bytes(image["image"]["id"], data, "image/png")
    services = app.state.services
    deliver(services.worker, services.clients, services.settings)
    image_id: str = image["image"]["id"]
    return image_id


def _object(app: Any, key: str) -> bytes:
    settings = app.state.services.settings
    body: bytes = app.state.services.clients.s3.get_object(Bucket=settings.bucket, Key=key)[
        "Body"
    ].read()
    return body


def test_a_configured_variant_is_made_described_listed_and_served(
    make_app: AppFactory, alice: dict[str, str], put_bytes: PutBytes
) -> None:
    app = make_app(variants=WITH_SQUARE)
    client = TestClient(app)
    image_id = _uploaded(app, put_bytes, alice, make_image("image/png", width=800, height=400))

    got = client.get(f"/images/{image_id}", headers=alice).json()
    listed = client.get("/images", headers=alice).json()["items"][0]
    link = client.get(f"/images/{image_id}/download?variant=square", headers=alice)
    square = Image.open(io.BytesIO(_object(app, _key(app, image_id, "square"))))

    assert list(got["variants"]) == ["thumb", "preview", "square"]
    assert got["variants"]["square"] | {"bytes": 0, "url": ""} == {
        "status": "ready",
        "content_type": "image/webp",
        "width": 256,
        "height": 256,
        "bytes": 0,
        "reason": None,
        "url": "",
    }
    assert listed["variants"] == got["variants"]
    assert link.status_code == 200
    assert f"/{_key(app, image_id, 'square')}?" in link.json()["url"]
    assert (square.format, square.size) == ("WEBP", (256, 256))


def _key(app: Any, image_id: str, name: str) -> str:
    return variant_key(image_id, name, app.state.services.settings.variants[name])


def test_a_download_of_a_variant_not_configured_names_the_valid_ones(
    make_app: AppFactory, alice: dict[str, str], put_bytes: PutBytes
) -> None:
    app = make_app(variants=WITH_SQUARE)
    client = TestClient(app)
    image_id = _uploaded(app, put_bytes, alice, make_image("image/png"))

    response = client.get(f"/images/{image_id}/download?variant=huge", headers=alice)

    assert refusal(response) == (422, "invalid_request")
    assert response.json()["detail"] == (
        "No variant 'huge': one of original, thumb, preview, square"
    )


def test_the_schema_lists_the_configured_variant_names(make_app: AppFactory) -> None:
    schema = TestClient(make_app(variants=WITH_SQUARE)).get("/openapi.json").json()

    download = schema["paths"]["/images/{image_id}/download"]["get"]
    (variant,) = (p for p in download["parameters"] if p["name"] == "variant")
    assert variant["schema"]["enum"] == ["original", "thumb", "preview", "square"]


@pytest.mark.parametrize(
    ("spec", "size", "encoder"),
    [
        ({"width": 300, "height": 300, "fit": "contain", "format": "jpeg"}, (300, 150), "JPEG"),
        ({"width": 100, "height": 100, "format": "avif", "quality": 50}, (100, 50), "AVIF"),
    ],
    ids=["contain-enlarges-as-jpeg", "scale-down-as-avif"],
)
def test_a_variant_is_fitted_and_encoded_as_defined(
    make_app: AppFactory,
    alice: dict[str, str],
    put_bytes: PutBytes,
    spec: dict[str, Any],
    size: tuple[int, int],
    encoder: str,
) -> None:
    variants = {**WITH_SQUARE, "extra": spec}
    app = make_app(variants=variants)
    client = TestClient(app)
    image_id = _uploaded(app, put_bytes, alice, make_image("image/png", width=200, height=100))

    made = client.get(f"/images/{image_id}", headers=alice).json()["variants"]["extra"]
    encoded = Image.open(io.BytesIO(_object(app, _key(app, image_id, "extra"))))

    assert (made["width"], made["height"]) == size
    assert made["content_type"] == VariantSpec(**spec).content_type
    assert (encoded.format, encoded.size) == (encoder, size)


def test_the_backfill_makes_variants_added_since_and_keeps_the_others(
    make_app: AppFactory,
    alice: dict[str, str],
    put_bytes: PutBytes,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = make_app()
    image_id = _uploaded(before, put_bytes, alice, make_image("image/png"))
    thumb = _object(before, _key(before, image_id, "thumb"))
    after = make_app(variants=WITH_SQUARE)  # the same table and bucket, another set
    waiting = TestClient(after).get(f"/images/{image_id}", headers=alice).json()
    monkeypatch.setenv("IMAGES_VARIANTS", json.dumps(WITH_SQUARE))
    monkeypatch.setenv("IMAGES_JWT_SECRET", SECRET)

    main(["backfill-variants"])
    report = json.loads(capsys.readouterr().out)
    services = after.state.services
    answers = deliver(services.worker, services.clients, services.settings)
    made = TestClient(after).get(f"/images/{image_id}", headers=alice).json()

    assert waiting["variants"]["square"]["status"] == "pending"
    assert report == {"queued": 1, "complete": True}
    assert answers == [{"batchItemFailures": []}]
    assert made["variants"]["square"]["status"] == "ready"
    assert _object(after, _key(after, image_id, "thumb")) == thumb  # not made again


def test_the_backfill_is_bounded_and_resumes_where_it_stopped(
    make_app: AppFactory, alice: dict[str, str], put_bytes: PutBytes, stores: Stores
) -> None:
    app = make_app()
    for _ in range(3):
        _uploaded(app, put_bytes, alice, make_image("image/png"))
    maintenance = app.state.services.maintenance

    first, second = maintenance.backfill(2), maintenance.backfill(2)
    again = maintenance.backfill(10)  # the last one finished: a new run starts over

    assert (first.queued, first.complete) == (2, False)
    assert (second.queued, second.complete) == (1, True)
    assert (again.queued, again.complete) == (3, True)


def test_a_changed_definition_is_made_again_and_the_old_object_removed(
    make_app: AppFactory, alice: dict[str, str], put_bytes: PutBytes, stores: Stores
) -> None:
    before = make_app()
    image_id = _uploaded(before, put_bytes, alice, make_image("image/png", 900, 600))
    old_thumb = _key(before, image_id, "thumb")
    bigger = {**WITH_SQUARE, "thumb": {"width": 400, "height": 400}}
    after = make_app(variants=bigger)
    services = after.state.services

    services.maintenance.backfill(10)
    deliver(services.worker, services.clients, services.settings)
    thumb = TestClient(after).get(f"/images/{image_id}", headers=alice).json()["variants"]["thumb"]

    kept = stores.keys()
    assert (thumb["width"], thumb["height"]) == (400, 267)
    assert old_thumb not in kept
    assert _key(after, image_id, "thumb") in kept


def test_a_variant_removed_from_the_set_goes_with_its_image(
    make_app: AppFactory, alice: dict[str, str], put_bytes: PutBytes, stores: Stores
) -> None:
    before = make_app(variants=WITH_SQUARE)
    image_id = _uploaded(before, put_bytes, alice, make_image("image/png"))
    after = make_app()  # square no longer configured

    shown = TestClient(after).get(f"/images/{image_id}", headers=alice).json()
    TestClient(after).delete(f"/images/{image_id}", headers=alice)

    assert list(shown["variants"]) == ["thumb", "preview"]
    assert stores.keys() == []


def test_a_bad_variant_definition_stops_the_service_naming_the_field(tmp_path: Path) -> None:
    bad = {**WITH_SQUARE, "square": {**SQUARE, "fit": "squash"}}
    result = make_run_refused(tmp_path, {"IMAGES_VARIANTS": json.dumps(bad)})

    assert result.returncode == 1
    assert "variants.square.fit" in result.stderr
    assert "'scale-down', 'contain' or 'cover'" in result.stderr


@pytest.mark.parametrize(
    ("variants", "message"),
    [
        ({"thumb": {"width": 320, "height": 320}}, "preview"),
        ({**WITH_SQUARE, **{f"v{n}": SQUARE for n in range(8)}}, "at most 10"),
        ({**WITH_SQUARE, "Square!": SQUARE}, "variants.Square!"),
    ],
    ids=["a-required-one-missing", "too-many", "a-bad-name"],
)
def test_a_variant_set_the_service_cannot_serve_is_refused_at_start(
    variants: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Settings(jwt_secret=SECRET, variants=variants)
