"""The hub's supervision tree and the ``serve`` lifecycle."""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from actors.accounts import Accounts, AccountsMessage
from actors.album import Album, AlbumMessage
from actors.api import ApiPeers, api_routes
from actors.blobs import BlobStore
from actors.console import Console, ConsoleMessage, ConsolePeers, GetConsoleAddress
from actors.devices import DeviceMessage, DeviceRegistry, FrameAccess
from actors.frames import (
    FLEET_NAME,
    FleetMessage,
    FrameDirectory,
    FrameFleet,
    ProxyMessage,
    ProxyPeers,
)
from actors.http import GatewayMessage, GetHttpAddress, HttpGateway, PublicUrl
from actors.journal import AuditLog, Journal, JournalKeeper, JournalNudge, KeeperMessage
from actors.media import MediaCache, MediaMessage
from actors.mqtt import (
    BridgeMessage,
    BrokerAccess,
    BrokerMessage,
    GetBrokerAddress,
    GetMqttStats,
    MosquittoBroker,
    MqttBridge,
    SetFrameAccess,
    find_mosquitto,
)
from actors.notifier import NotificationFeed, Notifier, NotifierMessage
from actors.ota import OtaCampaigns, OtaMessage, SigningKey, load_signing_key
from actors.store import Store
from actors.telemetry import TelemetryMessage, TelemetryMonitor
from actors.uploader import Uploader, UploaderMessage
from config import Settings
from supervision import (
    ActorRef,
    ActorSystem,
    Backoff,
    ChildDirectory,
    ChildSpec,
    Intensity,
    Strategy,
    open_asyncio_bridge,
    open_system,
    supervisor,
)

log = logging.getLogger("framehub")


DATABASE_NAME = "framehub.db"


BLOBS_DIR = "blobs"
"""Originals in ``blobs/originals``, versions in ``blobs/versions``, firmware images in
``blobs/firmware``: each has one owner, so a version that happens to equal an uploaded
original is never deleted with that upload."""
IMAGE_WORKERS = 2
"""Threads decoding and resizing images at once: Pillow releases the GIL, 2 cores here."""


@dataclass(frozen=True, slots=True)
class HubRefs:
    """Every actor of the hub's tree by what it does, as a typed ref: the one place that
    decides where each actor sits. Built before the tree starts (``ActorRef.declare``), so
    that each actor gets the refs it needs through its constructor."""

    journal: ActorRef[KeeperMessage] = field(default_factory=ActorRef.declare)
    audit: ActorRef[JournalNudge] = field(default_factory=ActorRef.declare)
    broker: ActorRef[BrokerMessage] = field(default_factory=ActorRef.declare)
    mqtt: ActorRef[BridgeMessage] = field(default_factory=ActorRef.declare)
    accounts: ActorRef[AccountsMessage] = field(default_factory=ActorRef.declare)
    uploader: ActorRef[UploaderMessage] = field(default_factory=ActorRef.declare)
    album: ActorRef[AlbumMessage] = field(default_factory=ActorRef.declare)
    media: ActorRef[MediaMessage] = field(default_factory=ActorRef.declare)
    devices: ActorRef[DeviceMessage] = field(default_factory=ActorRef.declare)
    ota: ActorRef[OtaMessage] = field(default_factory=ActorRef.declare)
    telemetry: ActorRef[TelemetryMessage] = field(default_factory=ActorRef.declare)
    notifier: ActorRef[NotifierMessage] = field(default_factory=ActorRef.declare)
    frames_supervisor: ActorRef[object] = field(default_factory=ActorRef.declare)
    fleet: ActorRef[FleetMessage] = field(default_factory=ActorRef.declare)
    http: ActorRef[GatewayMessage] = field(default_factory=ActorRef.declare)
    console: ActorRef[ConsoleMessage] = field(default_factory=ActorRef.declare)

    @property
    def frames(self) -> FrameDirectory:
        """The frames' proxies (the dynamic children of the ``frames`` supervisor)."""
        return FrameDirectory(ChildDirectory[ProxyMessage](self.frames_supervisor))


