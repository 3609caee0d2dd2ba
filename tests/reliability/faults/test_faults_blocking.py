"""A blocked subscriber or a wedged frame never stalls the rest: the whole hub, simulated
frames, real sockets.

Blocked subscribers: a console that stops reading (subscribed to the events and the
notifications streams, so it is a notifications feed subscriber too), an HTTP client that
starts downloading a large original and stops reading (holding its connection), and an MQTT
client with a frame's credentials that subscribes with QoS 2 and never reads its socket again
(never acknowledging anything). Meanwhile another console gets every event and notification
and the frames show every upload, within generous timeouts, while the blocked parties are
still blocked; no actor's mailbox piles up.

A wedged frame: a frame process stopped with SIGSTOP. The other frames keep converging, a
command to the stopped frame times out cleanly (and one to a live frame is done), no mailbox
piles up; after SIGCONT the stopped frame converges too.

``tests/test_console.py`` and ``tests/test_notifier_feed.py`` cover how the console and the
feed cut off a slow reader; these tests are about everybody else.
"""

from __future__ import annotations

import random
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from actors.mqtt import BrokerAddress, GetBrokerAddress, GetMqttStats, MqttStats
from tests.harness.console import console, receive_until, send, stalled_console, stats_until
from tests.harness.faults.blocking import MailboxWatch, held_download, silent_subscriber
from tests.harness.faults.storage import frame_holds, unwell
from tests.harness.hub import DEVICES, running_hub
from tests.harness.ota import firmware, new_campaign
from tests.harness.photos import jpeg, padded_jpeg
from tests.harness.replies import body_of
from tests.harness.simulator import simulate

WAIT_S = 30.0
MAILBOX_BOUND = 100
"""Deepest mailbox allowed while a party is blocked (the capacity is 1,000)."""
BIG_BYTES = 24 * 1024 * 1024
"""A download larger than the loopback socket buffers, so a reader that stops blocks it."""
MODEL = "sim-frame"


