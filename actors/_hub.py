"""The hub's supervision tree and the ``serve`` lifecycle."""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from actors.accounts import Accounts
from actors.album import Album
from actors.api import ROUTES
from actors.blobs import BlobStore
from actors.console import CONSOLE_PATH, Console, ConsoleAddress, GetConsoleAddress
from actors.devices import DeviceRegistry
from actors.frames import FLEET_NAME, FrameFleet
from actors.http import GetHttpAddress, HttpAddress, HttpGateway, PublicUrl
from actors.journal import AuditLog, Journal, JournalKeeper
from actors.media import MediaCache
from actors.mqtt import (
    MQTT_PATH,
    BrokerAccess,
    BrokerAddress,
    GetBrokerAddress,
    GetMqttStats,
    MosquittoBroker,
    MqttBridge,
    MqttStats,
    find_mosquitto,
)
from actors.notifier import NotificationFeed, Notifier
from actors.ota import OTA_PATH, OtaCampaigns, SigningKey, load_signing_key
from actors.store import Store
from actors.telemetry import TELEMETRY_PATH, TelemetryMonitor
from actors.uploader import Uploader
from config import Settings
from supervision import (
    ActorSystem,
    Backoff,
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


def hub_tree(
    settings: Settings,
    journal: Journal,
    originals: BlobStore,
    versions: BlobStore,
    limiter: trio.CapacityLimiter,
    *,
    firmware: BlobStore,
    signing_key: SigningKey,
    notifications: NotificationFeed,
) -> ChildSpec[Any]:
    """The root of the hub: infra, domain, frames and edge subtrees (ARCHITECTURE.md).

    The database and the journal are resources opened before the tree and closed after it;
    the actors receive them through their constructors.
    """
    runtime = settings.runtime
    intensity = Intensity(max_restarts=runtime.max_restarts, within_s=runtime.restart_window_s)
    backoff = Backoff(
        min_s=runtime.backoff_min_s,
        max_s=runtime.backoff_max_s,
        jitter=runtime.backoff_jitter,
        reset_s=runtime.backoff_reset_s,
    )

    def subtree(name: str, strategy: Strategy, children: list[ChildSpec[Any]]) -> ChildSpec[Any]:
        return supervisor(
            name,
            children,
            strategy=strategy,
            intensity=intensity,
            backoff=backoff,
            shutdown_timeout=runtime.shutdown_timeout_s * 4,
        )

    capacity = runtime.mailbox_capacity
    retention_s = settings.journal.retention_hours * 3600
    broker_access = BrokerAccess()  # frames' broker access outlives broker restarts
    public_url = PublicUrl(settings.http.public_url.rstrip("/"))
    broker: list[ChildSpec[Any]] = []
    broker_path: str | None = None
    if settings.mqtt.mode == "managed":
        broker_path = "/infra/broker"
        broker.append(
            ChildSpec(
                "broker",
                lambda: MosquittoBroker(settings.mqtt, settings.data_path, access=broker_access),
                mailbox_capacity=capacity,
                shutdown_timeout=max(runtime.shutdown_timeout_s, 5.0),
            )
        )
    infra: list[ChildSpec[Any]] = [
        ChildSpec(
            "journal",
            lambda: JournalKeeper(journal, retention_s=retention_s),
            mailbox_capacity=capacity,
        ),
        ChildSpec("audit", lambda: AuditLog(journal), mailbox_capacity=capacity),
        *broker,
        ChildSpec(
            "mqtt",
            lambda: MqttBridge(
                settings.mqtt,
                journal,
                public_url,
                broker=broker_path,
                telemetry=TELEMETRY_PATH,
                ota=OTA_PATH,
            ),
            mailbox_capacity=capacity,
        ),
    ]
    store = journal.store
    domain: list[ChildSpec[Any]] = [
        ChildSpec("accounts", lambda: Accounts(store), mailbox_capacity=capacity),
        ChildSpec(
            "uploader",
            lambda: Uploader(store, originals, limiter),
            mailbox_capacity=capacity,
        ),
        ChildSpec("album", lambda: Album(store, journal), mailbox_capacity=capacity),
        ChildSpec(
            "media",
            lambda: MediaCache(store, journal, versions, limiter, originals=originals),
            mailbox_capacity=capacity,
        ),
        ChildSpec(
            "devices",
            lambda: DeviceRegistry(store, journal, broker=broker_path),
            mailbox_capacity=capacity,
        ),
        ChildSpec(
            "ota",
            lambda: OtaCampaigns(store, journal, firmware, signing_key, settings.ota, public_url),
            mailbox_capacity=capacity,
        ),
        ChildSpec(
            "telemetry",
            lambda: TelemetryMonitor(store, journal, settings.telemetry),
            mailbox_capacity=capacity,
        ),
        ChildSpec(
            "notifier",
            lambda: Notifier(store, journal, settings.notifier, notifications),
            mailbox_capacity=capacity,
        ),
    ]
    frames: list[ChildSpec[Any]] = [
        ChildSpec(
            FLEET_NAME,
            lambda: FrameFleet(
                store, journal, public_url, settings.frames, mailbox_capacity=capacity
            ),
            mailbox_capacity=capacity,
        ),
    ]
    edge: list[ChildSpec[Any]] = [
        ChildSpec(
            "http",
            lambda: HttpGateway(
                settings.http,
                store=store,
                staging_dir=originals.staging,
                routes=ROUTES,
                public_url=public_url,
                readiness=[_broker_connected],
            ),
            mailbox_capacity=capacity,
            shutdown_timeout=max(settings.runtime.shutdown_timeout_s, 5.0),
        ),
        ChildSpec(
            "console",
            lambda: Console(
                settings.console,
                store_listeners=store.commit_listeners,
                notifications=notifications,
            ),
            mailbox_capacity=capacity,
        ),
    ]
    return subtree(
        "root",
        Strategy.ONE_FOR_ONE,
        [
            subtree("infra", Strategy.REST_FOR_ONE, infra),
            subtree("domain", Strategy.ONE_FOR_ONE, domain),
            subtree("frames", Strategy.ONE_FOR_ONE, frames),
            subtree("edge", Strategy.ONE_FOR_ONE, edge),
        ],
    )


async def _broker_connected(system: ActorSystem) -> str | None:
    stats: MqttStats = await system.lookup(MQTT_PATH).ask(GetMqttStats())
    return None if stats.connected else "not connected to the MQTT broker"


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
    on_ready: Callable[[ActorSystem, Store], Awaitable[None]] | None = None,
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
            originals = BlobStore(data_dir / BLOBS_DIR / "originals")
            versions = BlobStore(data_dir / BLOBS_DIR / "versions")
            limiter = trio.CapacityLimiter(IMAGE_WORKERS)
            tree = hub_tree(
                settings,
                journal,
                originals,
                versions,
                limiter,
                firmware=BlobStore(data_dir / BLOBS_DIR / "firmware"),
                signing_key=load_signing_key(data_dir),
                notifications=NotificationFeed(),
            )
            async with open_system(
                tree, bridge=bridge, ask_timeout=settings.runtime.ask_timeout_s
            ) as system:
                for line in _describe_tree(system):
                    log.info("started %s", line)
                http: HttpAddress = await system.lookup("/edge/http").ask(GetHttpAddress())
                ports = {"http": http.port}
                log.info("HTTP API on %s", http.base_url)
                if settings.mqtt.mode == "managed":
                    mqtt: BrokerAddress = await system.lookup("/infra/broker").ask(
                        GetBrokerAddress()
                    )
                    ports["mqtt"] = mqtt.port
                    log.info("MQTT broker (mosquitto) on %s:%d", mqtt.host, mqtt.port)
                console: ConsoleAddress = await system.lookup(CONSOLE_PATH).ask(GetConsoleAddress())
                ports["console"] = console.port
                log.info("operator console on %s", console.url)
                write_ports(data_dir, ports)
                log.info("framehub ready (data in %s)", data_dir)
                if on_ready is not None:
                    await on_ready(system, store)
                async for signum in signals:
                    log.info("received %s; shutting down", signal.Signals(signum).name)
                    break
    (data_dir / "ports.json").unlink(missing_ok=True)  # nothing listens there any more
    log.info("framehub stopped")
