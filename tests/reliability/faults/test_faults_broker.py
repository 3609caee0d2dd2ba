"""Mosquitto killed with SIGKILL mid-flow (managed mode): the hub's supervisor starts it again
on the same port, frames and the hub reconnect, and nothing that was acknowledged is lost.

Real parts only: the whole hub (``running_hub``), ``run.py simulate`` frames, the managed
broker, and a *probe*: a paired frame's MQTT identity that publishes numbered telemetry
samples with QoS 1, one at a time, and records which ones the broker acknowledged (PUBACK).
The probe reconnects 10 ms after a failure, so after a kill it is usually back before the
hub: it exercises the moments when the broker has acknowledged a sample that only it holds.

What "acknowledged" means, and what each check proves:

* an upload answered 201 (before, during or after a kill) is held by every frame whose
  albums have it: its ``state.json`` playlist and its photo cache, read from the simulated
  frame's own disk (a lost ``photo_added`` is healed by the sync a frame is sent when it is
  back online);
* a telemetry sample the broker acknowledged to a frame is a row of ``samples`` (the hub's
  session and subscriptions exist before any frame may connect to a restarted broker, and
  what the hub's client acknowledged stays in the bridge until its actor took it);
* a command the API accepted (202), even one sent while the broker was down, is carried out
  and confirmed (``done``): a killed broker forgets the frames' sessions and what it had
  acknowledged but not delivered, so the bridge sends recent commands again to each frame
  once it hears it, and the frame's proxy its pending ones;
* an OTA update command is not lost either, and a final OTA answer the broker acknowledged
  (it left the frame's outbox, ``boot.json``) is the campaign's record for that frame.

Kill moments are seeded (``--seed``): after the j-th upload of a burst and the k-th probe
sample after it; ``--long`` kills many more times.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import msgspec
import trio

import wire
from actors.mqtt import (
    BrokerAddress,
    BrokerProcess,
    GetBrokerAddress,
    GetBrokerProcess,
    GetMqttStats,
    MqttClient,
    MqttStats,
)
from frame_device import STATE_FILE, photo_path
from frame_device._firmware import BOOT_FILE, FIRMWARE_DIR, BootState
from frame_device._state import load_state
from supervision import ActorStopped, AskTimeout
from tests.harness.hub import DEVICES, Frame, Hub, User, running_hub
from tests.harness.ota import campaign, firmware, new_campaign
from tests.harness.photos import jpeg
from tests.harness.replies import body_of
from tests.harness.simulator import Simulator, simulate

BROKER = "/infra/broker"
MQTT = "/infra/mqtt"
FRAMES = 3
UPLOADS_PER_ROUND = 4
HUB_SETTINGS = {
    "FRAMES__HEARTBEAT_INTERVAL_S": "1",
    "FRAMES__COMMAND_TIMEOUT_S": "30",
    # A lost update command or final answer shows as a target that fails for want of progress.
    "OTA__PROGRESS_TIMEOUT_S": "30",
}
FRAME_OPTIONS = ("--no-render", "--health-check-s", "1")
MODEL = "sim-frame"  # what the simulator pairs its frames as, hardware version "1.0"
CONVERGE_S = 90.0
PROBE_METRIC = "probe"

_decode_boot = msgspec.json.Decoder(BootState).decode


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- the probe ---------------------------------------------------------------------------------


@dataclass
class Probe:
    """Numbered QoS 1 telemetry from one frame's identity; ``connections[i]`` lists the
    numbers the broker acknowledged on the i-th connection."""

    hub: Hub
    frame: Frame
    connections: list[list[int]] = field(default_factory=list)
    sent = 0
    stopping = False
    """Set to end ``run`` after the sample in flight (leaving the broker cleanly)."""
    _changed: trio.Event = field(default_factory=trio.Event)

    @property
    def acked(self) -> list[int]:
        return [number for connection in self.connections for number in connection]

    async def run(self) -> None:
        address: BrokerAddress = await self.hub.system.lookup(BROKER).ask(GetBrokerAddress())
        mqtt = self.frame.mqtt
        bridge = self.hub.system.asyncio

        async def make() -> aiomqtt.Client:
            return MqttClient(
                address.host,
                address.port,
                username=mqtt["username"],
                password=mqtt["password"],
                identifier=mqtt["client_id"],
                clean_session=False,
                timeout=1,
            )

        while not self.stopping:
            try:
                client = await bridge.run(make)
                async with bridge.context(client):
                    acked: list[int] = []
                    self.connections.append(acked)
                    while not self.stopping:
                        self.sent += 1
                        number = self.sent
                        payload = msgspec.json.encode(
                            wire.Telemetry(
                                frame_id=self.frame.device_id,
                                metrics={PROBE_METRIC: float(number)},
                                timestamp=_now(),
                            )
                        )
                        await bridge.run(
                            client.publish, f"frames/{self.frame.device_id}/telemetry", payload, 1
                        )
                        acked.append(number)
                        self._changed.set()
                        self._changed = trio.Event()
                        await trio.sleep(0.01)  # pacing, ~100 samples/s
            except* (aiomqtt.MqttError, OSError):
                pass
            await trio.sleep(0.01)  # then reconnect at once

    async def wait_acks(self, count: int, timeout: float = 30.0) -> None:
        """Wait until ``count`` more samples than now are acknowledged."""
        target = len(self.acked) + count
        with trio.fail_after(timeout):
            while len(self.acked) < target:
                await self._changed.wait()

    def at_risk(self) -> set[int]:
        """The last sample each ended connection had acknowledged (see the broker's window in
        ``test_broker_kills_lose_nothing_acknowledged``)."""
        return {connection[-1] for connection in self.connections[:-1] if connection}


async def stored_samples(hub: Hub, device_id: str) -> set[int]:
    rows = await hub.store.fetch_all(
        "SELECT value FROM samples JOIN series USING (series_id) "
        "WHERE device_id = ? AND metric = ?",
        (device_id, PROBE_METRIC),
    )
    return {int(row[0]) for row in rows}


# -- the hub and its frames --------------------------------------------------------------------


async def broker_pid(hub: Hub) -> int:
    process: BrokerProcess = await hub.system.lookup(BROKER).ask(GetBrokerProcess())
    return process.pid


async def bridge_connected(hub: Hub) -> bool:
    try:
        stats: MqttStats = await hub.system.lookup(MQTT).ask(GetMqttStats(), timeout=2)
    except (ActorStopped, AskTimeout):
        return False
    return stats.connected


async def kill_broker(hub: Hub) -> int:
    """SIGKILL the managed broker; its pid."""
    pid = await broker_pid(hub)
    os.kill(pid, signal.SIGKILL)
    return pid


async def broker_back(
    hub: Hub, killed_pid: int, killed_at: float, probe: Probe | None = None, connections: int = 0
) -> float:
    """Wait until a new broker runs and the hub is connected to it (and the probe, which had
    made ``connections`` when the broker was killed, too); the seconds since ``killed_at``."""

    async def back() -> bool:
        try:
            pid = await broker_pid(hub)
        except (ActorStopped, AskTimeout, AssertionError):
            return False
        probe_back = probe is None or (
            len(probe.connections) > connections and bool(probe.connections[-1])
        )
        return pid != killed_pid and probe_back and await bridge_connected(hub)

    await hub.until(back, 30.0)
    return time.monotonic() - killed_at


def frame_dir(frames: Simulator, frame_id: str) -> Path:
    return frames.data_dir / "frames" / frame_id


def holds(frames: Simulator, frame_id: str) -> set[str]:
    """The photos ``frame_id`` has in its playlist and in its cache (from its own disk)."""
    directory = frame_dir(frames, frame_id)
    state = load_state(directory / STATE_FILE)
    return {
        photo.file_id
        for photo in state.playlist()
        if photo.sha256 and photo_path(directory, photo.sha256).is_file()
    }


@asynccontextmanager
async def fleet(
    tmp_path: Path, **settings: str
) -> AsyncIterator[tuple[Hub, User, User, Simulator]]:
    """The hub, an admin, a member and ``FRAMES`` simulated frames (all connected)."""
    async with running_hub(tmp_path / "hub", **HUB_SETTINGS, **settings) as hub:
        admin, alice = await hub.new_user("admin", admin=True), await hub.new_user("alice")
        async with simulate(
            hub.address.base_url, admin.token, tmp_path / "sim", FRAMES, *FRAME_OPTIONS
        ) as frames:
            yield hub, admin, alice, frames


# -- the tests ---------------------------------------------------------------------------------


async def test_broker_kills_lose_nothing_acknowledged(
    tmp_path: Path, seed: int, long_run: bool
) -> None:
    """Uploads, telemetry and commands flow; the broker is killed ``kills`` times at seeded
    moments; then every 201 upload is on the frames whose albums hold it, every sample the
    broker acknowledged is stored, and every accepted command is done.

    One moment cannot be covered by the hub: the broker acknowledges a sample to its sender
    and is killed before it wrote the sample to the hub's connection. Mosquitto keeps
    messages in memory until it saves its persistence file (``autosave_interval``, or at a
    clean exit), and acknowledges before saving, so whatever it held then is gone: at most
    the last sample each killed connection had acknowledged (``Probe.at_risk``). The test
    accepts losses only among those, and reports them."""
    rng = random.Random(seed)
    kills = 8 if long_run else 2
    settings = {"RUNTIME__MAX_RESTARTS": str(kills + 5)} if long_run else {}
    async with fleet(tmp_path, **settings) as (hub, admin, alice, frames):
        ids = frames.frame_ids()
        albums = [await hub.new_album(alice, "Kitchen"), await hub.new_album(alice, "Garden")]
        shown = {ids[0]: [albums[0]], ids[1]: [albums[1]], ids[2]: albums}
        for frame_id, album_ids in shown.items():
            await hub.show_albums(admin, [frame_id], album_ids)
        probe = Probe(hub, await hub.pair_frame(admin, "Probe"))
        uploads: dict[str, str] = {}  # file_id: album_id
        commands: list[tuple[str, str]] = []  # (frame_id, command_id)
        recoveries: list[float] = []
        photo_seed = 0

        async def upload_one() -> None:
            nonlocal photo_seed
            photo_seed += 1
            album_id = rng.choice(albums)
            response = await hub.upload(
                alice,
                jpeg(640, 480, seed=seed * 1000 + photo_seed),
                metadata={"album_id": album_id},
            )
            uploads[body_of(response, 201)["file_id"]] = album_id

        async def command(frame_id: str) -> None:
            response = await hub.client.post(
                f"{DEVICES}/{frame_id}/commands", json={"command": "sync"}, headers=admin.auth
            )
            commands.append((frame_id, body_of(response, 202)["command_id"]))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(probe.run)
            await probe.wait_acks(20)
            for _ in range(kills):
                kill_after = rng.randrange(UPLOADS_PER_ROUND)
                extra_samples = rng.randrange(30)
                for _ in range(kill_after):
                    await upload_one()
                await command(rng.choice(ids))
                await probe.wait_acks(1 + extra_samples)
                connections, killed_at = len(probe.connections), time.monotonic()
                killed = await kill_broker(hub)
                # While it is down (and while it comes back): uploads and commands go on.
                await command(rng.choice(ids))
                for _ in range(UPLOADS_PER_ROUND - kill_after):
                    await upload_one()
                recoveries.append(await broker_back(hub, killed, killed_at, probe, connections))
                await probe.wait_acks(20)
            await upload_one()  # and after the last kill
            await command(rng.choice(ids))
            probe.stopping = True

        assert hub.system.snapshot(BROKER).restarts == kills
        acked = set(probe.acked)

        async def telemetry_stored() -> bool:
            return acked - probe.at_risk() <= await stored_samples(hub, probe.frame.device_id)

        await hub.until(telemetry_stored, CONVERGE_S)

        def expected(frame_id: str) -> set[str]:
            return {f for f, album_id in uploads.items() if album_id in shown[frame_id]}

        async def frames_hold_every_upload() -> bool:
            for frame_id in ids:
                held = await trio.to_thread.run_sync(holds, frames, frame_id)
                if not expected(frame_id) <= held:
                    return False
            return True

        await hub.until(frames_hold_every_upload, CONVERGE_S)

        async def commands_finished() -> bool:
            for frame_id, command_id in commands:
                reply = await hub.client.get(
                    f"{DEVICES}/{frame_id}/commands/{command_id}", headers=admin.auth
                )
                if body_of(reply, 200)["state"] == "pending":
                    return False
            return True

        await hub.until(commands_finished, CONVERGE_S)
        states = []
        for frame_id, command_id in commands:
            reply = await hub.client.get(
                f"{DEVICES}/{frame_id}/commands/{command_id}", headers=admin.auth
            )
            states.append(body_of(reply, 200)["state"])

        lost = acked - await stored_samples(hub, probe.frame.device_id)
        print(
            f"\nbroker kills: {kills}, back after {', '.join(f'{s:.2f}' for s in recoveries)} s; "
            f"uploads {len(uploads)}; samples acknowledged {len(acked)}, lost {sorted(lost)} "
            f"(at risk {sorted(probe.at_risk())}); commands {len(commands)}: {states}"
        )
        assert lost <= probe.at_risk(), (sorted(lost), sorted(probe.at_risk()))
        assert states == ["done"] * len(commands), list(zip(commands, states, strict=True))
        for frame_id in ids:
            assert expected(frame_id) <= holds(frames, frame_id), frame_id


def _final_answers(frames: Simulator, frame_id: str) -> tuple[dict[str, str], set[str]]:
    """A frame's final OTA answers by command id, and the ids still in its outbox (not yet
    acknowledged by the broker)."""
    path = frame_dir(frames, frame_id) / FIRMWARE_DIR / BOOT_FILE
    try:
        state = _decode_boot(path.read_bytes())
    except FileNotFoundError:
        return {}, set()
    answers = {a.command_id: a.state for a in state.answers if a.command_id}
    return answers, {a.command_id for a in state.outbox if a.command_id}


MOMENTS: dict[str, Callable[[dict[str, Any]], bool]] = {
    # right after the campaign started: its update commands are being published
    "issued": lambda event: True,
    # a frame is downloading the image
    "downloading": lambda event: event["event"] == "ota" and event["state"] == "downloading",
    # a frame sent its final answer
    "answered": lambda event: event["event"] == "ota" and event["state"] == "completed",
}


async def test_an_ota_campaign_keeps_its_acknowledged_answers_across_broker_kills(
    tmp_path: Path, seed: int, long_run: bool
) -> None:
    """A campaign to every frame; the broker is killed at a seeded moment of it (``--long``:
    each moment, one campaign each). Every final answer a frame got acknowledged is what the
    campaign records for it, and every target finishes ``completed``."""
    rng = random.Random(seed)
    moments = list(MOMENTS) if long_run else [rng.choice(list(MOMENTS))]
    async with fleet(tmp_path) as (hub, admin, _, frames):
        ids = frames.frame_ids()
        for number, moment in enumerate(moments, start=2):
            version = f"{number}.0.0"
            image = os.urandom(128 * 1024)
            fw = await firmware(
                hub, admin, image, version=version, model=MODEL, min_hw_version="1.0"
            )
            check = MOMENTS[moment]
            before = sum(1 for event in frames.events if check(event))
            made = await new_campaign(
                hub,
                admin,
                firmware_id=fw["firmware_id"],
                models=[MODEL],
                batch_size=FRAMES,
                start=True,
            )
            campaign_id = made["campaign_id"]
            if moment != "issued":
                await frames.wait_for(check, before + 1)
            killed = await kill_broker(hub)
            await broker_back(hub, killed, time.monotonic())

            async def finished(campaign_id: str = campaign_id) -> bool:
                view = await campaign(hub, admin, campaign_id)
                return all(
                    d["state"] in ("completed", "failed", "rolled_back") for d in view["devices"]
                )

            await hub.until(finished, CONVERGE_S)
            view = await campaign(hub, admin, campaign_id)
            recorded = {d["device_id"]: (d["state"], d.get("command_id")) for d in view["devices"]}
            errors = {d["device_id"]: (d["error"], d["attempts"]) for d in view["devices"]}
            for frame_id in ids:
                answers, unacknowledged = _final_answers(frames, frame_id)
                for command_id, state in answers.items():
                    if command_id in unacknowledged:
                        continue
                    hub_state, hub_command = recorded[frame_id]
                    if hub_command == command_id:
                        assert hub_state == state, (moment, frame_id, answers, recorded)
            print(f"\ncampaign {version}, broker killed when {moment!r}: {recorded}")
            assert {state for state, _ in recorded.values()} == {"completed"}, (moment, errors)
