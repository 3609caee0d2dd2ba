"""Telemetry over the hub's own broker, as tests send it: MQTT clients with a frame's or the
hub's credentials, payloads, and the telemetry actor's counters."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec

from actors.events import rfc3339
from actors.mqtt import BrokerAddress, GetBrokerAddress
from actors.telemetry import GetTelemetryStats, TelemetryStats
from tests.harness.hub import Frame, Hub
from tests.harness.mqtt import Client, connect

_encode = msgspec.json.encode


async def broker(hub: Hub) -> BrokerAddress:
    """The managed broker's address now (its port is chosen again after a restart)."""
    address: BrokerAddress = await hub.system.lookup("/infra/broker").ask(GetBrokerAddress())
    return address


@asynccontextmanager
async def as_frame(hub: Hub, frame: Frame) -> AsyncIterator[Client]:
    """Connected to the hub's broker with the frame's own credentials."""
    address, mqtt = await broker(hub), frame.mqtt
    async with connect(
        hub.system,
        "127.0.0.1",
        address.port,
        mqtt["username"],
        mqtt["password"],
        identifier=mqtt["client_id"],
    ) as client:
        yield client


@asynccontextmanager
async def as_hub(hub: Hub) -> AsyncIterator[Client]:
    """Connected with the hub's own credentials (it may publish on any frame's topics)."""
    address = await broker(hub)
    async with connect(
        hub.system, "127.0.0.1", address.port, address.hub_username, address.hub_password
    ) as client:
        yield client


def telemetry(frame_id: str, at: float | str, **metrics: Any) -> bytes:
    """A ``frames/<id>/telemetry`` payload; ``at`` a Unix time or a timestamp as sent."""
    stamp = rfc3339(at) if isinstance(at, float | int) else at
    return _encode({"frame_id": frame_id, "metrics": metrics, "timestamp": stamp})


async def send(client: Client, frame: Frame, at: float | str, **metrics: Any) -> None:
    await client.publish(
        f"frames/{frame.device_id}/telemetry", telemetry(frame.device_id, at, **metrics)
    )


async def stats(hub: Hub) -> TelemetryStats:
    reply: TelemetryStats = await hub.refs.telemetry.ask(GetTelemetryStats())
    return reply


async def until_stored(hub: Hub, count: int) -> TelemetryStats:
    """Wait until ``count`` samples are committed in all (since the actor started)."""

    async def stored() -> bool:
        return (await stats(hub)).stored >= count

    await hub.until(stored)
    return await stats(hub)
