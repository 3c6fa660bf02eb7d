"""Property-based: schemathesis drives every operation from the app's own OpenAPI schema,
in-process over ASGI, authenticated, with every default check and a fixed seed."""

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, seed, settings
from hypothesis.stateful import run_state_machine_as_test
from moto.moto_api._internal.models import moto_api_backend
from schemathesis.config import SchemathesisConfig

from app.config import Settings
from app.http.app import create_app
from app.http.auth import issue_token
from app.storage.resources import ensure_resources
from tests.conftest import SECRET

EXAMPLES_PER_OPERATION = 100

# Building the app touches no AWS (clients are made on first use), so one app can serve
# the schema at collection time; each operation then gets fresh moto state below.
SETTINGS = Settings(jwt_secret=SECRET, max_upload_bytes=1024 * 1024)
APP = create_app(SETTINGS)
# What the default checks cannot know (opaque cursors, used Idempotency-Keys, which
# bytes are an image): the same file `st run` reads, so the live run agrees.
CONFIG = SchemathesisConfig.from_path(
    str(Path(__file__).resolve().parent.parent / "schemathesis.toml")
)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP, config=CONFIG)


@schema.auth()
class _Bearer:
    """Authenticated as a client is; schemathesis knows it, so a mutation that drops the
    header is sent without it (a header added afterwards would undo the mutation)."""

    def get(self, case: Any, context: Any) -> str:
        return issue_token(SETTINGS, "alice", 3600)

    def set(self, case: Any, data: str, context: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


# Under pytest-xdist, schemathesis's parametrization collapses to its first operation:
# `make test` runs this module in a process of its own (see the Makefile).
pytestmark = pytest.mark.serial


@pytest.fixture
def fresh_aws(aws: None) -> None:
    ensure_resources(APP.state.services.clients, SETTINGS)


@schema.parametrize()
@seed(20261121)
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    # One moto state per operation is the point: what one example creates is there for
    # the next, as on a real server.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_api_conforms_to_its_schema(case: Any, fresh_aws: None) -> None:
    case.call_and_validate()


# --- The stateful phase: sequences that follow the schema's links from POST /images and
# POST /images/direct to confirm, get, download and delete, checked after every step.
CALLS: list[tuple[str, int]] = []


class _Stateful(schema.as_state_machine()):  # type: ignore[misc]
    def setup(self) -> None:
        # Every scenario starts from empty stores: hypothesis replays scenarios while it
        # explores and shrinks, and a replay that met other data (a list with items where
        # the first saw none) would draw differently, which it rejects as flaky.
        moto_api_backend.reset()
        ensure_resources(APP.state.services.clients, SETTINGS)

    def after_call(self, response: Any, case: Any) -> None:
        super().after_call(response, case)  # schemathesis records responses for its links
        CALLS.append((case.operation.label, response.status_code))


STATEFUL = settings(
    max_examples=30,
    stateful_step_count=8,
    derandomize=True,  # the same sequences every run, as the fixed seed above
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


def test_api_keeps_its_schema_along_the_links(fresh_aws: None) -> None:
    links = {
        operation["operationId"]: sorted(operation["responses"]["201"].get("links", {}))
        for operations in APP.openapi()["paths"].values()
        for operation in operations.values()
        if "201" in operation["responses"]
    }

    CALLS.clear()
    run_state_machine_as_test(_Stateful, settings=STATEFUL)

    # Followed with ids the service issued: these answer other than 404 only then.
    reached = {label for label, status in CALLS if status != 404}
    assert {"GET /images/{image_id}", "DELETE /images/{image_id}"} <= reached
    assert {"POST /images/{image_id}/confirm", "GET /images/{image_id}/download"} & reached
    assert links == {
        "images-create": ["confirm", "delete", "download", "get"],
        "images-upload-direct": ["delete", "download", "get"],
    }
