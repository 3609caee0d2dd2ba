"""The managed Mosquitto broker: a real mosquitto started by its actor, real MQTT clients."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import stat
import subprocess
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from aiomqtt.exceptions import MqttConnectError

from actors.devices import FrameAccess, hash_password
from actors.mqtt import (
    HUB_USERNAME,
    BrokerAccess,
    BrokerAddress,
    BrokerProcess,
    GetBrokerAddress,
    GetBrokerProcess,
    InvalidFrameAccess,
    MosquittoBroker,
    SetFrameAccess,
    find_mosquitto,
)
from config import MqttSettings
from supervision import (
    ActorSystem,
    Backoff,
    ChildSpec,
    Intensity,
    SystemFailure,
    open_system,
    supervisor,
)
from tests.harness.mqtt import Client
from tests.harness.mqtt import connect as mqtt_connect

pytestmark = pytest.mark.skipif(
    shutil.which("mosquitto") is None,
    reason="mosquitto is not installed (apt-get install mosquitto)",
)

WAIT_S = 10.0
PATH = "/broker"


class ObservedBroker(MosquittoBroker):
    """Notes each started incarnation, so tests wait for a restart instead of polling."""

    def __init__(self, starts: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.starts = starts

    async def on_start(self) -> None:
        await super().on_start()
        if self.starts is not None:
            self.starts.add("started")


def broker_tree(
    settings: MqttSettings, data_dir: Path, starts: Any = None, **policy: Any
) -> ChildSpec[Any]:
    access = BrokerAccess()
    return supervisor(
        "root",
        [ChildSpec("broker", lambda: ObservedBroker(starts, settings, data_dir, access=access))],
        backoff=Backoff(min_s=0.05, max_s=0.2),
        **policy,
    )


@asynccontextmanager
async def running_broker(
    data_dir: Path, starts: Any = None
) -> AsyncIterator[tuple[ActorSystem, BrokerAddress]]:
    async with open_system(broker_tree(MqttSettings(port=0), data_dir, starts)) as system:
        address: BrokerAddress = await system.lookup(PATH).ask(GetBrokerAddress())
        yield system, address


def connect(
    system: ActorSystem, address: BrokerAddress, username: str | None, password: str | None
) -> AbstractAsyncContextManager[Client]:
    return mqtt_connect(system, address.host, address.port, username, password)


def hub(system: ActorSystem, address: BrokerAddress) -> Any:
    return connect(system, address, address.hub_username, address.hub_password)


REFUSED = {4, 5, 134, 135}
"""CONNACK codes: bad username or password / not authorised (MQTT 3.1.1 and 5)."""


async def assert_refused(
    system: ActorSystem, address: BrokerAddress, username: str | None, password: str | None
) -> None:
    with trio.fail_after(WAIT_S), pytest.raises(MqttConnectError) as refused:
        async with connect(system, address, username, password):
            pass
    code = refused.value.rc
    assert getattr(code, "value", code) in REFUSED


async def broker_process(system: ActorSystem) -> BrokerProcess:
    process: BrokerProcess = await system.lookup(PATH).ask(GetBrokerProcess())
    return process


A_PASSWORD = "secret-a"
B_PASSWORD = "secret-b"
A = FrameAccess(
    frame_id="A", username="frame-a", password_hash=hash_password(A_PASSWORD), album_ids=["X"]
)
B = FrameAccess(
    frame_id="B", username="frame-b", password_hash=hash_password(B_PASSWORD), album_ids=["Y"]
)


async def test_hub_user_works_and_strangers_are_refused(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as (system, address):
        assert address.hub_username == HUB_USERNAME
        assert address.port > 0
        async with hub(system, address) as one, hub(system, address) as other:
            await other.subscribe("hub/#")
            await one.publish("hub/availability", b"online", retain=True)
            await other.wait_for("hub/availability", b"online")

        await assert_refused(system, address, HUB_USERNAME, "wrong password")
        await assert_refused(system, address, None, None)

    directory = tmp_path / "mosquitto"
    config = (directory / "mosquitto.conf").read_text()
    assert "allow_anonymous false" in config.splitlines()
    assert f"listener {address.port} 127.0.0.1" in config
    assert stat.S_IMODE((directory / "hub.secret").stat().st_mode) == 0o600
    assert (directory / "hub.secret").read_text().strip() == address.hub_password
    assert int((directory / "port").read_text()) == address.port

    # A second start reuses the port and the hub's password; the retained message persisted.
    assert (directory / "mosquitto.db").exists()
    async with running_broker(tmp_path) as (system, again):
        assert (again.port, again.hub_password) == (address.port, address.hub_password)
        async with hub(system, again) as central:
            await central.subscribe("hub/#")
            await central.wait_for("hub/availability", b"online")


async def test_a_broker_that_cannot_listen_fails_with_its_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        settings = MqttSettings(port=taken.getsockname()[1])
        tree = broker_tree(settings, tmp_path, None, intensity=Intensity(max_restarts=0))
        with caplog.at_level(logging.ERROR), pytest.raises(SystemFailure):
            async with open_system(tree):
                pass
    crashes = [r.getMessage() for r in caplog.records if "crashed" in r.getMessage()]
    assert crashes and "BrokerUnavailable" in crashes[0]
    assert "Address already in use" in crashes[0]


async def test_frames_see_only_their_own_topics_and_albums(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as (system, address):
        pid = (await broker_process(system)).pid
        broker = system.lookup(PATH)
        await broker.ask(SetFrameAccess(frames=[A, B]))
        assert await broker_process(system) == BrokerProcess(pid=pid, port=address.port, frames=2)

        async with (
            hub(system, address) as central,
            connect(system, address, A.username, A_PASSWORD) as frame_a,
        ):
            await central.subscribe("frames/#")

            # A publishes under its own tree; its publish under B's is dropped.
            await frame_a.publish("frames/B/status", b"spoofed")
            await frame_a.publish("frames/A/status", b"displayed")
            await central.wait_for("frames/A/status", b"displayed")
            assert "frames/B/status" not in central.topics()

            # A receives its commands and its album, not B's tree or another album.
            for topic in ("frames/A/#", "albums/X/#", "frames/B/#", "albums/Y/#"):
                await frame_a.subscribe(topic)
            await central.publish("frames/B/command", b"for B")
            await central.publish("albums/Y/photo_added", b"not yours")
            await central.publish("frames/A/command", b"next")
            await central.publish("albums/X/photo_added", b"photo")
            await frame_a.wait_for("frames/A/command", b"next")
            await frame_a.wait_for("albums/X/photo_added", b"photo")
            assert frame_a.topics() == {"frames/A/command", "albums/X/photo_added"}

        # Removing B locks it out, by a reload: same process. Its open connection is dropped.
        async with connect(system, address, B.username, B_PASSWORD) as frame_b:
            await broker.ask(SetFrameAccess(frames=[A]))
            with trio.fail_after(WAIT_S):
                await frame_b.disconnected.wait()
        assert await broker_process(system) == BrokerProcess(pid=pid, port=address.port, frames=1)
        await assert_refused(system, address, B.username, B_PASSWORD)
        async with connect(system, address, A.username, A_PASSWORD):
            pass

        acl = (tmp_path / "mosquitto" / "acl").read_text()
        assert "frame-b" not in acl
        assert "topic read albums/X/#" in acl


async def test_invalid_access_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as (system, _):
        broker = system.lookup(PATH)
        await broker.ask(SetFrameAccess(frames=[A]))
        wildcard = FrameAccess(frame_id="#", username="frame-w", password_hash=A.password_hash)
        taken = FrameAccess(frame_id="C", username=HUB_USERNAME, password_hash=A.password_hash)
        for frames in ([wildcard], [taken], [A, A]):
            with pytest.raises(InvalidFrameAccess):
                await broker.ask(SetFrameAccess(frames=frames))
        assert (await broker_process(system)).frames == 1
        assert system.snapshot(PATH).restarts == 0


async def test_killed_broker_is_restarted_on_the_same_port(tmp_path: Path, events: Any) -> None:
    async with running_broker(tmp_path, events) as (system, address):
        await system.lookup(PATH).ask(SetFrameAccess(frames=[A]))
        before = await broker_process(system)
        os.kill(before.pid, signal.SIGKILL)

        await events.wait_count("started", 2)
        after = await broker_process(system)
        assert after.pid != before.pid
        assert after == BrokerProcess(pid=after.pid, port=before.port, frames=1)
        snapshot = system.snapshot(PATH)
        assert snapshot.restarts == 1
        assert snapshot.last_error is not None and "BrokerDied" in snapshot.last_error

        async with (
            hub(system, address) as central,
            connect(system, address, A.username, A_PASSWORD) as frame_a,
        ):
            await central.subscribe("frames/A/#")
            await frame_a.publish("frames/A/status", b"back")
            await central.wait_for("frames/A/status", b"back")


async def test_missing_binary_stops_start_up_with_the_install_command(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = MqttSettings(port=0, mosquitto_binary="/nonexistent/mosquitto")
    tree = broker_tree(settings, tmp_path, None, intensity=Intensity(max_restarts=0))
    with caplog.at_level(logging.ERROR), pytest.raises(SystemFailure):
        async with open_system(tree):
            pass
    crashes = [r.getMessage() for r in caplog.records if "crashed" in r.getMessage()]
    assert crashes and "apt-get install mosquitto" in crashes[0]
    assert "/nonexistent/mosquitto" in crashes[0]


async def test_a_broker_orphaned_by_a_killed_hub_is_replaced_and_keeps_its_messages(
    tmp_path: Path,
) -> None:
    async with running_broker(tmp_path) as (system, address):
        first = await broker_process(system)
        async with hub(system, address) as central:
            await central.publish("hub/availability", b"kept", qos=1, retain=True)
    # What a hub killed with SIGKILL leaves behind: its broker still running in a session of
    # its own, with the pid file in place. The tree stopped its broker cleanly above, so start
    # a stand-in orphan on the same config and record it as the pid file would.
    directory = tmp_path / "mosquitto"
    orphan = await trio.lowlevel.open_process(
        [find_mosquitto(MqttSettings()), "-c", str(directory / "mosquitto.conf")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        (directory / "mosquitto.pid").write_text(f"{orphan.pid}\n")
        with trio.fail_after(WAIT_S):  # serving (its persisted messages loaded)
            while True:
                try:
                    await (await trio.open_tcp_stream(address.host, address.port)).aclose()
                    break
                except OSError:
                    await trio.sleep(0.02)  # a starting process offers nothing to wait on
        assert first.pid != orphan.pid
        async with running_broker(tmp_path) as (system, again):
            assert orphan.poll() is not None  # stopped before the new broker started
            replacement = await broker_process(system)
            assert replacement.pid != orphan.pid and again.port == address.port
            async with hub(system, again) as central:
                await central.subscribe("hub/#")
                await central.wait_for("hub/availability", b"kept")
        assert not (directory / "mosquitto.pid").exists()
    finally:
        if orphan.poll() is None:
            orphan.kill()
        await orphan.wait()
