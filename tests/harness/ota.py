"""OTA over the real hub: firmware uploads, campaigns steered over HTTP, and scripted frames
that take firmware commands on ``frames/<id>/command`` and answer on ``frames/<id>/ota``
with the frame's own MQTT credentials (so the broker's ACL applies as to a real frame)."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

import wire
from actors.mqtt import BrokerAddress, GetBrokerAddress
from tests.harness.hub import DEVICES, Frame, Hub, User
from tests.harness.mqtt import Client, connect
from tests.harness.replies import Caller, body_of

FIRMWARE = "/api/v1/firmware"
CAMPAIGNS = "/api/v1/campaigns"

_command = msgspec.json.Decoder(wire.FrameCommand).decode
_encode = msgspec.json.encode


@dataclass(frozen=True)
class KeyedFrame(Frame):
    """A paired frame with the hub's public signing key its pairing showed."""

    public_key: str = ""
    model: str = ""
    hw_version: str = ""


async def pair(
    hub: Hub, admin: User, name: str, *, model: str = "FH-10", hw_version: str = "rev2"
) -> KeyedFrame:
    response = await hub.client.post(
        DEVICES,
        json={
            "name": name,
            "model": model,
            "hw_version": hw_version,
            "width": 1024,
            "height": 600,
            "orientation": "landscape",
        },
        headers=admin.auth,
    )
    paired = body_of(response, 201)
    return KeyedFrame(
        paired["device_id"],
        paired["name"],
        paired["token"],
        paired["mqtt"],
        public_key=paired["public_key"],
        model=model,
        hw_version=hw_version,
    )


def image(size: int = 64 * 1024) -> bytes:
    """Firmware bytes: random, so every image has its own SHA-256."""
    return os.urandom(size)


async def upload_firmware(
    hub: Hub,
    caller: Caller,
    data: bytes,
    *,
    version: str | None = "2.0.0",
    model: str | None = "FH-10",
    min_hw_version: str | None = "rev2",
    notes: str | None = None,
) -> httpx.Response:
    fields = {
        name: value
        for name, value in (
            ("version", version),
            ("model", model),
            ("min_hw_version", min_hw_version),
            ("notes", notes),
        )
        if value is not None
    }
    return await hub.client.post(
        FIRMWARE,
        headers=caller.auth,
        files={"file": ("fh10.bin", data, "application/octet-stream")},
        data=fields,
    )


async def firmware(hub: Hub, admin: User, data: bytes, **fields: Any) -> dict[str, Any]:
    """Uploaded, 201 checked: the firmware record."""
    return body_of(await upload_firmware(hub, admin, data, **fields), 201)


async def new_campaign(hub: Hub, admin: User, **body: Any) -> dict[str, Any]:
    body.setdefault("name", "rollout")
    return body_of(await hub.client.post(CAMPAIGNS, json=body, headers=admin.auth), 201)


async def campaign(hub: Hub, admin: User, campaign_id: str) -> dict[str, Any]:
    return body_of(await hub.client.get(f"{CAMPAIGNS}/{campaign_id}", headers=admin.auth), 200)


async def act(hub: Hub, admin: User, campaign_id: str, action: str) -> httpx.Response:
    return await hub.client.post(f"{CAMPAIGNS}/{campaign_id}/{action}", headers=admin.auth)


def states(view: dict[str, Any]) -> dict[str, str]:
    """Each target's state, by device id."""
    return {d["device_id"]: d["state"] for d in view["devices"]}


async def until_campaign(
    hub: Hub,
    admin: User,
    campaign_id: str,
    check: Callable[[dict[str, Any]], bool],
    timeout: float = 20.0,
) -> dict[str, Any]:
    """Wait until the campaign's view satisfies ``check``; return that view."""
    seen: list[dict[str, Any]] = []

    async def holds() -> bool:
        view = await campaign(hub, admin, campaign_id)
        seen[:] = [view]
        return check(view)

    await hub.until(holds, timeout)
    return seen[0]


