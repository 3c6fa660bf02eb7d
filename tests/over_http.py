"""What a client does over HTTP, shared by the tiers that run real servers: the API's
calls, and the `images` command as a user runs it."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx2 as httpx

from app.config import Settings
from app.http.auth import issue_token
from tests.conftest import SECRET


def auth(user: str) -> dict[str, str]:
    settings = Settings(jwt_secret=SECRET)
    return {"Authorization": f"Bearer {issue_token(settings, user, 600)}"}


def create(
    api: httpx.Client, user: str, data: bytes, content_type: str, **fields: Any
) -> dict[str, Any]:
    """POST /images for these bytes: the pending image and its upload instructions."""
    created = api.post(
        "/images",
        headers=auth(user),
        json={
            "filename": "holiday photo.png",
            "content_type": content_type,
            "size": len(data),
            **fields,
        },
    )
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return body


def put(upload: dict[str, Any], data: bytes, **header_changes: str | None) -> httpx.Response:
    """The presigned PUT with the returned headers (changed, or dropped where None)."""
    headers = {**upload["headers"], **header_changes}
    sent = {name: value for name, value in headers.items() if value is not None}
    return httpx.request(upload["method"], upload["url"], headers=sent, content=data)


def upload(
    api: httpx.Client, user: str, data: bytes, content_type: str, **fields: Any
) -> dict[str, Any]:
    """Exactly what a client does: create, PUT with the returned headers, confirm."""
    created = create(api, user, data, content_type, **fields)
    stored = put(created["upload"], data)
    assert stored.status_code == 200, stored.text
    confirmed = api.post(f"/images/{created['image']['id']}/confirm", headers=auth(user))
    assert confirmed.status_code == 200, confirmed.text
    image: dict[str, Any] = confirmed.json()
    return image


class Cli:
    """`python -m app.cli ...` with a configuration directory of its own."""

    def __init__(self, home: Path, cwd: Path) -> None:
        self.env = {"PATH": os.environ.get("PATH", ""), "XDG_CONFIG_HOME": str(home)}
        self.cwd = cwd

    def __call__(
        self, *args: str, stdin: str = "", timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "app.cli", *args],
            env=self.env,
            cwd=self.cwd,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def json(self, *args: str) -> Any:
        result = self(*args, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)
