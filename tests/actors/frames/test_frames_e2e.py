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
from pathlib import Path

from PIL import Image

from actors.mqtt import BrokerProcess, GetBrokerProcess
from tests.harness.hub import DEVICES, running_hub
from tests.harness.replies import body_of
from tests.harness.wall import displayed, new_album, show_album, simulate, upload


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


async def test_frames_converge_after_the_hub_restarts_and_mosquitto_dies(
    tmp_path: Path, free_port: Callable[[], int]
) -> None:
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
