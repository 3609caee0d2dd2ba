"""``/infra/mqtt``: the hub's one MQTT connection, between the broker and the actors.

Inbound, frame topics (``frames/+/status|heartbeat|telemetry|ota|availability``) are checked
and decoded with msgspec into the ``wire`` types: status, heartbeats and availability are
told to the frame's proxy (``/frames/<id>``), telemetry and heartbeats to the telemetry actor
(one ``TelemetryInbound`` per inbound batch), OTA progress to the OTA actor. Anything that
does not fit (a payload too big or malformed, a frame the hub does not know, a payload naming
another frame, a proxy too busy to take it) is dropped, counted by reason and logged at most
once a minute per reason: bad input never crashes the bridge.

Outbound, what must not be lost comes from the journal (consumer ``mqtt``): album changes,
photo metadata, frame syncs and commands. A batch of events becomes a batch of publishes sent
at once (one crossing into asyncio, acknowledgements awaited together), and the cursor moves
only after the broker acknowledged every one of them (PUBACK for QoS 1, PUBCOMP for QoS 2).
While the connection is down nothing is drained; after a crash or a reconnect the batch is
published again, so delivery is at least once, and the frames' handling is idempotent.

The client (aiomqtt, through the asyncio bridge) keeps a persistent session (clean session
off, fixed client id), leaves ``hub/availability`` = ``offline`` as its last will and
publishes ``online`` (retained) on every connect; it reconnects with backoff.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import aiomqtt
import msgspec
import trio

import wire
from actors.events import (
    AlbumPhotoAdded,
    AlbumPhotoRemoved,
    DeviceDeleted,
    FrameCommandIssued,
    FrameSyncRequested,
    PhotoMetadataUpdated,
    utc_now,
)
from actors.http import PublicUrl
from actors.journal import Consumer, Journal, JournalNudge
from actors.store import Entry, Transaction
from config import MqttSettings
from supervision import Actor, ActorNotFound, ActorRef, ActorStopped, AskTimeout, MailboxFull

from ._broker import HUB_USERNAME, BrokerAddress, GetBrokerAddress
from ._client import MqttClient

log = logging.getLogger("framehub.mqtt")

MQTT_PATH = "/infra/mqtt"
"""Where the hub's tree puts the ``MqttBridge``."""
CLIENT_ID = "framehub-hub"
FRAMES_PATH = "/frames"
SYNC_ASK_TIMEOUT_S = 2.0
"""How long the bridge waits for a proxy's sync before leaving that frame to converge later."""
INBOUND_BATCH = 256
RECONNECT_MIN_S = 0.2
RECONNECT_MAX_S = 5.0
LOG_EVERY_S = 60.0
STOP_TIMEOUT_S = 2.0
FIRST_CONNECT_WAIT_S = 5.0

_SUBSCRIPTIONS = [(f"frames/+/{leaf}", 1) for leaf in wire.FRAME_LEAVES_IN]


# -- messages ----------------------------------------------------------------------------------


BROKER_RECEIVE_MAXIMUM = 20
"""QoS 1 and 2 publishes the hub keeps in flight: Mosquitto's default ``max_inflight_messages``."""


class GetSync(msgspec.Struct, frozen=True):
    """Asked of a frame proxy by the bridge: its current ``wire.FrameSync`` as JSON bytes,
    or None if it has nothing to send yet."""


class FrameInbound(msgspec.Struct, frozen=True):
    """Told to a frame proxy (status, heartbeat, availability) or to the OTA actor (``ota``):
    what a frame published, already decoded and checked against its topic."""

    payload: wire.FrameStatus | wire.Heartbeat | wire.OtaProgress | Availability


class TelemetryInbound(msgspec.Struct, frozen=True, kw_only=True):
    """Told to the telemetry actor once per inbound batch: the frames' telemetry and
    heartbeats (whose fields are samples too), checked against their topics, in arrival
    order; ``received_at`` is the hub's Unix time when the batch arrived."""

    items: list[wire.Telemetry | wire.Heartbeat]
    received_at: float


class Availability(msgspec.Struct, frozen=True):
    """``frames/<id>/availability``: the frame's own ``online`` or its last will."""

    online: bool