@dataclass(frozen=True, slots=True)
class HubBlobs:
    """The hub's blob stores, each with one owner: originals (the uploader), versions (the
    media cache), firmware images (the OTA actor)."""

    originals: BlobStore
    versions: BlobStore
    firmware: BlobStore


def hub_tree(
    settings: Settings,
    journal: Journal,
    blobs: HubBlobs,
    limiter: trio.CapacityLimiter,
    *,
    signing_key: SigningKey,
    notifications: NotificationFeed,
    refs: HubRefs | None = None,
) -> ChildSpec[Any]:
    """The root of the hub: infra, domain, frames and edge subtrees (ARCHITECTURE.md).

    The database and the journal are resources opened before the tree and closed after it;
    the actors receive them, and the refs of the actors they talk to, through their
    constructors. ``refs`` are the refs the tree's actors answer to (new ones if not given).
    """
    refs = refs if refs is not None else HubRefs()
    runtime = settings.runtime
    intensity = Intensity(max_restarts=runtime.max_restarts, within_s=runtime.restart_window_s)
    backoff = Backoff(
        min_s=runtime.backoff_min_s,
        max_s=runtime.backoff_max_s,
        jitter=runtime.backoff_jitter,
        reset_s=runtime.backoff_reset_s,
    )

    def subtree(
        name: str,
        strategy: Strategy,
        children: list[ChildSpec[Any]],
        ref: ActorRef[object] | None = None,
    ) -> ChildSpec[Any]:
        return supervisor(
            name,
            children,
            strategy=strategy,
            intensity=intensity,
            backoff=backoff,
            shutdown_timeout=runtime.shutdown_timeout_s * 4,
            ref=ref,
        )

    capacity = runtime.mailbox_capacity
    retention_s = settings.journal.retention_hours * 3600
    broker_access = BrokerAccess()  # frames' broker access outlives broker restarts
    public_url = PublicUrl(settings.http.public_url.rstrip("/"))
    managed = settings.mqtt.mode == "managed"
    frames = refs.frames
    broker: list[ChildSpec[Any]] = []
    if managed:
        broker.append(
            ChildSpec(
                "broker",
                lambda: MosquittoBroker(settings.mqtt, settings.data_path, access=broker_access),
                mailbox_capacity=capacity,
                shutdown_timeout=max(runtime.shutdown_timeout_s, 5.0),
                ref=refs.broker,
            )
        )

    async def allow_frames(access: list[FrameAccess]) -> None:
        await refs.broker.ask(SetFrameAccess(frames=access))

    infra: list[ChildSpec[Any]] = [
        ChildSpec(
            "journal",
            lambda: JournalKeeper(journal, retention_s=retention_s),
            mailbox_capacity=capacity,
            ref=refs.journal,
        ),
        ChildSpec("audit", lambda: AuditLog(journal), mailbox_capacity=capacity, ref=refs.audit),
        *broker,
        ChildSpec(
            "mqtt",
            lambda: MqttBridge(
                settings.mqtt,
                journal,
                public_url,
                frames=frames,
                telemetry=refs.telemetry,
                ota=refs.ota,
                broker=refs.broker if managed else None,
            ),
            mailbox_capacity=capacity,
            ref=refs.mqtt,
        ),
    ]
    store = journal.store
    domain: list[ChildSpec[Any]] = [
        ChildSpec(
            "accounts", lambda: Accounts(store), mailbox_capacity=capacity, ref=refs.accounts
        ),
        ChildSpec(
            "uploader",
            lambda: Uploader(store, blobs.originals, limiter),
            mailbox_capacity=capacity,
            ref=refs.uploader,
        ),
        ChildSpec(
            "album", lambda: Album(store, journal), mailbox_capacity=capacity, ref=refs.album
        ),
        ChildSpec(
            "media",
            lambda: MediaCache(store, journal, blobs.versions, limiter, originals=blobs.originals),
            mailbox_capacity=capacity,
            ref=refs.media,
        ),
        ChildSpec(
            "devices",
            lambda: DeviceRegistry(
                store,
                journal,
                album=refs.album,
                accounts=refs.accounts,
                access=allow_frames if managed else None,
            ),
            mailbox_capacity=capacity,
            ref=refs.devices,
        ),
        ChildSpec(
            "ota",
            lambda: OtaCampaigns(
                store,
                journal,
                blobs.firmware,
                signing_key,
                settings.ota,
                public_url,
                registry=refs.devices,
                frames=frames,
            ),
            mailbox_capacity=capacity,
            ref=refs.ota,
        ),
        ChildSpec(
            "telemetry",
            lambda: TelemetryMonitor(store, journal, settings.telemetry, registry=refs.devices),
            mailbox_capacity=capacity,
            ref=refs.telemetry,
        ),
        ChildSpec(
            "notifier",
            lambda: Notifier(
                store,
                journal,
                settings.notifier,
                notifications,
                accounts=refs.accounts,
                registry=refs.devices,
            ),
            mailbox_capacity=capacity,
            ref=refs.notifier,
        ),
    ]
    proxy_peers = ProxyPeers(devices=refs.devices, album=refs.album, media=refs.media)
    fleet: list[ChildSpec[Any]] = [
        ChildSpec(
            FLEET_NAME,
            lambda: FrameFleet(
                store,
                journal,
                public_url,
                settings.frames,
                frames=frames,
                peers=proxy_peers,
                mailbox_capacity=capacity,
            ),
            mailbox_capacity=capacity,
            ref=refs.fleet,
        ),
    ]
    api_peers = ApiPeers(
        uploader=refs.uploader,
        album=refs.album,
        media=refs.media,
        devices=refs.devices,
        fleet=refs.fleet,
        frames=frames,
        ota=refs.ota,
        telemetry=refs.telemetry,
        notifier=refs.notifier,
        mqtt=refs.mqtt,
        console=refs.console,
    )
    console_peers = ConsolePeers(
        accounts=refs.accounts,
        devices=refs.devices,
        fleet=refs.fleet,
        frames=frames,
        ota=refs.ota,
        telemetry=refs.telemetry,
        journal=refs.journal,
    )

    async def broker_connected(_: ActorSystem) -> str | None:
        stats = await refs.mqtt.ask(GetMqttStats())
        return None if stats.connected else "not connected to the MQTT broker"

    edge: list[ChildSpec[Any]] = [
        ChildSpec(
            "http",
            lambda: HttpGateway(
                settings.http,
                store=store,
                staging_dir=blobs.originals.staging,
                accounts=refs.accounts,
                routes=api_routes(api_peers),
                public_url=public_url,
                readiness=[broker_connected],
            ),
            mailbox_capacity=capacity,
            shutdown_timeout=max(settings.runtime.shutdown_timeout_s, 5.0),
            ref=refs.http,
        ),
        ChildSpec(
            "console",
            lambda: Console(
                settings.console,
                store_listeners=store.commit_listeners,
                notifications=notifications,
                peers=console_peers,
            ),
            mailbox_capacity=capacity,
            ref=refs.console,
        ),
    ]
    return subtree(
        "root",
        Strategy.ONE_FOR_ONE,
        [
            subtree("infra", Strategy.REST_FOR_ONE, infra),
            subtree("domain", Strategy.ONE_FOR_ONE, domain),
            subtree("frames", Strategy.ONE_FOR_ONE, fleet, ref=refs.frames_supervisor),
            subtree("edge", Strategy.ONE_FOR_ONE, edge),
        ],
    )


