"""The MQTT bridge: the hub's one MQTT connection, between the broker and the actors.

Inbound, frame topics (``frames/+/status|heartbeat|telemetry|ota|availability``) are checked
and decoded with msgspec into the ``wire`` types: status, heartbeats and availability are
told to the frame's proxy, telemetry and heartbeats to the telemetry actor
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

A broker that was killed forgets what it had acknowledged and not yet delivered, and comes
back without the frames' sessions: until a frame has reconnected and subscribed again, a
command published to it reaches nobody (its sync is retained, and album changes are folded
into the sync it is sent when it is back). So on every connect the commands of the last
``REPLAY_COMMANDS_S`` (from the journal), and every command published to a frame the bridge
has not heard live since (a heartbeat that is not the retained copy: a frame sends one once
subscribed), are kept (up to ``MAX_HELD_COMMANDS`` per frame, in memory) and published again
when the frame is heard. Frames answer a command id they know again instead of running it
twice; the hub ignores answers to commands no longer pending.

The client (aiomqtt, through the asyncio bridge) keeps a persistent session (clean session
off, fixed client id), leaves ``hub/availability`` = ``offline`` as its last will and
publishes ``online`` (retained) on every connect; it reconnects with backoff.

Inbound messages are acknowledged to the broker as soon as they are read, so from then on
the hub alone has them: they wait in the bridge's inbox (``MqttClient(inbox=...)``) until
routed, and telemetry and OTA progress stay in the bridge until their actor's mailbox took
them. A lost connection, a cancelled wait or a stop of the bridge (the broker restarting
restarts it too) leaves them there; ``on_stop`` and ``on_failure`` hand over what is left.
The inbox holds at most ``MAX_INBOX`` messages (more are dropped as ``inbox_full``).
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any, TypeVar
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
from actors.frames import Availability, FrameDirectory, FrameInbound, GetSync, ProxyMessage
from actors.http import PublicUrl
from actors.journal import Consumer, Journal, JournalNudge
from actors.ota import FrameProgress, OtaMessage
from actors.store import Entry, Transaction
from actors.telemetry import TelemetryInbound, TelemetryMessage
from config import MqttSettings
from supervision import (
    Actor,
    ActorNotFound,
    ActorRef,
    ActorStopped,
    AskTimeout,
    MailboxFull,
    Request,
)

from ._broker import (
    HUB_CLIENT_ID,
    HUB_SUBSCRIPTIONS,
    HUB_USERNAME,
    BrokerMessage,
    GetBrokerAddress,
)
from ._client import MqttClient

log = logging.getLogger("framehub.mqtt")

M = TypeVar("M")

CLIENT_ID = HUB_CLIENT_ID
SYNC_ASK_TIMEOUT_S = 2.0
"""How long the bridge waits for a proxy's sync before leaving that frame to converge later."""
INBOUND_BATCH = 256
MAX_HELD_COMMANDS = 100
"""Commands kept per frame not heard since the connection began (see the docstring)."""
REPLAY_COMMANDS_S = 60.0
"""Commands issued this recently are sent again to each frame once heard after a connect."""
MAX_INBOX = 10_000
"""Inbound messages read but not yet routed; past this the bridge drops (``inbox_full``)."""
RECONNECT_MIN_S = 0.2
RECONNECT_MAX_S = 5.0
LOG_EVERY_S = 60.0
STOP_TIMEOUT_S = 2.0
FIRST_CONNECT_WAIT_S = 5.0

_SUBSCRIPTIONS = HUB_SUBSCRIPTIONS


# -- messages ----------------------------------------------------------------------------------


BROKER_RECEIVE_MAXIMUM = 20
"""QoS 1 and 2 publishes the hub keeps in flight: Mosquitto's default ``max_inflight_messages``."""


class GetMqttStats(Request["MqttStats"], frozen=True):
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
    actor to take it), ``inbox_full`` (more than ``MAX_INBOX`` waiting to be routed)."""


class GetFrameEndpoint(Request["FrameEndpoint"], frozen=True):
    """Where frames reach the broker; answers ``FrameEndpoint`` (given at pairing)."""


class FrameEndpoint(msgspec.Struct, frozen=True, kw_only=True):
    host: str
    port: int


class _Connected(msgspec.Struct, frozen=True):
    generation: int


class _Disconnected(msgspec.Struct, frozen=True):
    generation: int
    reason: str


class _FrameHeard(msgspec.Struct, frozen=True):
    """A frame the bridge kept commands for sent a live heartbeat: publish them again."""

    frame_id: str


BridgeMessage = (
    JournalNudge | GetMqttStats | GetFrameEndpoint | _Connected | _Disconnected | _FrameHeard
)


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
    host: str,
    port: int,
    username: str | None,
    password: str | None,
    inbox: deque[aiomqtt.Message],
) -> MqttClient:
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
        timeout=10,
        inbox=inbox,
    )
    client.pending_calls_threshold = 1_000  # batches of publishes in flight are the design
    return client


class _BoundedInbox(deque[aiomqtt.Message]):
    """The bridge's inbox: ``append`` past ``MAX_INBOX`` drops the message and says so."""

    def __init__(self, on_full: Callable[[], None]) -> None:
        super().__init__()
        self._on_full = on_full

    def append(self, message: aiomqtt.Message) -> None:
        if len(self) >= MAX_INBOX:
            self._on_full()
            return
        super().append(message)


