"""Variant URLs signed the fast way are exactly the URLs botocore would sign."""

from datetime import UTC, datetime
from unittest.mock import patch

import pytest

from app.config import Settings
from app.storage.clients import AwsClients
from app.storage.signing import GetUrlSigner

WINDOW = 300


@pytest.mark.parametrize(
    ("bucket", "endpoint"),
    [
        ("photos", None),
        ("app-signing-probe-photos", None),
        ("app-signing-probe-photos", "http://127.0.0.1:4566"),
    ],
    ids=["virtual-hosted", "probe-in-host", "probe-in-path"],
)
def test_fast_url_is_the_url_botocore_signs(bucket: str, endpoint: str | None) -> None:
    clients = AwsClients(Settings(bucket=bucket, aws_endpoint_url=endpoint))
    now = 1_800_000_123.0
    window_start = datetime.fromtimestamp(now - now % WINDOW, UTC)
    signer = GetUrlSigner(clients, bucket, WINDOW, clock=lambda: now)
    key = "variants/0123abcd/thumb.webp"

    fast = signer.urls([key], 60)[0]
    with patch("botocore.auth.get_current_datetime", return_value=window_start):
        slow = clients.s3_presign.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=60 + WINDOW
        )

    assert fast == slow
