"""Checks on the photo API's replies, as the phone app reads them: a new album, the versions of
a photo and whether their sizes fit their boxes."""

from __future__ import annotations

from typing import Any

from tests.harness.hub import Hub, User
from tests.harness.replies import body_of


async def new_album(hub: Hub, user: User, name: str = "Holidays") -> str:
    response = await hub.client.post("/api/v1/albums", json={"name": name}, headers=user.auth)
    album = body_of(response)
    assert album["name"] == name and album["owner_id"] == user.user_id, album
    assert response.headers["location"] == f"/api/v1/albums/{album['album_id']}"
    album_id: str = album["album_id"]
    return album_id


def versions_of(photo: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {version["size"]: version for version in photo["versions"]}


def fits(size: tuple[int, int], box: tuple[int, int], original: tuple[int, int]) -> bool:
    """Whether ``size`` is ``original`` shrunk to fit ``box`` (never enlarged, aspect kept)."""
    width, height = size
    scale = min(box[0] / original[0], box[1] / original[1], 1.0)
    expected = (original[0] * scale, original[1] * scale)
    return (
        width <= box[0]
        and height <= box[1]
        and all(abs(got - want) <= 1 for got, want in zip(size, expected, strict=True))
    )
