"""A real MQTT client for tests: aiomqtt through an actor system's asyncio bridge, recording
what it receives so a test can wait for a message (no sleeps)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiomqtt
import trio

from actors.mqtt import MqttClient
from supervision import ActorSystem

WAIT_S = 20.0


class Client:
    """A connected client and every message it received, in order."""

    def __init__(self, system: ActorSystem, client: aiomqtt.Client) -> None:
        self.system = system
        self.client = client
        self.received: list[tuple[str, bytes, bool]] = []
        """(topic, payload, retained)."""
        self.disconnected = trio.Event()
        self._changed = trio.Event()

    async def collect(self) -> None:
        try:
            async for message in self.system.asyncio.iterate(self.client.messages):
                payload = message.payload
                assert isinstance(payload, bytes)
                self.received.append((str(message.topic), payload, bool(message.retain)))
                self._changed.set()
                self._changed = trio.Event()
        except aiomqtt.MqttError:
            self.disconnected.set()
            self._changed.set()

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> None:
        await self.system.asyncio.run(self.client.publish, topic, payload, qos, retain)

    async def subscribe(self, topic: str, qos: int = 1) -> Any:
        return await self.system.asyncio.run(self.client.subscribe, topic, qos)

    async def wait_until(
        self, found: Callable[[list[tuple[str, bytes, bool]]], Any], timeout: float = WAIT_S
    ) -> Any:
        """Wait until ``found(received)`` returns something truthy; return it."""
        with trio.fail_after(timeout):
            while True:
                result = found(self.received)
                if result:
                    return result
                await self._changed.wait()

    async def wait_for(self, topic: str, payload: bytes) -> None:
        """Wait until exactly this message arrived."""
        await self.wait_until(lambda received: any(r[:2] == (topic, payload) for r in received))

    def topics(self) -> set[str]:
        return {topic for topic, _, _ in self.received}

    async def next_on(self, topic: str, after: int = 0, timeout: float = WAIT_S) -> bytes:
        """The first payload on ``topic`` received at index ``after`` or later."""

        def first(received: list[tuple[str, bytes, bool]]) -> bytes | None:
            for seen_topic, payload, _ in received[after:]:
                if seen_topic == topic:
                    return payload
            return None

        payload: bytes = await self.wait_until(first, timeout)
        return payload


@asynccontextmanager
async def connect(
    system: ActorSystem,
    host: str,
    port: int,
    username: str | None,
    password: str | None,
    **options: Any,
) -> AsyncIterator[Client]:
    """Connect (``options`` go to ``aiomqtt.Client``: identifier, will, clean_session ...)."""

    async def make() -> aiomqtt.Client:  # aiomqtt binds to the running asyncio loop
        return MqttClient(host, port, username=username, password=password, timeout=5, **options)

    client = await system.asyncio.run(make)
    async with system.asyncio.context(client):
        wrapper = Client(system, client)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wrapper.collect)
            yield wrapper
            nursery.cancel_scope.cancel()