class GetMqttStats(msgspec.Struct, frozen=True):
    """Answers ``MqttStats``."""


class MqttStats(msgspec.Struct, frozen=True, kw_only=True):
    connected: bool
    connects: int
    received: int
    routed: int
    published: int
    dropped: dict[str, int]
    """Dropped inbound messages by reason: ``oversized``, ``malformed``, ``foreign_topic``,
    ``unknown_frame``, ``wrong_frame``, ``proxy_busy``, ``no_receiver`` (no telemetry or OTA
    actor to take it)."""


class GetFrameEndpoint(msgspec.Struct, frozen=True):
    """Where frames reach the broker; answers ``FrameEndpoint`` (given at pairing)."""


class FrameEndpoint(msgspec.Struct, frozen=True, kw_only=True):
    host: str
    port: int


class _Connected(msgspec.Struct, frozen=True):
    generation: int


class _Disconnected(msgspec.Struct, frozen=True):
    generation: int
    reason: str


BridgeMessage = JournalNudge | GetMqttStats | GetFrameEndpoint | _Connected | _Disconnected


class NotConnected(Exception):
    """The connection went away while a batch waited for acknowledgements."""


_DECODERS: dict[str, Callable[[bytes], Any]] = {
    "status": msgspec.json.Decoder(wire.FrameStatus).decode,
    "heartbeat": msgspec.json.Decoder(wire.Heartbeat).decode,
    "telemetry": msgspec.json.Decoder(wire.Telemetry).decode,
    "ota": msgspec.json.Decoder(wire.OtaProgress).decode,
}
_encode = msgspec.json.encode


class _Publish(msgspec.Struct, frozen=True):
    topic: str
    payload: bytes
    qos: int
    retain: bool = False


async def _client(
    host: str, port: int, username: str | None, password: str | None
) -> aiomqtt.Client:
    """The hub's client (made on the asyncio loop, which aiomqtt binds to)."""
    client = MqttClient(
        host,
        port,
        username=username,
        password=password,
        identifier=CLIENT_ID,
        clean_session=False,
        will=aiomqtt.Will(wire.HUB_AVAILABILITY, wire.OFFLINE, qos=1, retain=True),
        # At most the broker's receive maximum: Mosquitto (default 20) acknowledges a QoS 2
        # publish past its quota from an MQTT 3.1.1 client with a PUBREC and then drops it,
        # so the hub would believe delivered what no frame ever gets. paho queues the rest.
        max_inflight_messages=BROKER_RECEIVE_MAXIMUM,
        max_queued_incoming_messages=10_000,
        timeout=10,
    )
    client.pending_calls_threshold = 1_000  # batches of publishes in flight are the design
    return client


async def _publish(client: aiomqtt.Client, message: _Publish) -> None:
    await client.publish(message.topic, message.payload, qos=message.qos, retain=message.retain)


# -- the actor ---------------------------------------------------------------------------------


