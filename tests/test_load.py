"""The short load run (`make loadtest` runs the long one): concurrent users over real
HTTP, and afterwards nothing lost and nothing left behind."""

import httpx2 as httpx
import pytest

from app.config import Settings
from tests.conftest import SECRET
from tests.load import run_load

pytestmark = pytest.mark.http


def test_load_has_no_server_errors_and_loses_nothing(
    api: httpx.Client, service_env: dict[str, str]
) -> None:
    settings = Settings(
        jwt_secret=SECRET,
        aws_endpoint_url=service_env["AWS_ENDPOINT_URL"],
        bucket=service_env["IMAGES_BUCKET"],
        table=service_env["IMAGES_TABLE"],
    )

    report = run_load(str(api.base_url), settings, users=6, seconds=5, max_cycles_per_user=40)
    print(report.summary())

    assert report.server_errors == []
    assert report.unexpected == []
    assert report.lost == []
    assert report.confirmed > 0
    assert report.deleted > 0