@dataclass(frozen=True, slots=True)
class RunningHub:
    """The hub once it is ready, as ``serve(on_ready=...)`` hands it over (tests, benchmarks)."""

    system: ActorSystem
    store: Store
    refs: HubRefs
    blobs: HubBlobs


def write_ports(data_dir: Path, ports: dict[str, int]) -> None:
    """Publish the listening ports atomically: readers never see a half-written file."""
    target = data_dir / "ports.json"
    temporary = target.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(ports))
    os.replace(temporary, target)


def _describe_tree(system: ActorSystem) -> list[str]:
    lines: list[str] = []
    stack = [system.snapshot()]
    while stack:
        node = stack.pop()
        lines.append(f"{node.path} ({node.actor_class}, {node.strategy or 'worker'})")
        stack.extend(reversed(node.children))
    return lines


MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # glibc's mallopt parameter


def _limit_malloc_arenas() -> None:
    """Keep glibc to ``MALLOC_ARENAS`` malloc arenas (as ``MALLOC_ARENA_MAX`` would).

    By default glibc gives threads that allocate at once arenas of their own, up to eight per
    core; the image workers' large short-lived buffers then stay spread over them and the
    hub's RSS creeps up for minutes under a steady load (``bench soak``). Elsewhere than glibc
    this does nothing."""
    if not sys.platform.startswith("linux"):
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return  # not glibc (musl has no mallopt)
    mallopt(_M_ARENA_MAX, MALLOC_ARENAS)