def _command_publish(event: FrameCommandIssued) -> _Publish:
    """``frames/<id>/command`` (QoS 2) for the event."""
    command = wire.FrameCommand(
        command_id=event.command_id,
        command=msgspec.convert(event.command, wire.CommandName),
        args=event.args,
        timestamp=event.occurred_at,
    )
    return _Publish(wire.frame_topic(event.frame_id, "command"), _encode(command), 2)


async def _publish(client: aiomqtt.Client, message: _Publish) -> None:
    await client.publish(message.topic, message.payload, qos=message.qos, retain=message.retain)


# -- the actor ---------------------------------------------------------------------------------


class MqttBridge(Actor[BridgeMessage]):
    """The MQTT bridge: see the module's docstring.

    ``broker`` is the managed broker (its address and the hub's credentials are asked of
    it); None connects to ``settings``' external URL. ``frames`` finds each frame's proxy;
    ``telemetry`` and ``ota`` take frames' telemetry (and heartbeats) and OTA progress.
    """

    def __init__(
        self,
        settings: MqttSettings,
        journal: Journal,
        public_url: PublicUrl,
        *,
        frames: FrameDirectory,
        telemetry: ActorRef[TelemetryMessage] | None,
        ota: ActorRef[OtaMessage] | None,
        broker: ActorRef[BrokerMessage] | None = None,
    ) -> None:
        self._settings = settings
        self._frames = frames
        self._telemetry = telemetry
        self._ota = ota
        self._inbox: deque[aiomqtt.Message] = _BoundedInbox(self._inbox_full)
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
        self._proxies: dict[str, ActorRef[ProxyMessage]] = {}
        self._heard: set[str] = set()
        """Frames heard live (a heartbeat not retained) on the current connection."""
        self._held: dict[str, dict[str, _Publish]] = {}
        """Commands (by id) published to frames not heard yet, per frame."""
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
        await self._hand_over_the_rest()

    async def on_failure(self, error: BaseException) -> None:
        self._stopping = True
        if self._consumer is not None:
            self._consumer.close()
        await self._hand_over_the_rest()

    async def _hand_over_the_rest(self) -> None:
        """What was read and acknowledged but not handed over yet goes to its actors now
        (bounded: an actor that takes nothing within ``STOP_TIMEOUT_S`` loses it)."""
        with trio.move_on_after(STOP_TIMEOUT_S):
            while self._inbox or self._samples or self._ota_progress:
                self._take_inbox()
                await self._hand_over()

    async def receive(self, message: BridgeMessage) -> Any:
        match message:
            case JournalNudge():
                await self._drain()
            case _Connected(generation=generation) if generation == self._generation:
                await self._hold_recent_commands()
                await self._drain()
            case _Disconnected(reason=reason):
                log.debug("outbound paused: %s", reason)
            case _FrameHeard(frame_id=frame_id):
                await self._publish_held(frame_id)
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
        address = await self._broker.ask(GetBrokerAddress())
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
                client = await bridge.run(_client, host, port, username, password, self._inbox)
                async with bridge.context(client):
                    await bridge.run(client.subscribe, _SUBSCRIPTIONS)
                    await bridge.run(
                        _publish, client, _Publish(wire.HUB_AVAILABILITY, b"online", 1, True)
                    )
                    self._heard.clear()  # a broker that restarted has no frame sessions
                    self._client = client
                    self._generation += 1
                    self._connects += 1
                    self._first_connect.set()
                    log.info("connected to the MQTT broker at %s:%d", host, port)
                    delay = RECONNECT_MIN_S
                    self.context.ref.nudge(_Connected(self._generation))
                    while True:
                        # Waits without taking: a message is only ever in the inbox or
                        # routed, never in between (see the module's docstring).
                        await bridge.run(client.wait_inbox)
                        self._take_inbox()
                        await self._hand_over()
            except aiomqtt.MqttError as error:
                reason = str(error) or type(error).__name__
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
        except (msgspec.DecodeError, ValueError, RecursionError):
            # RecursionError: JSON nested deeper than the decoder goes (it skips unknown
            # fields recursively), e.g. ten thousand arrays in an extra field.
            self._drop("malformed", topic)
            return
        if leaf == "telemetry":
            if self._telemetry is None:
                self._drop("no_receiver", topic)
            else:
                self._samples.append(decoded)
            return
        if leaf == "ota":
            if self._ota is None:
                self._drop("no_receiver", topic)
            else:
                self._ota_progress.append(decoded)
            return
        proxy = self._proxy(frame_id)
        if proxy is None:
            self._drop("unknown_frame", topic)
            return
        if leaf == "heartbeat" and not message.retain and frame_id not in self._heard:
            self._heard.add(frame_id)
            if frame_id in self._held:
                self.context.ref.nudge(_FrameHeard(frame_id))
        if leaf == "heartbeat" and self._telemetry is not None:
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

    def _take_inbox(self) -> None:
        """Route up to ``INBOUND_BATCH`` messages of the inbox (synchronously: none is lost
        to a cancellation halfway)."""
        inbox = self._inbox
        for _ in range(min(len(inbox), INBOUND_BATCH)):
            self._route(inbox.popleft())

    def _inbox_full(self) -> None:
        self._drop("inbox_full", "(any)")

    async def _hand_over(self) -> None:
        """Give a batch's telemetry and OTA progress to their actors, waiting for mailbox
        space: none is dropped for being too many. Each stays here until its actor's mailbox
        took it (a cancelled ``tell`` queued nothing), so a stop loses none of them."""
        if self._samples:
            samples = self._samples
            if self._telemetry is not None:
                batch = TelemetryInbound(items=samples, received_at=time.time())
                await self._tell(self._telemetry, batch, "telemetry")
            self._samples = []
        while self._ota_progress:
            if self._ota is not None:
                await self._tell(self._ota, FrameProgress(self._ota_progress[0]), "ota")
            del self._ota_progress[0]

    async def _tell(self, ref: ActorRef[M], message: M, what: str) -> None:
        try:
            await ref.tell(message)
        except (ActorNotFound, ActorStopped):
            self._drop("no_receiver", what)
            return
        self._routed += 1

    def _proxy(self, frame_id: str) -> ActorRef[ProxyMessage] | None:
        proxy = self._proxies.get(frame_id)
        if proxy is None or not proxy.alive:
            proxy = self._frames.find(frame_id)
            if proxy is None:
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
                command = _command_publish(event)
                self._outbox.append(command)
                if event.frame_id not in self._heard:
                    self._hold(event.frame_id, event.command_id, command)
            case DeviceDeleted(device_id=frame_id):
                self._held.pop(frame_id, None)
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
            payload = await proxy.ask(GetSync(), timeout=SYNC_ASK_TIMEOUT_S)
        except (AskTimeout, ActorStopped) as error:
            # The proxy compares the frame's reported sync version with its own and asks
            # again; a wedged proxy must not hold up every other frame's messages.
            log.warning("no sync from frame %s (%r); it will converge later", frame_id, error)
            return
        if payload is not None:
            self._syncs.add(frame_id)
            self._queue(wire.frame_topic(frame_id, "sync"), payload, 2, retain=True)

    def _hold(self, frame_id: str, command_id: str, command: _Publish) -> None:
        held = self._held.setdefault(frame_id, {})
        held[command_id] = command
        while len(held) > MAX_HELD_COMMANDS:
            del held[next(iter(held))]

    async def _hold_recent_commands(self) -> None:
        """Keep the commands of the last ``REPLAY_COMMANDS_S`` for their frames (see the
        module's docstring); those already heard on this connection get them at once."""
        since = time.time() - REPLAY_COMMANDS_S
        for event in await self._journal.published_since("frame.command_issued", since):
            assert isinstance(event, FrameCommandIssued)
            if self._proxy(event.frame_id) is not None:  # not deleted meanwhile
                self._hold(event.frame_id, event.command_id, _command_publish(event))
        for frame_id in self._heard & self._held.keys():
            self.context.ref.nudge(_FrameHeard(frame_id))

    async def _publish_held(self, frame_id: str) -> None:
        """Publish again the commands kept for ``frame_id``, now that it is back; kept for
        its next heartbeat if the connection fails meanwhile."""
        client = self._client
        held = self._held.pop(frame_id, {})
        if client is None or not held:
            if held:
                self._held[frame_id] = held
            return
        try:
            await self.context.system.asyncio.run_all(
                _publish, [(client, message) for message in held.values()]
            )
        except aiomqtt.MqttError as error:
            log.warning("commands for frame %s not published again (%s)", frame_id, error)
            self._held[frame_id] = {**held, **self._held.get(frame_id, {})}
            self._heard.discard(frame_id)
            return
        self._published += len(held)
        log.info("published %d commands again for frame %s, back", len(held), frame_id)

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
