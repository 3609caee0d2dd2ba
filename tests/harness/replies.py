"""Checks on the hub's HTTP replies that every end-to-end test makes the same way."""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

import httpx

from actors.http import PROBLEM_JSON
from tests.harness.hub import Hub


class Caller(Protocol):
    """A user or a frame: whoever holds a token."""

    @property
    def auth(self) -> dict[str, str]: ...


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The problem+json body of ``response``, after checking its status and media type."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith(PROBLEM_JSON), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status, body
    assert body["detail"], body
    return body


def body_of(response: httpx.Response, status: int = 201) -> dict[str, Any]:
    """The JSON body of ``response``, after checking its status (201 unless told)."""
    assert response.status_code == status, (response.status_code, response.text)
    body: dict[str, Any] = response.json()
    return body


async def download(hub: Hub, caller: Caller, url: str) -> httpx.Response:
    """GET a download URL (absolute, as the API gives it), checking the caching headers."""
    auth = caller.auth
    response = await hub.client.get(url, headers=auth)
    assert response.status_code == 200, (url, response.status_code, response.text)
    digest = hashlib.sha256(response.content).hexdigest()
    assert response.headers["etag"] == f'"{digest}"', (url, response.headers)
    assert "immutable" in response.headers["cache-control"], response.headers
    again = await hub.client.get(url, headers={**auth, "If-None-Match": response.headers["etag"]})
    assert again.status_code == 304, (url, again.status_code)
    assert again.content == b""
    assert again.headers["etag"] == response.headers["etag"]
    among = await hub.client.get(
        url, headers={**auth, "If-None-Match": f'"{"0" * 64}", {response.headers["etag"]}'}
    )
    assert among.status_code == 304, (url, among.status_code)
    stale = await hub.client.get(url, headers={**auth, "If-None-Match": f'"{"0" * 64}"'})
    assert stale.status_code == 200 and stale.content == response.content, url
    return response
