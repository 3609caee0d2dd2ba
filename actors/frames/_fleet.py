"""``/frames/fleet``: keeps one proxy per paired frame running and tells them what changed.

It is the first child of the ``frames`` supervisor; the proxies are its dynamic siblings
(``/frames/<frame_id>``), so a proxy's path is the frame's id. On start it migrates the
proxies' tables, then (once the supervisor has finished starting it) starts a proxy for every
frame the registry knows that has none. Journal consumer ``fleet``:

* ``device.registered`` / ``device.deleted``: start / stop that frame's proxy;
* ``device.updated``: the frame's albums may have changed: learn them, refresh the proxy;
* ``album.photo_added`` / ``album.photo_removed``: refresh the proxies of the frames that
  show that album (each proxy coalesces refreshes, so a burst of uploads costs a few).

Its effects are outside the journal's transaction (starting actors, telling them), and all of
them are idempotent, so redelivery after a crash is harmless.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from actors.devices import DEVICES_PATH, Device, DevicePage, GetDevice, ListDevices
from actors.errors import NotFound
from actors.events import (
    AlbumPhotoAdded,
    AlbumPhotoRemoved,
    DeviceDeleted,
    DeviceRegistered,
    DeviceUpdated,
)
from actors.http import PublicUrl
from actors.journal import Consumer, Journal, JournalNudge
from actors.store import Entry, Store, Transaction
from config import FramesSettings
from supervision import Actor, ActorNotFound, ActorStopped, ChildSpec, MailboxFull

from ._proxy import FRAMES_MIGRATIONS, FrameProxy, Refresh

log = logging.getLogger("framehub.frames")

FRAMES_PATH = "/frames"
FLEET_NAME = "fleet"
"""Not a frame id: those are 32 hex digits."""


class _StartAll(msgspec.Struct, frozen=True):
    pass


class ListFrameIds(msgspec.Struct, frozen=True):
    """The frames that have a proxy; answers ``list[str]``."""


FleetMessage = JournalNudge | _StartAll | ListFrameIds


class FrameFleet(Actor[FleetMessage]):
    """``/frames/fleet``: see the module's docstring."""

    def __init__(
        self,
        store: Store,
        journal: Journal,
        public_url: PublicUrl,
        settings: FramesSettings,
        *,
        mailbox_capacity: int = 1000,
    ) -> None:
        self._store = store
        self._journal = journal
        self._public_url = public_url
        self._settings = settings
        self._capacity = mailbox_capacity
        self._consumer: Consumer | None = None
        self._albums: dict[str, list[str]] = {}
        """frame_id -> the albums it shows."""
        self._started = False

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

    async def receive(self, message: FleetMessage) -> Any:
        match message:
            case _StartAll():
                await self._start_all()
            case ListFrameIds():
                return sorted(self._albums)
        if self._started:
            assert self._consumer is not None
            await self._consumer.drain()
        return None

    async def _start_all(self) -> None:
        registry = self.context.system.lookup(DEVICES_PATH)
        devices: list[Device] = []
        cursor: str | None = None
        while True:
            page: DevicePage = await registry.ask(ListDevices(limit=500, cursor=cursor))
            devices.extend(page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
        self._albums = {device.device_id: device.album_ids for device in devices}
        specs = [self._spec(d.device_id) for d in devices if not self._running(d.device_id)]
        if specs:
            await self.context.system.start_children(FRAMES_PATH, specs)
        log.info("%d frame proxies running (%d started now)", len(devices), len(specs))
        self._started = True

    def _spec(self, frame_id: str) -> ChildSpec[Any]:
        store, public_url, settings = self._store, self._public_url, self._settings
        return ChildSpec(
            frame_id,
            lambda: FrameProxy(frame_id, store, public_url, settings),
            mailbox_capacity=self._capacity,
        )

    def _running(self, frame_id: str) -> bool:
        try:
            return self.context.system.lookup(f"{FRAMES_PATH}/{frame_id}").alive
        except ActorNotFound:
            return False

    # -- journal handlers ----------------------------------------------------------------------

    async def _on_event(self, entry: Entry, tx: Transaction) -> None:
        system = self.context.system
        match entry.event:
            case DeviceRegistered(device_id=frame_id):
                self._albums.setdefault(frame_id, [])
                if not self._running(frame_id):
                    await system.start_child(FRAMES_PATH, self._spec(frame_id))
            case DeviceUpdated(device_id=frame_id):
                try:
                    device: Device = await system.lookup(DEVICES_PATH).ask(
                        GetDevice(device_id=frame_id)
                    )
                except NotFound:
                    return
                self._albums[frame_id] = device.album_ids
                self._refresh(frame_id)
            case DeviceDeleted(device_id=frame_id):
                self._albums.pop(frame_id, None)
                if self._running(frame_id):
                    await system.stop_child(FRAMES_PATH, frame_id)
            case AlbumPhotoAdded(album_id=album_id) | AlbumPhotoRemoved(album_id=album_id):
                for frame_id, albums in self._albums.items():
                    if album_id in albums:
                        self._refresh(frame_id)
            case _:
                pass

    def _refresh(self, frame_id: str) -> None:
        try:
            self.context.system.lookup(f"{FRAMES_PATH}/{frame_id}").tell_nowait(Refresh())
        except (ActorNotFound, ActorStopped):
            pass
        except MailboxFull:
            # Its periodic refresh catches up; a wedged proxy must not stall the others.
            log.warning("frame %s is too busy to refresh now", frame_id)
