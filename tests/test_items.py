"""Items in and out of the table: a record survives the round trip, and an item's JSON
(built in one place, JsonShape) is an `Image` as OpenAPI publishes it."""

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from app.config import Settings
from app.domain.formats import CONTENT_TYPES
from app.domain.owners import new_image_id, owner_of
from app.domain.records import Status, VariantStatus
from app.domain.variants import OUTPUT_TYPES
from app.images.models import Image
from app.storage.items import JsonShape, from_item, image_of, object_key, to_item
from app.storage.resources import DUE_ATTRIBUTE

text = st.text(min_size=1, max_size=20)
number = st.integers(min_value=0, max_value=2**40)


def _optional(attributes: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Any subset of the attributes, each present or absent."""
    return st.fixed_dictionaries({}, optional=attributes)


variant = st.builds(
    lambda status, rest: {"M": {"status": {"S": status}, **rest}},
    st.sampled_from([status.value for status in VariantStatus]),
    _optional(
        {
            "width": number.map(lambda n: {"N": str(n)}),
            "height": number.map(lambda n: {"N": str(n)}),
            "bytes": number.map(lambda n: {"N": str(n)}),
            "reason": text.map(lambda s: {"S": s}),
            "spec": st.text("0123456789abcdef", min_size=10, max_size=10).map(lambda s: {"S": s}),
            "format": st.sampled_from(sorted(OUTPUT_TYPES)).map(lambda s: {"S": s}),
        }
    ),
)


def _as_written(stored: dict[str, Any]) -> dict[str, Any]:
    """What the service writes: a record in the sweep's index carries its shard."""
    if DUE_ATTRIBUTE in stored:
        stored["sweep_shard"] = {"S": stored["image_id"]["S"][:1]}
    return stored


item = st.builds(
    lambda required, optional: _as_written({**required, **optional}),
    st.fixed_dictionaries(
        {
            "image_id": st.text("0123456789abcdef", min_size=44, max_size=44).map(
                lambda s: {"S": s}
            ),
            "user_id": text.map(lambda s: {"S": s}),
            "filename": text.map(lambda s: {"S": s}),
            "content_type": st.sampled_from(CONTENT_TYPES).map(lambda s: {"S": s}),
            "size": number.map(lambda n: {"N": str(n)}),
            "status": st.sampled_from([status.value for status in Status]).map(lambda s: {"S": s}),
            "tags": st.lists(text, max_size=3).map(lambda tags: {"L": [{"S": t} for t in tags]}),
            "created_at": text.map(lambda s: {"S": s}),
        }
    ),
    _optional(
        {
            "title": text.map(lambda s: {"S": s}),
            "description": text.map(lambda s: {"S": s}),
            "uploaded_at": text.map(lambda s: {"S": s}),
            "width": number.map(lambda n: {"N": str(n)}),
            "height": number.map(lambda n: {"N": str(n)}),
            DUE_ATTRIBUTE: number.map(lambda n: {"N": str(n)}),
            "placeholder": text.map(lambda s: {"S": s}),
            "reason": text.map(lambda s: {"S": s}),
            # Made under the names configured now, and under one removed since.
            "variants": st.dictionaries(
                st.sampled_from(["thumb", "preview", "retired"]), variant, min_size=1
            ).map(lambda made: {"M": made}),
        }
    ),
)


@settings(max_examples=300, derandomize=True)
@given(item)
def test_a_record_written_back_is_the_item_it_was_read_from(stored: dict[str, Any]) -> None:
    assert to_item(from_item(stored)) == stored


@settings(max_examples=300, derandomize=True)
@given(item)
def test_an_items_json_is_an_image_as_published(stored: dict[str, Any]) -> None:
    shape = JsonShape(Settings().variants)

    built = shape.image(stored)

    assert Image.model_validate(built).model_dump(mode="json") == built
    assert list(built["variants"]) == ["thumb", "preview"]  # configured ones only


def test_owner_of_an_id_with_a_trailing_newline_is_none() -> None:
    image_id = new_image_id("a" * 20)

    assert owner_of(image_id) == "a" * 20
    assert owner_of(image_id + "\n") is None


def test_image_of_a_key_with_a_trailing_newline_is_none() -> None:
    key = object_key(new_image_id("b" * 20))

    assert image_of(key) is not None
    assert image_of(key + "\n") is None