def displayed(file_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda event: event["event"] == "displayed" and event.get("file_id") == file_id


async def test_blocked_subscribers_hold_up_nobody(
    tmp_path: Path, seed: int, long_run: bool
) -> None:
    rng = random.Random(seed)
    uploads = rng.randint(6, 10) if long_run else rng.randint(3, 4)
    async with running_hub(
        tmp_path / "hub", CONSOLE__SEND_QUEUE="16", FRAMES__HEARTBEAT_INTERVAL_S="1"
    ) as hub:
        admin, alice = await hub.new_user("root", admin=True), await hub.new_user("alice")
        album = await hub.new_album(alice, "Wall")
        big = body_of(await hub.upload(alice, padded_jpeg(BIG_BYTES, seed=seed)))["file_id"]
        ghost = await hub.pair_frame(admin, "Ghost")
        address: BrokerAddress = await hub.system.lookup("/infra/broker").ask(GetBrokerAddress())
        watch = MailboxWatch(hub.system)
        async with (
            simulate(
                hub.address.base_url, admin.token, tmp_path / "sim", 2, "--no-render"
            ) as frames,
            trio.open_nursery() as nursery,
        ):
            ids = frames.frame_ids()
            await hub.show_albums(admin, [*ids, ghost.device_id], [album])
            nursery.start_soon(watch.run)
            mqtt = ghost.mqtt
            async with (
                stalled_console(hub, admin) as stalled,
                console(hub, admin) as reading,
                held_download(
                    hub.address.port, f"/api/v1/files/download/{big}", alice.token
                ) as head,
                silent_subscriber(
                    address.host,
                    address.port,
                    mqtt["username"],
                    mqtt["password"],
                    mqtt["client_id"],
                    [f"frames/{ghost.device_id}/#", f"albums/{album}/#"],
                ),
            ):
                assert head.startswith(b"HTTP/1.1 200"), head[:200]
                # The tree stream's snapshots (four a second) fill the stalled one's socket.
                streams = ["events", "notifications"]
                await send(stalled, {"type": "subscribe", "streams": [*streams, "tree"]})
                await send(reading, {"type": "subscribe", "streams": streams})
                for number in range(uploads):
                    photo = jpeg(640, 480, seed=seed * 100 + number)
                    response = await hub.upload(alice, photo, metadata={"album_id": album})
                    file_id = body_of(response)["file_id"]
                    with trio.fail_after(WAIT_S):
                        await receive_until(
                            reading,
                            lambda m, f=file_id: (
                                m["type"] == "event"
                                and m["name"] == "file.uploaded.with_ai"
                                and m["event"]["file_id"] == f
                            ),
                        )
                    await frames.wait_for(displayed(file_id), len(ids), WAIT_S)
                # A notification reaches the reading console past the stalled feed subscriber.
                image = rng.randbytes(64 * 1024)
                fw = await firmware(hub, admin, image, model=MODEL, min_hw_version="1.0")
                made = await new_campaign(
                    hub, admin, firmware_id=fw["firmware_id"], models=[MODEL], batch_size=2
                )
                message = await receive_until(reading, lambda m: m["type"] == "notification")
                assert made["campaign_id"] in str(message["notification"]), message
                # The held download is still held, the hub still answers at once.
                with trio.fail_after(5):
                    assert (await hub.client.get("/readyz")).status_code == 200
                stats: MqttStats = await hub.system.lookup("/infra/mqtt").ask(GetMqttStats())
                assert stats.connected
                # The stalled console was really stalled: the console cut it off.
                await stats_until(hub, lambda stats: stats.slow_disconnects >= 1)
            nursery.cancel_scope.cancel()
        path, depth = watch.worst()
        assert depth < MAILBOX_BOUND, (path, depth)
        assert unwell(hub.system.snapshot()) == []
        print(f"\n{uploads} uploads past blocked parties; deepest mailbox {path}: {depth}")


async def test_a_wedged_frame_stalls_nobody_and_converges_when_it_wakes(
    tmp_path: Path, seed: int, long_run: bool
) -> None:
    rng = random.Random(seed)
    uploads = rng.randint(4, 6) if long_run else 2
    async with running_hub(
        tmp_path / "hub", FRAMES__HEARTBEAT_INTERVAL_S="1", FRAMES__COMMAND_TIMEOUT_S="3"
    ) as hub:
        admin, alice = await hub.new_user("root", admin=True), await hub.new_user("alice")
        album = await hub.new_album(alice, "Wall")
        watch = MailboxWatch(hub.system)
        base = hub.address.base_url
        async with (
            simulate(base, admin.token, tmp_path / "live", 2, "--no-render") as live,
            simulate(base, admin.token, tmp_path / "wedged", 1, "--no-render") as wedged,
            trio.open_nursery() as nursery,
        ):
            live_ids, (wedged_id,) = live.frame_ids(), wedged.frame_ids()
            await hub.show_albums(admin, [*live_ids, wedged_id], [album])
            await wedged.wait_for(lambda e: e["event"] == "synced" and e["sync_version"] >= 2)
            nursery.start_soon(watch.run)
            wedged.process.send_signal(signal.SIGSTOP)
            try:
                expected: set[str] = set()
                commands: dict[str, str] = {}
                for number in range(uploads):
                    photo = jpeg(640, 480, seed=seed * 100 + number)
                    response = await hub.upload(alice, photo, metadata={"album_id": album})
                    file_id = body_of(response)["file_id"]
                    expected.add(file_id)
                    await live.wait_for(displayed(file_id), len(live_ids), WAIT_S)
                for frame_id in (rng.choice(live_ids), wedged_id):
                    sent = await hub.client.post(
                        f"{DEVICES}/{frame_id}/commands",
                        json={"command": "next"},
                        headers=admin.auth,
                    )
                    commands[frame_id] = body_of(sent, 202)["command_id"]

                async def finished() -> bool:
                    for frame_id, command_id in commands.items():
                        reply = await hub.client.get(
                            f"{DEVICES}/{frame_id}/commands/{command_id}", headers=admin.auth
                        )
                        if body_of(reply, 200)["state"] == "pending":
                            return False
                    return True

                await hub.until(finished, WAIT_S)
                states = {}
                for frame_id, command_id in commands.items():
                    reply = await hub.client.get(
                        f"{DEVICES}/{frame_id}/commands/{command_id}", headers=admin.auth
                    )
                    states[frame_id] = body_of(reply, 200)
                assert states[wedged_id]["state"] == "timed_out", states
                assert [s["state"] for f, s in states.items() if f != wedged_id] == ["done"]
                # Stopped before any of them came: it holds none yet.
                assert not expected & frame_holds(wedged.data_dir, wedged_id)
            finally:
                wedged.process.send_signal(signal.SIGCONT)

            async def everyone_holds_everything() -> bool:
                for sim, frame_ids in ((live, live_ids), (wedged, [wedged_id])):
                    for frame_id in frame_ids:
                        holds = await trio.to_thread.run_sync(frame_holds, sim.data_dir, frame_id)
                        if not expected <= holds:
                            return False
                return True

            await hub.until(everyone_holds_everything, WAIT_S)
            nursery.cancel_scope.cancel()
        path, depth = watch.worst()
        assert depth < MAILBOX_BOUND, (path, depth)
        assert unwell(hub.system.snapshot()) == []
        outcome = {frame_id: view["state"] for frame_id, view in states.items()}
        print(f"\nwedged frame: {uploads} uploads, commands {outcome}; deepest {path}: {depth}")
