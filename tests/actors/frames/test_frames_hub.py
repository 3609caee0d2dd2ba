"""The hub's side of the frames, over a real Mosquitto: the MQTT bridge, the frame proxies and
their twins, album assignment and commands.

Each test runs the whole hub (``running_hub``) with its managed broker and plays the frame
with a real MQTT client using the credentials the pairing showed, so the broker's ACL applies
to it as to a real frame. The frame program itself is exercised in ``test_frames_e2e``.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from io import BytesIO
from pathlib import Path

import msgspec
import pytest
from aiomqtt.exceptions import MqttConnectError
from PIL import Image

import wire
from actors import DATABASE_NAME
from actors.events import Audit, FrameCommandIssued, rfc3339
from actors.frames import FrameSeen, GetTwin
from actors.mqtt import BrokerAddress, GetBrokerAddress, GetMqttStats, MqttStats
from tests.harness.frames import device, heartbeat, new_album, wait_sync
from tests.harness.hub import DEVICES, Frame, Hub, running_hub
from tests.harness.mqtt import Client, connect
from tests.harness.photos import jpeg
from tests.harness.replies import body_of, problem

_sync = msgspec.json.Decoder(wire.FrameSync).decode
_command = msgspec.json.Decoder(wire.FrameCommand).decode
_encode = msgspec.json.encode


_command = msgspec.json.Decoder(wire.FrameCommand).decode


@asynccontextmanager
async def as_frame(hub: Hub, frame: Frame) -> AsyncIterator[Client]:
    """Connected with the frame's own credentials, subscribed to its own topics."""
    mqtt = frame.mqtt
    async with connect(
        hub.system,
        mqtt["host"],
        mqtt["port"],
        mqtt["username"],
        mqtt["password"],
        identifier=mqtt["client_id"],
    ) as client:
        await client.subscribe(f"frames/{frame.device_id}/#", 2)
        yield client


async def hub_address(hub: Hub) -> BrokerAddress:
    address: BrokerAddress = await hub.system.lookup("/infra/broker").ask(GetBrokerAddress())
    return address


