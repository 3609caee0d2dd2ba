"""The fleet: keeps one proxy per paired frame running and tells them what changed.

The proxies are named by their frames' ids. On start the fleet migrates the proxies' tables,
then (once its supervisor has finished starting it) starts a proxy for every frame the
registry knows that has none. Journal consumer ``fleet``:

* ``device.registered`` / ``device.deleted``: start / stop that frame's proxy;
* ``device.updated``: the frame's albums may have changed: learn them, refresh the proxy;
* ``album.photo_added`` / ``album.photo_removed``: refresh the proxies of the frames that
  show that album (each proxy coalesces refreshes, so a burst of uploads costs a few).

Its effects are outside the journal's transaction (starting actors, telling them), and all of
them are idempotent, so redelivery after a crash is harmless.

**Sightings.** The proxies tell it their frames' heartbeats that changed nothing else
(``FrameSeen``); it writes the newest ``last_seen`` and free storage of each frame, for every
frame in one transaction (``actors.store.GroupCommit``), ``SIGHTINGS_WINDOW_S`` after the
first sighting since the last write (sooner past ``SIGHTINGS_PER_COMMIT``). A sighting never
moves ``last_seen`` back (a proxy may have written a newer one with its twin meanwhile).
Sightings are advisory: a crash or kill loses the ones not yet written, a graceful stop
writes them.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from actors.devices import Device, GetDevice, ListAllDevices, ListDevices
from actors.errors import NotFound
from actors.events import (
    AlbumPhotoAdded,
    AlbumPhotoRemoved,
    DeviceDeleted,
    DeviceRegistered,
    DeviceUpdated,
    utc_now,
)
from actors.http import PublicUrl
from actors.journal import Consumer, Journal, JournalNudge
from actors.store import Entry, GroupCommit, Store, Transaction
from config import FramesSettings
from supervision import Actor, ActorStopped, ChildSpec, MailboxFull, Request

from ._desired import ProxyPeers
from ._directory import FrameDirectory
from ._messages import FrameSeen, GetTwin, Refresh
from ._proxy import FrameProxy, ProxyMessage
from ._tables import FRAMES_MIGRATIONS, WRITE_SIGHTING
from ._views import (
    NO_TWIN,
    DeviceView,
    DeviceViewPage,
    GetDeviceView,
    ListDeviceViews,
    device_view,
)

log = logging.getLogger("framehub.frames")

FLEET_NAME = "fleet"
"""Not a frame id: those are 32 hex digits."""
SIGHTINGS_WINDOW_S = 60.0
"""How long sightings wait to be written together (so ``last_seen`` in the table lags)."""
SIGHTINGS_PER_COMMIT = 2000
MAX_SIGHTINGS_BUFFERED = 20_000


class _StartAll(msgspec.Struct, frozen=True):
    pass


class _SightingsDue(msgspec.Struct, frozen=True):
    pass


class _SightingsWritten(msgspec.Struct, frozen=True):
    pass


class ListFrameIds(Request["list[str]"], frozen=True):
    """The frames that have a proxy; answers ``list[str]``."""


FleetMessage = (
    JournalNudge
    | _StartAll
    | ListFrameIds
    | GetDeviceView
    | ListDeviceViews
    | FrameSeen
    | _SightingsDue
    | _SightingsWritten
)


class FrameFleet(Actor[FleetMessage]):
    """The fleet: see the module's docstring."""

    def __init__(
        self,
        store: Store,
        journal: Journal,
        public_url: PublicUrl,
        settings: FramesSettings,
        *,
        frames: FrameDirectory,
        peers: ProxyPeers,
        mailbox_capacity: int = 1000,
    ) -> None:
        self._frames = frames
        self._peers = peers
        self._store = store
        self._journal = journal
        self._public_url = public_url
        self._settings = settings
        self._capacity = mailbox_capacity
        self._consumer: Consumer | None = None
        self._albums: dict[str, list[str]] = {}
        """frame_id -> the albums it shows."""
        self._started = False
        self._sightings: GroupCommit[FrameSeen, FleetMessage] = GroupCommit(
            self,
            store,
            _write_sightings,
            window_s=SIGHTINGS_WINDOW_S,
            batch_size=SIGHTINGS_PER_COMMIT,
            max_buffered=MAX_SIGHTINGS_BUFFERED,
            window_ended=_SightingsDue(),
            committed=_SightingsWritten(),
        )

    async def on_start(self) -> None:
        await self._store.migrate("frames", FRAMES_MIGRATIONS)
        self._consumer = await self._journal.consume(
            "fleet",
            [
                "device.registered",
                "device.updated",
                "device.deleted",
                "album.photo_added",
                "album.photo_removed",
            ],
            self.context,
            self._on_event,
        )
        # Not here: the supervisor is still starting this actor and would not take children.
        self.context.ref.nudge(_StartAll())

    async def on_stop(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
        await self._sightings.close()

    async def receive(self, message: FleetMessage) -> Any:
        self._sightings.check()
        if await self._sightings.took(message):
            return None
        match message:
            case FrameSeen():
                self._sightings.add(message)
                await self._sightings.added()
            case _StartAll():
                await self._start_all()
            case ListFrameIds():
                return sorted(self._albums)
            case GetDeviceView(device_id=device_id):
                device = await self._peers.devices.ask(GetDevice(device_id=device_id))
                return await self._view(device)
            case ListDeviceViews(limit=None):
                devices = await self._peers.devices.ask(ListAllDevices())
                return DeviceViewPage(items=[await self._view(d) for d in devices])
            case ListDeviceViews(limit=int(limit), cursor=cursor):
                page = await self._peers.devices.ask(ListDevices(limit=limit, cursor=cursor))
                items = [await self._view(d) for d in page.items]
                return DeviceViewPage(items=items, next_cursor=page.next_cursor)
        if self._started:
            assert self._consumer is not None
            await self._consumer.drain()
        return None

    async def _start_all(self) -> None:
        devices = await self._peers.devices.ask(ListAllDevices())
        self._albums = {device.device_id: device.album_ids for device in devices}
        specs = [self._spec(d.device_id) for d in devices if not self._running(d.device_id)]
        if specs:
            await self._frames.start(specs)
        log.info("%d frame proxies running (%d started now)", len(devices), len(specs))
        self._started = True

    async def _view(self, device: Device) -> DeviceView:
        proxy = self._frames.find(device.device_id)
        twin = NO_TWIN if proxy is None else await proxy.ask(GetTwin())
        return device_view(device, twin)

    def _spec(self, frame_id: str) -> ChildSpec[ProxyMessage]:
        store, public_url, settings, peers, fleet = (
            self._store,
            self._public_url,
            self._settings,
            self._peers,
            self.context.ref,
        )
        return ChildSpec(
            frame_id,
            lambda: FrameProxy(frame_id, store, public_url, settings, peers, fleet),
            mailbox_capacity=self._capacity,
        )

    def _running(self, frame_id: str) -> bool:
        return self._frames.running(frame_id)

    # -- journal handlers ----------------------------------------------------------------------

    async def _on_event(self, entry: Entry, tx: Transaction) -> None:
        match entry.event:
            case DeviceRegistered(device_id=frame_id):
                self._albums.setdefault(frame_id, [])
                if not self._running(frame_id):
                    await self._frames.start([self._spec(frame_id)])
            case DeviceUpdated(device_id=frame_id):
                try:
                    device = await self._peers.devices.ask(GetDevice(device_id=frame_id))
                except NotFound:
                    return
                self._albums[frame_id] = device.album_ids
                self._refresh(frame_id)
            case DeviceDeleted(device_id=frame_id):
                self._albums.pop(frame_id, None)
                if self._running(frame_id):
                    await self._frames.stop(frame_id)
            case AlbumPhotoAdded(album_id=album_id) | AlbumPhotoRemoved(album_id=album_id):
                for frame_id, albums in self._albums.items():
                    if album_id in albums:
                        self._refresh(frame_id)
            case _:
                pass

    def _refresh(self, frame_id: str) -> None:
        proxy = self._frames.find(frame_id)
        if proxy is None:
            return
        try:
            proxy.tell_nowait(Refresh())
        except ActorStopped:
            pass
        except MailboxFull:
            # Its periodic refresh catches up; a wedged proxy must not stall the others.
            log.warning("frame %s is too busy to refresh now", frame_id)


def _write_sightings(tx: Transaction, sightings: list[FrameSeen]) -> None:
    """The newest of ``sightings`` for each frame (``GroupCommit``)."""
    newest: dict[str, FrameSeen] = {}
    for seen in sightings:
        known = newest.get(seen.frame_id)
        if known is None or known.last_seen < seen.last_seen:
            newest[seen.frame_id] = seen
    now = utc_now()
    tx.executemany(
        WRITE_SIGHTING,
        [(s.last_seen, s.free_bytes, now, s.frame_id, s.last_seen) for s in newest.values()],
    )