async def serve(
    settings: Settings,
    *,
    on_ready: Callable[[RunningHub], Awaitable[None]] | None = None,
) -> None:
    """Run the hub until SIGINT or SIGTERM, then shut down gracefully.

    Files the hub writes are private to its user (umask 077, the data directory 0700).

    Graceful means: the tree stops children before parents, last started first, each actor
    draining its mailbox within its shutdown timeout; then the database is closed. Raises
    ``SystemFailure`` if the root of the tree gives up, ``StoreError`` if the database in the
    data directory cannot be used (it is then left untouched).
    """
    data_dir = settings.data_path
    if settings.mqtt.mode == "managed":
        find_mosquitto(settings.mqtt)  # say how to install it before anything starts
    _limit_malloc_arenas()
    # Photos, the database and the keys are the family's alone: nothing the hub writes is
    # readable by other local users.
    os.umask(0o077)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    (data_dir / "ports.json").unlink(missing_ok=True)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with (
            open_asyncio_bridge() as bridge,
            Store.open(data_dir / DATABASE_NAME, bridge) as store,
        ):
            journal = Journal(
                store,
                max_attempts=settings.journal.max_attempts,
                batch_max=settings.journal.batch_max,
            )
            blobs = HubBlobs(
                originals=BlobStore(data_dir / BLOBS_DIR / "originals"),
                versions=BlobStore(data_dir / BLOBS_DIR / "versions"),
                firmware=BlobStore(data_dir / BLOBS_DIR / "firmware"),
            )
            limiter = trio.CapacityLimiter(IMAGE_WORKERS)
            refs = HubRefs()
            tree = hub_tree(
                settings,
                journal,
                blobs,
                limiter,
                signing_key=load_signing_key(data_dir),
                notifications=NotificationFeed(),
                refs=refs,
            )
            async with open_system(
                tree, bridge=bridge, ask_timeout=settings.runtime.ask_timeout_s
            ) as system:
                for line in _describe_tree(system):
                    log.info("started %s", line)
                http = await refs.http.ask(GetHttpAddress())
                ports = {"http": http.port}
                log.info("HTTP API on %s", http.base_url)
                if settings.mqtt.mode == "managed":
                    mqtt = await refs.broker.ask(GetBrokerAddress())
                    ports["mqtt"] = mqtt.port
                    log.info("MQTT broker (mosquitto) on %s:%d", mqtt.host, mqtt.port)
                console = await refs.console.ask(GetConsoleAddress())
                ports["console"] = console.port
                log.info("operator console on %s", console.url)
                write_ports(data_dir, ports)
                log.info("framehub ready (data in %s)", data_dir)
                if on_ready is not None:
                    await on_ready(RunningHub(system, store, refs, blobs))
                async for signum in signals:
                    log.info("received %s; shutting down", signal.Signals(signum).name)
                    break
    (data_dir / "ports.json").unlink(missing_ok=True)  # nothing listens there any more
    log.info("framehub stopped")