async def test_a_frame_gets_its_albums_photos_with_their_versions(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        admin, alice = await hub.new_user("admin", admin=True), await hub.new_user("alice")
        album = await new_album(hub, alice)
        frame = await hub.pair_frame(admin, width=640, height=400)
        async with as_frame(hub, frame) as client:
            problem(
                await hub.client.put(
                    f"{DEVICES}/{frame.device_id}/albums",
                    json={"album_ids": ["0" * 32]},
                    headers=admin.auth,
                ),
                404,
            )
            shown = body_of(
                await hub.client.put(
                    f"{DEVICES}/{frame.device_id}/albums",
                    json={"album_ids": [album]},
                    headers=admin.auth,
                ),
                200,
            )
            assert shown["album_ids"] == [album]
            first = await wait_sync(client, frame, lambda s: s.album_ids == [album])
            assert (first.photos, first.panel_width, first.panel_height) == ([], 640, 400)
            # Now allowed by the broker's ACL: the album's live updates.
            granted = await client.subscribe(f"albums/{album}/#")
            assert granted[0] in (0, 1) or getattr(granted[0], "value", 128) < 128

            upload = await hub.upload(alice, jpeg(1600, 1200, seed=3), metadata={"album_id": album})
            file_id = body_of(upload, 201)["file_id"]
            added = msgspec.json.decode(
                await client.next_on(f"albums/{album}/photo_added"), type=wire.PhotoAdded
            )
            assert (added.album_id, added.file_id) == (album, file_id)
            assert added.media_service_url == f"{hub.address.base_url}/api/v1/photos/{file_id}"
            assert added.photo_metadata.file_name == "photo.jpg"
            assert added.photo_metadata.content_type == "image/jpeg"

            sync = await wait_sync(client, frame, lambda s: s.total_photos == 1)
            assert sync.version > first.version
            (photo,) = sync.photos
            assert (photo.file_id, photo.album_id) == (file_id, album)
            response = await hub.client.get(photo.url, headers=frame.auth)
            assert response.status_code == 200
            assert hashlib.sha256(response.content).hexdigest() == photo.sha256
            assert Image.open(BytesIO(response.content)).size == (640, 400)

            deleted = await hub.client.delete(f"/api/v1/files/{file_id}", headers=alice.auth)
            assert deleted.status_code == 204
            removed = msgspec.json.decode(
                await client.next_on(f"albums/{album}/photo_removed"), type=wire.PhotoRemoved
            )
            assert removed.file_id == file_id
            emptied = await wait_sync(client, frame, lambda s: s.version > sync.version)
            assert emptied.photos == []


async def test_the_twin_follows_availability_heartbeats_and_silence(tmp_path: Path) -> None:
    settings = {"FRAMES__HEARTBEAT_INTERVAL_S": "0.3", "FRAMES__OFFLINE_AFTER_MISSED": "2"}
    async with running_hub(tmp_path, **settings) as hub:
        admin = await hub.new_user("admin", admin=True)
        frame = await hub.pair_frame(admin)
        assert (await device(hub, admin, frame))["online"] is False
        async with as_frame(hub, frame) as client:
            sync = await wait_sync(client, frame, lambda s: True)
            topic = f"frames/{frame.device_id}"
            await client.publish(f"{topic}/availability", b"online", retain=True)

            async def online() -> bool:
                return bool((await device(hub, admin, frame))["online"])

            await hub.until(online)
            beat = heartbeat(frame, sync_version=sync.version, current_file_id="f1")
            await client.publish(f"{topic}/heartbeat", beat, qos=0, retain=True)

            async def in_sync() -> bool:
                shown = await device(hub, admin, frame)
                return bool(shown["in_sync"]) and shown["firmware_version"] == "1.2.3"

            await hub.until(in_sync)
            shown = await device(hub, admin, frame)
            assert shown["current_file_id"] == "f1"
            assert shown["reported"]["free_bytes"] == 10**10
            assert 0 < shown["health_score"] <= 100

            # Silence: two intervals without a heartbeat make the frame offline.
            async def offline() -> bool:
                return not await online()

            await hub.until(offline)
            # The last going offline was the silence (on a loaded machine the heartbeat may
            # come late enough for an earlier silence and return too).
            went = (await hub.events("device.offline"))[-1]
            assert "no heartbeat" in went.reason
            returns = len(await hub.events("device.online"))
            # Back: the proxy sends the sync again.
            seen = len(client.received)
            await client.publish(f"{topic}/availability", b"online", retain=True)
            await client.next_on(f"{topic}/sync", after=seen)
            await hub.until(online)
            await client.publish(f"{topic}/availability", b"offline", retain=True)
            await hub.until(offline)
            reasons = [e.reason for e in await hub.events("device.offline")]
            assert reasons[-1] == "the frame's connection ended"
            assert len(await hub.events("device.online")) == returns + 1


async def test_commands_are_confirmed_by_the_frame_or_time_out(tmp_path: Path) -> None:
    async with running_hub(tmp_path, FRAMES__COMMAND_TIMEOUT_S="1") as hub:
        admin, member = await hub.new_user("admin", admin=True), await hub.new_user("bob")
        frame = await hub.pair_frame(admin)
        commands = f"{DEVICES}/{frame.device_id}/commands"
        async with as_frame(hub, frame) as client:
            await wait_sync(client, frame, lambda s: True)
            response = await hub.client.post(commands, json={"command": "next"}, headers=admin.auth)
            sent = body_of(response, 202)
            assert (sent["command"], sent["state"]) == ("next", "pending")
            assert response.headers["location"] == f"{commands}/{sent['command_id']}"
            received = _command(await client.next_on(f"frames/{frame.device_id}/command"))
            assert (received.command_id, received.command) == (sent["command_id"], "next")
            status = {
                "frame_id": frame.device_id,
                "status": "displayed",
                "file_id": "f2",
                "command_id": sent["command_id"],
                "timestamp": "2026-11-22T10:00:00Z",
            }
            await client.publish(f"frames/{frame.device_id}/status", _encode(status), qos=0)

            async def state_of(command_id: str) -> str:
                reply = await hub.client.get(f"{commands}/{command_id}", headers=admin.auth)
                return str(body_of(reply, 200)["state"])

            async def done() -> bool:
                return await state_of(sent["command_id"]) == "done"

            await hub.until(done)
            assert (await device(hub, admin, frame))["current_file_id"] == "f2"

            # The frame never answers this one.
            ignored = body_of(
                await hub.client.post(commands, json={"command": "restart"}, headers=admin.auth),
                202,
            )

            async def timed_out() -> bool:
                return await state_of(ignored["command_id"]) == "timed_out"

            await hub.until(timed_out)
            finished = {e.command_id: e.outcome for e in await hub.events("frame.command_finished")}
            assert finished == {sent["command_id"]: "done", ignored["command_id"]: "timed_out"}

        for wrong, status_code in (
            ({"command": "explode"}, 422),
            ({"command": "show"}, 422),
            ({"command": "show", "args": {"file_id": "nope"}}, 404),
            ({"command": "next", "args": {"file_id": "x"}}, 422),
            ({"command": "next", "args": {"volume": 11}}, 422),
            ({"command": 7}, 422),
        ):
            problem(await hub.client.post(commands, json=wrong, headers=admin.auth), status_code)
        problem(await hub.client.post(commands, json={"command": "next"}, headers=member.auth), 403)
        unknown = f"{DEVICES}/{'0' * 32}/commands"
        problem(await hub.client.post(unknown, json={"command": "next"}, headers=admin.auth), 404)
        problem(await hub.client.get(f"{commands}/{'1' * 32}", headers=admin.auth), 404)


async def test_bad_frame_messages_are_dropped_and_counted(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        admin = await hub.new_user("admin", admin=True)
        frame = await hub.pair_frame(admin)
        topic = f"frames/{frame.device_id}"
        async with as_frame(hub, frame) as client:
            await wait_sync(client, frame, lambda s: True)
            for leaf, payload in (
                ("status", b"{not json"),
                ("status", b"\xff\xfe\x00"),
                ("heartbeat", _encode({"frame_id": frame.device_id, "uptime_s": "long"})),
                ("telemetry", _encode({"frame_id": frame.device_id, "metrics": {"t": "hot"}})),
                ("availability", b"maybe"),
                ("status", b"[" * 5000 + b"]" * 5000),
                ("heartbeat", b"x" * (wire.MAX_PAYLOAD_BYTES + 1)),
                ("heartbeat", heartbeat(frame, frame_id="someone-else")),
                ("unknown-leaf", b"{}"),
            ):
                await client.publish(f"{topic}/{leaf}", payload, qos=1)
            address = await hub_address(hub)
            async with connect(
                hub.system, address.host, address.port, address.hub_username, address.hub_password
            ) as central:
                stranger = "f" * 32
                await central.publish(
                    f"frames/{stranger}/heartbeat", heartbeat(frame, frame_id=stranger), qos=1
                )
                await central.publish("frames/x/y/z", b"{}", qos=1)

            # Still healthy: a good heartbeat after the garbage is applied.
            await client.publish(f"{topic}/heartbeat", heartbeat(frame, current_file_id="ok"))

            async def applied() -> bool:
                return (await device(hub, admin, frame))["current_file_id"] == "ok"

            await hub.until(applied)
        stats: MqttStats = await hub.refs.mqtt.ask(GetMqttStats())
        assert stats.connected
        assert stats.dropped.get("malformed") == 6
        assert stats.dropped.get("oversized") == 1
        assert stats.dropped.get("wrong_frame") == 1
        assert stats.dropped.get("unknown_frame") == 1
        for path in ("/infra/mqtt", f"/frames/{frame.device_id}"):
            assert hub.system.snapshot(path).restarts == 0
        metrics = await hub.client.get("/metrics", headers=admin.auth)
        assert metrics.status_code == 200
        assert 'framehub_mqtt_dropped_total{reason="malformed"} 6\n' in metrics.text
        assert "framehub_mqtt_connected 1\n" in metrics.text
        assert (await hub.client.get("/metrics")).status_code == 401
        assert (await hub.client.get("/readyz")).status_code == 200


async def test_a_deleted_frame_is_locked_out_and_forgotten_by_the_broker(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        admin = await hub.new_user("admin", admin=True)
        frame, other = await hub.pair_frame(admin), await hub.pair_frame(admin, "Kitchen")
        async with as_frame(hub, frame) as client:
            await wait_sync(client, frame, lambda s: True)
            # Another frame's topics are out of reach: the broker delivers nothing of them
            # (not even the other frame's retained sync), while the frame's own marker,
            # published after the subscription, arrives.
            await client.subscribe(f"frames/{other.device_id}/#")
            marker = f"frames/{frame.device_id}/marker"
            await client.publish(marker, b"m", qos=1)
            await client.next_on(marker)
            assert [t for t, _, _ in client.received if other.device_id in t] == []
            deleted = await hub.client.delete(f"{DEVICES}/{frame.device_id}", headers=admin.auth)
            assert deleted.status_code == 204
            await client.wait_until(lambda _: client.disconnected.is_set())
        with pytest.raises(MqttConnectError):
            async with as_frame(hub, frame):
                pass
        # Its retained sync is cleared: a subscriber gets only the marker retained after it.
        address = await hub_address(hub)
        async with connect(
            hub.system, address.host, address.port, address.hub_username, address.hub_password
        ) as central:
            marker = f"tests/{frame.device_id}/marker"
            await central.publish(marker, b"m", retain=True)
            await central.subscribe(f"frames/{frame.device_id}/sync")
            await central.subscribe(marker)
            await central.next_on(marker)
            assert [t for t, _, _ in central.received if t.endswith("/sync")] == []
        stats: MqttStats = await hub.refs.mqtt.ask(GetMqttStats())
        assert stats.dropped.get("unknown_frame", 0) == 0


async def test_a_burst_of_commands_reaches_the_frame_whole(tmp_path: Path) -> None:
    """60 QoS 2 commands committed at once: the bridge publishes them as one batch, and every
    one arrives. (Mosquitto acknowledges and then drops QoS 2 publishes past its receive
    maximum of 20 in flight, so a bridge that pipelines more loses commands silently.)"""
    async with running_hub(tmp_path) as hub:
        admin = await hub.new_user(admin=True)
        frame = await hub.pair_frame(admin, "Hall")
        async with as_frame(hub, frame) as client:
            topic = wire.frame_topic(frame.device_id, "command")
            command_ids = [f"burst-{n:02d}" for n in range(60)]
            async with hub.store.transaction() as tx:
                for command_id in command_ids:
                    tx.publish(
                        FrameCommandIssued(
                            audit=Audit.system("test"),
                            frame_id=frame.device_id,
                            command_id=command_id,
                            command="next",
                        )
                    )

            def arrived(received: list[tuple[str, bytes, bool]]) -> set[str] | None:
                ids = {_command(p).command_id for t, p, _ in received if t == topic}
                return ids if ids >= set(command_ids) else None

            assert await client.wait_until(arrived) == set(command_ids)


async def test_sightings_are_written_together_and_never_move_last_seen_back(
    tmp_path: Path,
) -> None:
    """A heartbeat that changes nothing else is a sighting: the fleet writes the newest of
    each frame's with every other frame's (here when the hub stops, long before its window
    ends), and a sighting older than what the table holds changes nothing."""
    async with running_hub(tmp_path) as hub:
        admin = await hub.new_user("admin", admin=True)
        frames = [await hub.pair_frame(admin), await hub.pair_frame(admin)]
        written: dict[str, tuple[str, int]] = {}

        async def stored(frame: Frame) -> tuple[str, int]:
            row = await hub.store.fetch_one(
                "SELECT last_seen, free_bytes FROM frame_twins WHERE frame_id = ?",
                (frame.device_id,),
            )
            assert row is not None
            return row[0], row[1]

        async def twin_seen(frame: Frame) -> str:
            proxy = hub.refs.frames.find(frame.device_id)
            assert proxy is not None
            last_seen = (await proxy.ask(GetTwin())).last_seen
            assert last_seen is not None
            return last_seen

        for frame in frames:
            async with as_frame(hub, frame) as client:
                sync = await wait_sync(client, frame, lambda s: True)
                topic = f"frames/{frame.device_id}"
                await client.publish(f"{topic}/availability", b"online", retain=True)
                beat = heartbeat(frame, sync_version=sync.version)
                await client.publish(f"{topic}/heartbeat", beat, qos=1)

                async def firmware_written(frame: Frame = frame) -> bool:
                    row = await hub.store.fetch_one(
                        "SELECT firmware_version FROM frame_twins WHERE frame_id = ?",
                        (frame.device_id,),
                    )
                    return row is not None and row[0] == "1.2.3"

                await hub.until(firmware_written)
                first = await stored(frame)
                assert first == (await twin_seen(frame), 10**10)
                if frame is frames[0]:
                    beat = heartbeat(
                        frame,
                        sync_version=sync.version,
                        free_bytes=9 * 10**9,
                        timestamp=rfc3339(time.time()),
                    )
                    await client.publish(f"{topic}/heartbeat", beat, qos=1)

                    # The bridge hands a heartbeat to the proxy before its samples to
                    # telemetry: once they are stored, the proxy's mailbox holds it.
                    async def sampled(frame: Frame = frame) -> bool:
                        row = await hub.store.fetch_one(
                            "SELECT count(*) FROM samples JOIN series USING (series_id) "
                            "WHERE device_id = ? AND metric = 'free_bytes' AND value = ?",
                            (frame.device_id, 9e9),
                        )
                        return row is not None and row[0] > 0

                    await hub.until(sampled)
                    assert await twin_seen(frame) > first[0]
                    written[frame.device_id] = (await twin_seen(frame), 9 * 10**9)
                    assert await stored(frame) == first  # waiting for the others'
                else:
                    stale = FrameSeen(
                        frame_id=frame.device_id,
                        last_seen="2000-01-01T00:00:00.000Z",
                        free_bytes=1,
                    )
                    await hub.refs.fleet.tell(stale)
                    written[frame.device_id] = first
    with sqlite3.connect(tmp_path / DATABASE_NAME) as db:
        rows = db.execute("SELECT frame_id, last_seen, free_bytes FROM frame_twins").fetchall()
    assert {frame_id: (seen, free) for frame_id, seen, free in rows} == written