def verifies(public_key: str, frame_id: str, command: wire.FrameCommand) -> bool:
    """The command's signature checks out with the hub's key, as a frame checks it."""
    if command.args.signature is None:
        return False
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key))
    message = wire.signed_command_bytes(frame_id, command.command_id, command.command, command.args)
    try:
        key.verify(base64.b64decode(command.args.signature), message)
    except InvalidSignature:
        return False
    return True


class ScriptedFrame:
    """A frame played by the test: it records its commands and reports what it is told to."""

    def __init__(self, frame: KeyedFrame, client: Client) -> None:
        self.frame = frame
        self.client = client
        self.topic = f"frames/{frame.device_id}"

    @property
    def device_id(self) -> str:
        return self.frame.device_id

    def commands(self) -> list[wire.FrameCommand]:
        topic = f"{self.topic}/command"
        return [_command(p) for t, p, _ in self.client.received if t == topic]

    async def command(self, index: int = 0, timeout: float = 20.0) -> wire.FrameCommand:
        """The ``index``-th command received (waiting for it)."""

        def found(_: Any) -> wire.FrameCommand | None:
            commands = self.commands()
            return commands[index] if len(commands) > index else None

        command: wire.FrameCommand = await self.client.wait_until(found, timeout)
        return command

    async def report(
        self,
        command: wire.FrameCommand,
        state: wire.OtaState,
        *,
        progress: float | None = None,
        error: str | None = None,
        version: str | None = None,
    ) -> None:
        report = wire.OtaProgress(
            frame_id=self.device_id,
            state=state,
            timestamp="2026-11-22T10:00:00Z",
            campaign_id=command.args.campaign_id,
            command_id=command.command_id,
            version=version if version is not None else command.args.version,
            progress=progress,
            error=error,
        )
        await self.client.publish(f"{self.topic}/ota", _encode(report), qos=1)

    async def update(self, command: wire.FrameCommand) -> None:
        """Go through a whole successful update."""
        for state in ("downloading", "downloaded", "installing", "completed"):
            await self.report(command, state, progress=1.0 if state == "downloading" else None)

    async def online(self) -> None:
        await self.client.publish(f"{self.topic}/availability", b"online", retain=True)

    async def offline(self) -> None:
        await self.client.publish(f"{self.topic}/availability", b"offline", retain=True)

    async def heartbeat(self, firmware_version: str) -> None:
        beat = {
            "frame_id": self.device_id,
            "firmware_version": firmware_version,
            "uptime_s": 5.0,
            "free_bytes": 10**10,
            "timestamp": "2026-11-22T10:00:00Z",
        }
        await self.client.publish(f"{self.topic}/heartbeat", _encode(beat), qos=1, retain=True)


@asynccontextmanager
async def scripted_frame(
    hub: Hub, frame: KeyedFrame, *, online: bool = True
) -> AsyncIterator[ScriptedFrame]:
    """Connected to the hub's broker (wherever it listens now) with the frame's credentials,
    subscribed to its commands, and (``online``) announced online."""
    address: BrokerAddress = await hub.system.lookup("/infra/broker").ask(GetBrokerAddress())
    mqtt = frame.mqtt
    async with connect(
        hub.system,
        address.host,
        address.port,
        mqtt["username"],
        mqtt["password"],
        identifier=mqtt["client_id"],
    ) as client:
        await client.subscribe(f"frames/{frame.device_id}/command", 2)
        scripted = ScriptedFrame(frame, client)
        if online:
            await scripted.online()
        yield scripted


async def presence(hub: Hub, device_id: str) -> bool | None:
    """Whether the OTA actor has the frame as online (None: never heard of it)."""
    row = await hub.store.fetch_one(
        "SELECT online FROM ota_presence WHERE device_id = ?", (device_id,)
    )
    return None if row is None else bool(row[0])
