"""Items in and out of the table: the list page's one-pass JSON is the record's JSON."""

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from app.models import VariantStatus
from app.storage.items import from_item, image_json
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
        }
    ),
)

item = st.builds(
    lambda required, optional: {**required, **optional},
    st.fixed_dictionaries(
        {
            "image_id": st.text("0123456789abcdef", min_size=32, max_size=32).map(
                lambda s: {"S": s}
            ),
            "user_id": text.map(lambda s: {"S": s}),
            "filename": text.map(lambda s: {"S": s}),
            "content_type": st.sampled_from(["image/png", "image/jpeg", "image/heic"]).map(
                lambda s: {"S": s}
            ),
            "size": number.map(lambda n: {"N": str(n)}),
            "status": st.sampled_from(["pending", "ready", "deleting"]).map(lambda s: {"S": s}),
            "created_at": text.map(lambda s: {"S": s}),
        }
    ),
    _optional(
        {
            "title": text.map(lambda s: {"S": s}),
            "description": text.map(lambda s: {"S": s}),
            "tags": st.lists(text, max_size=3).map(lambda tags: {"L": [{"S": t} for t in tags]}),
            "uploaded_at": text.map(lambda s: {"S": s}),
            "width": number.map(lambda n: {"N": str(n)}),
            "height": number.map(lambda n: {"N": str(n)}),
            DUE_ATTRIBUTE: number.map(lambda n: {"N": str(n)}),
            "placeholder": text.map(lambda s: {"S": s}),
            "variants": _optional({"thumb": variant, "preview": variant}).map(
                lambda made: {"M": made}
            ),
        }
    ),
)


@settings(max_examples=300, derandomize=True)
@given(item)
def test_image_json_is_the_records_json_for_every_item(stored: dict[str, Any]) -> None:
    assert image_json(stored) == from_item(stored).public()
