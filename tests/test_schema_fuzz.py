"""Property-based: schemathesis drives every operation from the app's own OpenAPI schema,
in-process over ASGI, authenticated, with every default check and a fixed seed."""

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, seed, settings
from schemathesis.config import SchemathesisConfig

from app.config import Settings
from app.main import create_app
from app.storage.resources import ensure_resources
from tests.conftest import SECRET, bearer

EXAMPLES_PER_OPERATION = 150

# Building the app touches no AWS (clients are made on first use), so one app can serve
# the schema at collection time; each operation then gets fresh moto state below.
SETTINGS = Settings(jwt_secret=SECRET, max_upload_bytes=1024 * 1024)
APP = create_app(SETTINGS)
# Answers the checks' defaults do not know. A cursor is opaque and signed: no schema can
# say which strings we issued (a forged one is 400 by contract). No schema can say which
# bytes are a real image either (a direct upload of anything else is 422). A declared
# size over the limit is refused with 413 (the schema states that maximum). Nor can it
# say which Idempotency-Keys were used: reusing one with another body is 422.
CONFIG = SchemathesisConfig.from_dict(
    {
        "operations": [
            {
                "include-name": "POST /images",
                "checks": {
                    "negative_data_rejection": {
                        "expected-statuses": ["400", "401", "403", "404", "413", "422"]
                    },
                    "positive_data_acceptance": {
                        "expected-statuses": ["2xx", "401", "404", "409", "422", "429"]
                    },
                },
            },
            {
                "include-name": "POST /images/direct",
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": ["2xx", "401", "413", "422", "429"]
                    }
                },
            },
            {
                "include-name": "GET /images",
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": ["2xx", "400", "401", "404", "409", "429"]
                    }
                },
            },
        ]
    }
)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP, config=CONFIG)
# Under pytest-xdist, schemathesis's parametrization collapses to its first operation:
# `make test` runs this module in a process of its own (see the Makefile).
pytestmark = pytest.mark.serial


@pytest.fixture
def fresh_aws(aws: None) -> None:
    ensure_resources(APP.state.clients, SETTINGS)


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
    case.call_and_validate(headers=bearer(SETTINGS, "alice"))
