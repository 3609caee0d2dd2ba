"""The hub's side of the frames as a test plays a frame over MQTT: the syncs it received, the
heartbeats it sends, its device record over HTTP."""

from __future__ import annotations

from typing import Any

import msgspec

import wire
from tests.harness.hub import DEVICES, Frame, Hub, User
from tests.harness.mqtt import Client
from tests.harness.replies import body_of

_sync = msgspec.json.Decoder(wire.FrameSync).decode
_encode = msgspec.json.encode


async def new_album(hub: Hub, user: User, name: str = "Holidays") -> str:
    response = await hub.client.post("/api/v1/albums", json={"name": name}, headers=user.auth)
    album_id: str = body_of(response, 201)["album_id"]
    return album_id


async def device(hub: Hub, admin: User, frame: Frame) -> dict[str, Any]:
    reply: dict[str, Any] = body_of(
        await hub.client.get(f"{DEVICES}/{frame.device_id}", headers=admin.auth), 200
    )
    return reply


def syncs(client: Client, frame: Frame) -> list[wire.FrameSync]:
    topic = f"frames/{frame.device_id}/sync"
    return [_sync(p) for t, p, _ in client.received if t == topic and p]


async def wait_sync(client: Client, frame: Frame, check: Any) -> wire.FrameSync:
    def found(_: Any) -> wire.FrameSync | None:
        for sync in reversed(syncs(client, frame)):
            if check(sync):
                return sync
        return None

    sync: wire.FrameSync = await client.wait_until(found)
    return sync


def heartbeat(frame: Frame, **fields: Any) -> bytes:
    beat = {
        "frame_id": frame.device_id,
        "firmware_version": "1.2.3",
        "uptime_s": 5.0,
        "free_bytes": 10**10,
        "timestamp": "2026-11-22T10:00:00Z",
        "interval_s": 0.3,
        **fields,
    }
    return _encode(beat)
