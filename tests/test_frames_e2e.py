"""The walking skeleton, end to end: the hub with its managed Mosquitto, and real frame programs
(``run.py simulate`` in a child process) on the wall.

A photo uploaded from a phone appears on the frames; a frame that was off shows it after it
comes back; frames converge after the hub restarts and after Mosquitto is killed. The test
waits on the simulator's event lines (one JSON object per thing a frame did) and on the hub's
commits, never on the clock.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from PIL import Image

from actors.mqtt import BrokerProcess, GetBrokerProcess
from tests.api_support import DEVICES, Hub, User, running_hub
from tests.api_support.photos import jpeg
from tests.api_support.replies import body_of
from tests.api_support.simulator import Simulator
from tests.api_support.simulator import simulate as run_simulator
from tests.mqtt_support import free_port


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


async def test_an_upload_appears_on_every_frame(tmp_path: Path) -> None:
    async with running_hub(tmp_path / "hub") as hub:
        admin, alice = await hub.new_user("admin", admin=True), await hub.new_user("alice")
        album = await new_album(hub, alice)
        async with simulate(hub, admin, tmp_path / "sim", 3) as frames:
            ids = frames.frame_ids()
            await show_album(hub, admin, ids, album)
            file_id = await upload(hub, alice, album, seed=1)
            for frame_id in ids:
                await frames.wait_for(displayed(file_id, frame_id))
                with Image.open(frames.display(frame_id)) as screen:
                    assert (screen.format, screen.size) == ("PNG", (1024, 600))

            async def twins_show_it() -> bool:
                for frame_id in ids:
                    shown = body_of(
                        await hub.client.get(f"{DEVICES}/{frame_id}", headers=admin.auth), 200
                    )
                    if not (shown["online"] and shown["current_file_id"] == file_id):
                        return False
                return True

            await hub.until(twins_show_it)
            # A command the real frame carries out and confirms.
            other = await upload(hub, alice, album, seed=2)
            await frames.wait_for(displayed(other, ids[0]))
            sent = body_of(
                await hub.client.post(
                    f"{DEVICES}/{ids[0]}/commands",
                    json={"command": "show", "args": {"file_id": file_id}},
                    headers=admin.auth,
                ),
                202,
            )

            async def confirmed() -> bool:
                reply = await hub.client.get(
                    f"{DEVICES}/{ids[0]}/commands/{sent['command_id']}", headers=admin.auth
                )
                return bool(body_of(reply, 200)["state"] == "done")

            await hub.until(confirmed)
            assert any(
                e.get("command_id") == sent["command_id"] and e.get("file_id") == file_id
                for e in frames.events
            )


async def test_a_frame_that_was_off_shows_the_photo_when_it_is_back(tmp_path: Path) -> None:
    async with running_hub(tmp_path / "hub") as hub:
        admin, alice = await hub.new_user("admin", admin=True), await hub.new_user("alice")
        album = await new_album(hub, alice)
        async with simulate(hub, admin, tmp_path / "sim", 1) as frames:
            (frame_id,) = frames.frame_ids()
            await show_album(hub, admin, [frame_id], album)
            await frames.wait_for(lambda e: e["event"] == "synced" and e["sync_version"] >= 2)
        # The frame is off the wall now.
        file_id = await upload(hub, alice, album, seed=3)
        await hub.analysed()
        async with simulate(hub, admin, tmp_path / "sim", 1) as frames:
            assert frames.frame_ids() == [frame_id]  # the same frame, back
            await frames.wait_for(displayed(file_id, frame_id))


async def test_frames_converge_after_the_hub_restarts_and_mosquitto_dies(tmp_path: Path) -> None:
    ports = {"HTTP__PORT": str(free_port()), "MQTT__PORT": str(free_port())}
    async with running_hub(tmp_path / "hub", **ports) as hub:
        admin, alice = await hub.new_user("admin", admin=True), await hub.new_user("alice")
        album = await new_album(hub, alice)
        async with simulate(hub, admin, tmp_path / "sim", 2) as frames:
            ids = frames.frame_ids()
            await show_album(hub, admin, ids, album)
            first = await upload(hub, alice, album, seed=4)
            await frames.wait_for(displayed(first), 2)

            # Mosquitto killed: the hub's supervisor starts it again on the same port, the
            # frames and the hub reconnect, and an upload made meanwhile still arrives.
            broker: BrokerProcess = await hub.system.lookup("/infra/broker").ask(GetBrokerProcess())
            os.kill(broker.pid, signal.SIGKILL)
            second = await upload(hub, alice, album, seed=5)
            await frames.wait_for(displayed(second), 2)
            assert hub.system.snapshot("/infra/broker").restarts >= 1
    # The hub restarted on the same data directory: the same frames come back to it.
    async with (
        running_hub(tmp_path / "hub", **ports) as hub,
        simulate(hub, admin, tmp_path / "sim", 2) as frames,
    ):
        assert frames.frame_ids() == ids
        third = await upload(hub, alice, album, seed=6)
        await frames.wait_for(displayed(third), 2)
