"""Steps of the walking skeleton: simulated frames on the wall (``run.py simulate``) showing an
album, photos uploaded into it, and a check on the frames' ``displayed`` event lines."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from tests.harness.hub import DEVICES, Hub, User
from tests.harness.photos import jpeg
from tests.harness.replies import body_of
from tests.harness.simulator import Simulator
from tests.harness.simulator import simulate as run_simulator


def simulate(
    hub: Hub, admin: User, data_dir: Path, frames: int
) -> AbstractAsyncContextManager[Simulator]:
    return run_simulator(hub.address.base_url, admin.token, data_dir, frames)


async def show_album(hub: Hub, admin: User, frame_ids: list[str], album_id: str) -> None:
    for frame_id in frame_ids:
        response = await hub.client.put(
            f"{DEVICES}/{frame_id}/albums", json={"album_ids": [album_id]}, headers=admin.auth
        )
        body_of(response, 200)


async def new_album(hub: Hub, user: User) -> str:
    response = await hub.client.post("/api/v1/albums", json={"name": "Wall"}, headers=user.auth)
    album_id: str = body_of(response, 201)["album_id"]
    return album_id


async def upload(hub: Hub, user: User, album_id: str, seed: int) -> str:
    response = await hub.upload(user, jpeg(2400, 1600, seed=seed), metadata={"album_id": album_id})
    file_id: str = body_of(response, 201)["file_id"]
    return file_id


def displayed(file_id: str, frame_id: str | None = None) -> Callable[[dict[str, Any]], bool]:
    def check(event: dict[str, Any]) -> bool:
        return (
            event["event"] == "displayed"
            and event.get("file_id") == file_id
            and frame_id in (None, event["frame_id"])
        )

    return check