class MqttBridge(Actor[BridgeMessage]):
    """``/infra/mqtt``: see the module's docstring.

    ``broker`` is the managed broker's path (its address and the hub's credentials are asked
    of it); None connects to ``settings``' external URL. ``telemetry`` and ``ota`` are the
    paths of the actors that take frames' telemetry (and heartbeats) and OTA progress.
    """

    def __init__(
        self,
        settings: MqttSettings,
        journal: Journal,
        public_url: PublicUrl,
        *,
        broker: str | None = None,
        telemetry: str | None = None,
        ota: str | None = None,
    ) -> None:
        self._settings = settings
        self._telemetry_path = telemetry
        self._ota_path = ota
        self._samples: list[wire.Telemetry | wire.Heartbeat] = []
        self._ota_progress: list[wire.OtaProgress] = []
        self._journal = journal
        self._public_url = public_url
        self._broker = broker
        self._consumer: Consumer | None = None
        self._client: aiomqtt.Client | None = None
        self._generation = 0
        self._outbox: list[_Publish] = []
        self._syncs: set[str] = set()
        """Frames whose sync is in the current outbound batch (published once per batch)."""
        self._proxies: dict[str, ActorRef[Any]] = {}
        self._dropped: Counter[str] = Counter()
        self._dropped_logged: dict[str, float] = {}
        self._received = 0
        self._routed = 0
        self._published = 0
        self._connects = 0
        self._stopping = False
        self._first_connect = trio.Event()
        self._host = ""
        self._port = 0

    async def on_start(self) -> None:
        address = await self._address()
        self._host, self._port = self._listen_host(), address[1]
        self._consumer = await self._journal.consume(
            "mqtt",
            [
                "album.photo_added",
                "album.photo_removed",
                "photo.metadata_updated",
                "frame.sync_requested",
                "frame.command_issued",
                "device.deleted",
            ],
            self.context,
            self._on_event,
            settle=self._settle,
        )
        await self.context.start_service(self._connection, address)
        # Usually a moment (the managed broker is local): then the hub is ready when it says
        # so. An external broker that is down does not stop the hub from starting.
        with trio.move_on_after(FIRST_CONNECT_WAIT_S):
            await self._first_connect.wait()

    async def on_stop(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
        self._stopping = True
        client, self._client = self._client, None
        if client is not None:
            # A graceful goodbye: the last will fires only on a lost connection, and a
            # connection cut by cancellation would leave aiomqtt's disconnect unfinished.
            bridge = self.context.system.asyncio
            offline = _Publish(wire.HUB_AVAILABILITY, wire.OFFLINE.encode(), 1, True)
            with trio.move_on_after(STOP_TIMEOUT_S):
                try:
                    await bridge.run(_publish, client, offline)
                    await bridge.run(client.__aexit__, None, None, None)
                except aiomqtt.MqttError:
                    pass  # the broker went first (it died, or the hub is stopping)

    async def receive(self, message: BridgeMessage) -> Any:
        match message:
            case JournalNudge():
                await self._drain()
            case _Connected(generation=generation) if generation == self._generation:
                await self._drain()
            case _Disconnected(reason=reason):
                log.debug("outbound paused: %s", reason)
            case GetFrameEndpoint():
                return await self._frame_endpoint()
            case GetMqttStats():
                return MqttStats(
                    connected=self._client is not None,
                    connects=self._connects,
                    received=self._received,
                    routed=self._routed,
                    published=self._published,
                    dropped=dict(self._dropped),
                )
        return None

    # -- the connection ------------------------------------------------------------------------

    async def _frame_endpoint(self) -> FrameEndpoint:
        """The broker as frames see it: a wildcard listen address (all interfaces) becomes
        the host of the hub's public URL, which frames already reach."""
        host = self._host
        if host in ("0.0.0.0", "::", ""):
            host = urlsplit(await self._public_url.wait()).hostname or "127.0.0.1"
        return FrameEndpoint(host=host, port=self._port)

    def _listen_host(self) -> str:
        settings = self._settings
        return settings.host if self._broker is not None else settings.broker_host

    async def _address(self) -> tuple[str, int, str | None, str | None]:
        if self._broker is None:
            settings = self._settings
            return settings.broker_host, settings.broker_port, settings.username, settings.password
        address: BrokerAddress = await self.context.system.lookup(self._broker).ask(
            GetBrokerAddress()
        )
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(address.host, address.host)
        return host, address.port, HUB_USERNAME, address.hub_password

    async def _connection(
        self,
        address: tuple[str, int, str | None, str | None],
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Stay connected for the incarnation's life: connect, serve, back off, again."""
        host, port, username, password = address
        bridge = self.context.system.asyncio
        task_status.started()
        delay = RECONNECT_MIN_S
        while True:
            try:
                client = await bridge.run(_client, host, port, username, password)
                async with bridge.context(client):
                    await bridge.run(client.subscribe, _SUBSCRIPTIONS)
                    await bridge.run(
                        _publish, client, _Publish(wire.HUB_AVAILABILITY, b"online", 1, True)
                    )
                    self._client = client
                    self._generation += 1
                    self._connects += 1
                    self._first_connect.set()
                    log.info("connected to the MQTT broker at %s:%d", host, port)
                    delay = RECONNECT_MIN_S
                    self.context.ref.nudge(_Connected(self._generation))
                    async for batch in bridge.batches(client.messages, INBOUND_BATCH):
                        for message in batch:
                            self._route(message)
                        await self._hand_over()
            except aiomqtt.MqttError as error:
                reason = str(error) or type(error).__name__
            else:
                reason = "the message stream ended"
            if self._stopping:
                return
            self._client = None
            self.context.ref.nudge(_Disconnected(self._generation, reason))
            log.warning("MQTT connection lost (%s); reconnecting in %.1fs", reason, delay)
            await trio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, RECONNECT_MAX_S)

    # -- inbound -------------------------------------------------------------------------------

    def _route(self, message: aiomqtt.Message) -> None:
        self._received += 1
        topic = message.topic.value
        parts = wire.split_frame_topic(topic)
        if parts is None or parts[1] not in wire.FRAME_LEAVES_IN:
            self._drop("foreign_topic", topic)
            return
        frame_id, leaf = parts
        payload = message.payload
        if len(payload) > wire.MAX_PAYLOAD_BYTES:
            self._drop("oversized", topic)
            return
        if not payload:
            return  # a retained message being cleared, e.g. after a frame was deleted
        decoded: Any
        try:
            if leaf == "availability":
                text = bytes(payload).decode()
                if text not in (wire.ONLINE, wire.OFFLINE):
                    raise ValueError(text[:40])
                decoded = Availability(text == wire.ONLINE)
            else:
                decoded = _DECODERS[leaf](payload)
                if decoded.frame_id != frame_id:
                    self._drop("wrong_frame", topic)
                    return
        except (msgspec.DecodeError, ValueError):
            self._drop("malformed", topic)
            return
        if leaf == "telemetry":
            if self._telemetry_path is None:
                self._drop("no_receiver", topic)
            else:
                self._samples.append(decoded)
            return
        if leaf == "ota":
            if self._ota_path is None:
                self._drop("no_receiver", topic)
            else:
                self._ota_progress.append(decoded)
            return
        proxy = self._proxy(frame_id)
        if proxy is None:
            self._drop("unknown_frame", topic)
            return
        if leaf == "heartbeat" and self._telemetry_path is not None:
            self._samples.append(decoded)
        try:
            proxy.tell_nowait(FrameInbound(decoded))
        except MailboxFull:
            self._drop("proxy_busy", topic)
            return
        except ActorStopped:
            self._proxies.pop(frame_id, None)
            self._drop("unknown_frame", topic)
            return
        self._routed += 1

    async def _hand_over(self) -> None:
        """Give a batch's telemetry and OTA progress to their actors, waiting for mailbox
        space (the broker's flow control then holds the frames back): none is dropped for
        being too many."""
        if self._samples:
            samples, self._samples = self._samples, []
            await self._tell(
                self._telemetry_path, TelemetryInbound(items=samples, received_at=time.time())
            )
        if self._ota_progress:
            progress, self._ota_progress = self._ota_progress, []
            for item in progress:
                await self._tell(self._ota_path, FrameInbound(item))

    async def _tell(self, path: str | None, message: Any) -> None:
        if path is None:
            return
        try:
            await self.context.system.lookup(path).tell(message)
        except (ActorNotFound, ActorStopped):
            self._drop("no_receiver", path)
            return
        self._routed += 1

    def _proxy(self, frame_id: str) -> ActorRef[Any] | None:
        proxy = self._proxies.get(frame_id)
        if proxy is None or not proxy.alive:
            try:
                proxy = self.context.system.lookup(f"{FRAMES_PATH}/{frame_id}")
            except ActorNotFound:
                return None
            self._proxies[frame_id] = proxy
        return proxy

    def _drop(self, reason: str, topic: str) -> None:
        self._dropped[reason] += 1
        now = time.monotonic()
        if now - self._dropped_logged.get(reason, -LOG_EVERY_S) >= LOG_EVERY_S:
            self._dropped_logged[reason] = now
            log.warning(
                "dropped an inbound MQTT message (%s) on %r; %d dropped for this reason so far",
                reason,
                topic[:200],
                self._dropped[reason],
            )

    # -- outbound ------------------------------------------------------------------------------

    async def _drain(self) -> None:
        if self._client is None or self._consumer is None:
            return
        try:
            await self._consumer.drain()
        except (NotConnected, aiomqtt.MqttError) as error:
            # Nothing of the batch committed: it is published again after the reconnect.
            log.warning("outbound batch not acknowledged (%s); kept for the reconnect", error)
        finally:
            self._outbox.clear()
            self._syncs.clear()

    async def _on_event(self, entry: Entry, tx: Transaction) -> None:
        base_url = self._public_url.value or await self._public_url.wait()
        now = utc_now()
        match entry.event:
            case AlbumPhotoAdded() as event:
                payload = wire.PhotoAdded(
                    album_id=event.album_id,
                    file_id=event.file_id,
                    photo_metadata=wire.PhotoMetadata(
                        file_name=event.file_name,
                        content_type=event.content_type,
                        ai_labels=event.ai_labels,
                        timestamp=event.occurred_at,
                    ),
                    media_service_url=f"{base_url}/api/v1/photos/{event.file_id}",
                    timestamp=now,
                )
                self._queue(wire.album_topic(event.album_id, "photo_added"), _encode(payload), 1)
            case AlbumPhotoRemoved() as event:
                removed = wire.PhotoRemoved(
                    album_id=event.album_id, file_id=event.file_id, timestamp=now
                )
                self._queue(wire.album_topic(event.album_id, "photo_removed"), _encode(removed), 1)
            case PhotoMetadataUpdated() as event:
                updated = wire.MetadataUpdated(
                    file_id=event.file_id,
                    ai_metadata=msgspec.Raw(_encode(event.ai_metadata)),
                    timestamp=now,
                )
                self._queue(f"photos/{event.file_id}/metadata_updated", _encode(updated), 1)
            case FrameSyncRequested(frame_id=frame_id):
                await self._queue_sync(frame_id)
            case FrameCommandIssued() as event:
                command = wire.FrameCommand(
                    command_id=event.command_id,
                    command=msgspec.convert(event.command, wire.CommandName),
                    args=event.args,
                    timestamp=event.occurred_at,
                )
                self._queue(wire.frame_topic(event.frame_id, "command"), _encode(command), 2)
            case DeviceDeleted(device_id=frame_id):
                # Clear what the broker keeps for the frame: a re-paired id never sees it.
                for leaf in ("sync", "heartbeat", "availability"):
                    self._queue(wire.frame_topic(frame_id, leaf), b"", 1, retain=True)
                self._proxies.pop(frame_id, None)
            case _:
                pass

    async def _queue_sync(self, frame_id: str) -> None:
        if frame_id in self._syncs:
            return  # the proxy's latest sync is already in this batch
        proxy = self._proxy(frame_id)
        if proxy is None:
            return  # deleted since; its retained sync is cleared on device.deleted
        try:
            payload: bytes | None = await proxy.ask(GetSync(), timeout=SYNC_ASK_TIMEOUT_S)
        except (AskTimeout, ActorStopped) as error:
            # The proxy compares the frame's reported sync version with its own and asks
            # again; a wedged proxy must not hold up every other frame's messages.
            log.warning("no sync from frame %s (%r); it will converge later", frame_id, error)
            return
        if payload is not None:
            self._syncs.add(frame_id)
            self._queue(wire.frame_topic(frame_id, "sync"), payload, 2, retain=True)

    def _queue(self, topic: str, payload: bytes, qos: int, *, retain: bool = False) -> None:
        self._outbox.append(_Publish(topic, payload, qos, retain))

    async def _settle(self) -> None:
        """Publish the batch at once and wait for every acknowledgement."""
        client = self._client
        outbox = self._outbox
        if not outbox:
            return
        if client is None:
            raise NotConnected("not connected")
        generation = self._generation
        await self.context.system.asyncio.run_all(_publish, [(client, m) for m in outbox])
        if generation != self._generation:
            raise NotConnected("reconnected while publishing")
        self._published += len(outbox)
        outbox.clear()
        self._syncs.clear()
