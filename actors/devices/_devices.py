"""The device registry (seed device_service): the frames paired with the hub.

The registry is the durable record of each frame: what it is (name, model, hardware version,
panel), its MQTT user (the password only as a ``$7$`` hash; the plain one is shown once, at
pairing), the albums assigned to it, the firmware version it last completed an update to,
when it was last heard of and whether it is active. What a frame is doing right now (online,
on screen, sync progress, health) is its proxy's twin.

The actor answers from memory, rebuilt from ``devices`` and ``device_albums`` in
``on_start`` and changed only once a transaction has committed. A deleted device keeps its
row (``deleted = 1``), so its id is never handed out again and the journal's events about it
keep naming a known device.

In managed mode every change of who may use the broker (pairing, album assignment,
unpairing) is pushed to the managed broker as the whole access list *before* the change
commits: a frame told to subscribe to a newly assigned album is already allowed to.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterable
from typing import Any, Literal

import msgspec
import trio

from actors.accounts import AccountsMessage, IssueFrameToken, RevokeTokens
from actors.album import AlbumMessage, GetAlbumContents
from actors.errors import Invalid, NotFound
from actors.events import (
    AlbumDeleted,
    Audit,
    DeviceDeleted,
    DeviceOffline,
    DeviceOnline,
    DeviceRegistered,
    DeviceUpdated,
    FirmwareUploaded,
    TelemetryDataReceived,
    UpdateCompleted,
    UpdateRolledBack,
    new_id,
    utc_now,
)
from actors.journal import Consumer, Journal, JournalNudge
from actors.media import MAX_FRAME_SIDE
from actors.store import DEFAULT_PAGE, Entry, Rows, SortedRecords, Store, Transaction
from actors.text import check_text
from supervision import Actor, ActorCrashed, ActorRef, DomainError, Request

from ._access import FrameAccess, FrameAccessSink, hash_password

log = logging.getLogger("framehub.devices")


MAX_TEXT_LENGTH = 64
"""Longest name, model or hardware version."""
MAX_PANEL_SIDE = MAX_FRAME_SIDE
"""A panel side the media cache can make versions for."""

Orientation = Literal["landscape", "portrait"]
ORIENTATIONS: tuple[Orientation, ...] = ("landscape", "portrait")

DEVICE_MIGRATIONS = (
    """
    CREATE TABLE devices (
        device_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        model TEXT NOT NULL,
        hw_version TEXT NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        orientation TEXT NOT NULL CHECK (orientation IN ('landscape', 'portrait')),
        created_at TEXT NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0
    );
    """,
    """
    ALTER TABLE devices ADD COLUMN mqtt_username TEXT NOT NULL DEFAULT '';
    ALTER TABLE devices ADD COLUMN mqtt_password_hash TEXT NOT NULL DEFAULT '';
    ALTER TABLE devices ADD COLUMN firmware_version TEXT;
    ALTER TABLE devices ADD COLUMN last_seen TEXT;
    ALTER TABLE devices ADD COLUMN active INTEGER NOT NULL DEFAULT 1;
    CREATE TABLE device_albums (
        device_id TEXT NOT NULL,
        album_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        PRIMARY KEY (device_id, album_id)
    );
    """,
    """
    ALTER TABLE devices ADD COLUMN offline_at TEXT;
    """,
)
"""The ``devices`` and ``device_albums`` schema."""

MAX_ALBUMS = 100
"""Most albums one frame shows."""


# -- messages ----------------------------------------------------------------------------------


class RegisterDevice(Request["Registered"], frozen=True, kw_only=True):
    """Pair a new frame; answers ``Device`` (``Invalid`` for a bad field).

    ``width`` x ``height`` is the panel in pixels as ``orientation`` mounts it or as the panel
    reports it natively: ``Device.panel`` turns it the way the frame hangs. ``user_id`` is the
    admin who paired it (None: the hub itself), for the audit of ``device.registered``.
    """

    name: str
    model: str
    hw_version: str
    width: int
    height: int
    orientation: Orientation
    user_id: str | None = None
    correlation_id: str | None = None


class PairDevice(Request["Paired"], frozen=True, kw_only=True):
    """Pair a new frame end to end: register it and issue its API token; answers ``Paired``.

    Nothing is left half done: if the token cannot be issued (after ``TOKEN_ATTEMPTS``
    tries, so that one crash of the accounts actor does not fail it), or the asker gave up
    before the answer (whose secrets are shown only there), the frame is unpaired again.
    """

    registration: RegisterDevice


class GetDevice(Request["Device"], frozen=True, kw_only=True):
    """One device; answers ``Device`` (``NotFound`` if unknown or deleted)."""

    device_id: str


class ListDevices(Request["DevicePage"], frozen=True, kw_only=True):
    """Every device, oldest first; answers ``DevicePage``."""

    limit: int = DEFAULT_PAGE
    cursor: str | None = None


class ListAllDevices(Request["list[Device]"], frozen=True):
    """Every device, oldest first, in one list (for actors that keep a fact per frame)."""


class DeleteDevice(Request[None], frozen=True, kw_only=True):
    """Unpair a device and publish ``device.deleted``; answers None (``NotFound`` if unknown).

    Its API tokens are revoked first (asked of the accounts actor); the media cache drops the
    frame's schedules and cache entries on the event.
    """

    device_id: str
    user_id: str | None = None
    correlation_id: str | None = None


class SetDeviceAlbums(Request["Device"], frozen=True, kw_only=True):
    """Choose the albums a frame shows, in order; answers the ``Device``.

    ``NotFound`` for an unknown device or album. Publishes ``device.updated`` (the frame's
    proxy then sends it a full sync) unless nothing changed.
    """

    device_id: str
    album_ids: list[str]
    user_id: str | None = None
    correlation_id: str | None = None


class ListDeviceAccess(Request["list[FrameAccess]"], frozen=True):
    """Every frame's broker user and albums; answers ``list[FrameAccess]`` (for
    ``run.py mqtt-acl`` and an external broker)."""


DeviceMessage = (
    JournalNudge
    | RegisterDevice
    | PairDevice
    | GetDevice
    | ListDevices
    | ListAllDevices
    | DeleteDevice
    | SetDeviceAlbums
    | ListDeviceAccess
)


class Device(msgspec.Struct, frozen=True, kw_only=True):
    device_id: str
    name: str
    model: str
    hw_version: str
    width: int
    height: int
    orientation: Orientation
    created_at: str
    album_ids: list[str] = []
    mqtt_username: str = ""
    firmware_version: str | None = None
    """Set when an OTA update completes (seed ``update.completed``)."""
    last_seen: str | None = None
    """When telemetry last arrived (seed ``telemetry.data.received``)."""
    active: bool = True
    """False while the frame is offline (and from pairing until it first comes online);
    telemetry or its return reactivates it."""

    @property
    def panel(self) -> tuple[int, int]:
        """The panel's width and height as the frame hangs: the long side follows
        ``orientation`` (a 1024x600 panel in portrait is 600 wide and 1024 high)."""
        short, long = sorted((self.width, self.height))
        return (long, short) if self.orientation == "landscape" else (short, long)


class DevicePage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[Device]
    next_cursor: str | None


class Paired(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to ``PairDevice``: the device, its MQTT password and its API token, shown
    only here (neither is kept)."""

    device: Device
    mqtt_password: str
    token: str

    def __repr__(self) -> str:
        return f"Paired(device_id={self.device.device_id!r})"


class Registered(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to ``RegisterDevice``: the device and its MQTT password, never kept."""

    device: Device
    mqtt_password: str

    def __repr__(self) -> str:
        return f"Registered(device_id={self.device.device_id!r})"


TOKEN_ATTEMPTS = 3
"""Asks of a frame's token after its device was registered (see ``PairDevice``)."""


class AskerGone(DomainError):
    """The pairing's asker gave up before its answer: the frame was unpaired again."""


# -- checks ------------------------------------------------------------------------------------


def check_side(value: int, what: str) -> int:
    if not 1 <= value <= MAX_PANEL_SIDE:
        raise Invalid(f"{what} must be between 1 and {MAX_PANEL_SIDE}, got {value}")
    return value


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Natural order of hardware and firmware versions: "rev10" after "rev9", "1.10" after
    "1.9" (numbers compare as numbers, other parts as text, case-insensitively)."""
    parts = re.findall(r"\d+|[^\d.\-_ ]+", version.lower())
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts)


def compatible(devices: Iterable[Device], firmware: FirmwareUploaded) -> list[Device]:
    """The frames ``firmware`` is for: its model, at least its minimum hardware version."""
    floor = version_key(firmware.min_hw_version)
    return [d for d in devices if d.model == firmware.model and version_key(d.hw_version) >= floor]


async def read_frame_access(store: Store) -> list[FrameAccess]:
    """Every paired frame's broker user and albums, read from the registry's tables: for
    ``run.py mqtt-acl``, which may run next to a hub (it only reads)."""
    albums: dict[str, list[str]] = {}
    for device_id, album_id in await store.fetch_all(
        "SELECT device_id, album_id FROM device_albums ORDER BY device_id, position"
    ):
        albums.setdefault(device_id, []).append(album_id)
    rows = await store.fetch_all(
        "SELECT device_id, mqtt_username, mqtt_password_hash FROM devices "
        "WHERE deleted = 0 AND mqtt_username != '' ORDER BY created_at, device_id"
    )
    return [
        FrameAccess(
            frame_id=device_id,
            username=username,
            password_hash=password_hash,
            album_ids=albums.get(device_id, []),
        )
        for device_id, username, password_hash in rows
    ]


# -- the actor ---------------------------------------------------------------------------------

DEVICES = Rows(Device, omit={"album_ids"})
"""A ``devices`` row is a ``Device`` (its albums are in ``device_albums``), then the frame's
``mqtt_password_hash``, ``offline_at`` and ``deleted``."""


class DeviceRegistry(Actor[DeviceMessage]):
    """The device registry: owns ``devices`` and ``device_albums``; publishes
    ``device.registered``, ``device.updated`` and ``device.deleted``.

    Journal consumer ``devices`` (seed handlers) on ``firmware.uploaded`` (tell each compatible
    frame's record, by model and minimum hardware version, with ``device.updated`` saying
    ``firmware_available``), ``update.completed`` and ``update.rolled_back`` (record the
    firmware version), ``telemetry.data.received`` (``last_seen``; reactivate), ``device.online`` /
    ``device.offline`` (active or not) and ``album.deleted`` (drop it from every frame).
    ``album`` is asked whether albums exist; ``access`` takes the frames' broker access after
    each change (None with an external broker).
    """

    def __init__(
        self,
        store: Store,
        journal: Journal,
        *,
        album: ActorRef[AlbumMessage],
        accounts: ActorRef[AccountsMessage],
        access: FrameAccessSink | None = None,
    ) -> None:
        self._accounts = accounts
        self._store = store
        self._journal = journal
        self._album = album
        self._send_access = access
        self._consumer: Consumer | None = None
        self._devices: SortedRecords[Device, tuple[str, str]] = SortedRecords(
            lambda d: (d.created_at, d.device_id), tuple[str, str]
        )
        """The devices not deleted, by id."""
        self._password_hashes: dict[str, str] = {}
        self._offline_at: dict[str, str] = {}
        """When each frame last went offline (``device.offline``)."""
        self._access_stale = False
        """An event changed the frames' albums: the broker's list must be pushed again."""

    async def on_start(self) -> None:
        await self._store.migrate("devices", DEVICE_MIGRATIONS)
        albums: dict[str, list[str]] = {}
        for device_id, album_id in await self._store.fetch_all(
            "SELECT device_id, album_id FROM device_albums ORDER BY device_id, position"
        ):
            albums.setdefault(device_id, []).append(album_id)
        for row in await self._store.fetch_all(
            f"SELECT {DEVICES.columns}, mqtt_password_hash, offline_at FROM devices "
            "WHERE deleted = 0"
        ):
            device = DEVICES.of(row)
            if device.device_id in albums:
                device = msgspec.structs.replace(device, album_ids=albums[device.device_id])
            self._devices[device.device_id] = device
            password_hash, offline_at = row[len(DEVICES) :]
            self._password_hashes[device.device_id] = password_hash
            if offline_at is not None:
                self._offline_at[device.device_id] = offline_at
        await self._push_access(self._access())
        self._consumer = await self._journal.consume(
            "devices",
            [
                "firmware.uploaded",
                "update.completed",
                "update.rolled_back",
                "telemetry.data.received",
                "device.online",
                "device.offline",
                "album.deleted",
            ],
            self.context,
            self._on_event,
        )

    async def on_stop(self) -> None:
        if self._consumer is not None:
            self._consumer.close()

    async def receive(self, message: DeviceMessage) -> Any:
        assert self._consumer is not None
        await self._consumer.drain()
        if self._access_stale:
            self._access_stale = False
            await self._push_access(self._access())
        match message:
            case JournalNudge():
                return None
            case RegisterDevice():
                return await self._register(message)
            case PairDevice():
                return await self._pair(message)
            case GetDevice(device_id=device_id):
                return self._device(device_id)
            case ListDevices(limit=limit, cursor=cursor):
                return self._list(limit, cursor)
            case ListAllDevices():
                return self._devices.ordered()
            case DeleteDevice():
                return await self._delete(message)
            case SetDeviceAlbums():
                return await self._set_albums(message)
            case ListDeviceAccess():
                return self._access()

    # -- requests ------------------------------------------------------------------------------

    async def _register(self, message: RegisterDevice) -> Registered:
        if message.orientation not in ORIENTATIONS:
            raise Invalid(f"orientation must be one of {', '.join(ORIENTATIONS)}")
        device_id = new_id()
        password = secrets.token_urlsafe(24)
        password_hash = hash_password(password)
        device = Device(
            device_id=device_id,
            name=check_text(message.name, "name", MAX_TEXT_LENGTH),
            model=check_text(message.model, "model", MAX_TEXT_LENGTH),
            hw_version=check_text(message.hw_version, "hw_version", MAX_TEXT_LENGTH),
            width=check_side(message.width, "width"),
            height=check_side(message.height, "height"),
            orientation=message.orientation,
            created_at=utc_now(),
            mqtt_username=f"frame-{device_id}",
            active=False,  # until it first comes online
        )
        await self._push_access([*self._access(), self._access_of(device, password_hash)])
        async with self._store.transaction() as tx:
            tx.execute(
                f"INSERT INTO devices ({DEVICES.columns}, mqtt_password_hash, offline_at, deleted) "
                f"VALUES ({DEVICES.placeholders}, ?, NULL, 0)",
                (*DEVICES.values(device), password_hash),
            )
            tx.publish(
                DeviceRegistered(
                    audit=Audit.user_or_system(message.user_id, "devices"),
                    correlation_id=message.correlation_id or new_id(),
                    device_id=device.device_id,
                    name=device.name,
                    model=device.model,
                    hw_version=device.hw_version,
                    width=device.width,
                    height=device.height,
                    orientation=device.orientation,
                )
            )
        self._devices[device.device_id] = device
        self._password_hashes[device.device_id] = password_hash
        return Registered(device=device, mqtt_password=password)

    async def _pair(self, message: PairDevice) -> Paired:
        registered = await self._register(message.registration)
        device = registered.device
        try:
            token = await self._frame_token(device)
            if self.context.asker_gone:
                raise AskerGone(f"nobody took the credentials of frame {device.device_id}")
        except BaseException:
            with trio.CancelScope(shield=True):
                await self._unpair(device.device_id, message.registration)
            raise
        return Paired(device=device, mqtt_password=registered.mqtt_password, token=token)

    async def _frame_token(self, device: Device) -> str:
        for attempt in range(1, TOKEN_ATTEMPTS + 1):
            try:
                return await self._accounts.ask(
                    IssueFrameToken(frame_id=device.device_id, name=device.name)
                )
            except ActorCrashed:
                if attempt == TOKEN_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    async def _unpair(self, device_id: str, registration: RegisterDevice) -> None:
        """Undo a pairing that failed after the device was registered (best effort: logged)."""
        try:
            await self._delete(
                DeleteDevice(
                    device_id=device_id,
                    user_id=registration.user_id,
                    correlation_id=registration.correlation_id,
                )
            )
        except Exception:
            log.exception("could not unpair half-paired frame %s", device_id)

    def _device(self, device_id: str) -> Device:
        device = self._devices.get(device_id)
        if device is None:
            raise NotFound(f"no device {device_id}")
        return device

    def _list(self, limit: int, cursor: str | None) -> DevicePage:
        page, next_cursor = self._devices.page(limit, cursor)
        return DevicePage(items=page, next_cursor=next_cursor)

    async def _delete(self, message: DeleteDevice) -> None:
        device = self._device(message.device_id)
        # Tokens first: once the device is gone a repeated delete is a NotFound, so a failure
        # between the two steps must leave the device there for the retry to revoke again.
        await self._accounts.ask(RevokeTokens(kind="frame", principal_id=device.device_id))
        async with self._store.transaction() as tx:
            tx.execute("UPDATE devices SET deleted = 1 WHERE device_id = ?", (device.device_id,))
            tx.execute("DELETE FROM device_albums WHERE device_id = ?", (device.device_id,))
            tx.publish(
                DeviceDeleted(
                    audit=Audit.user_or_system(message.user_id, "devices"),
                    correlation_id=message.correlation_id or new_id(),
                    device_id=device.device_id,
                )
            )
        self._devices.pop(device.device_id, None)
        self._password_hashes.pop(device.device_id, None)
        # After the commit: the frame is locked out at once, and a failed reload (the broker
        # restarting) is repaired by the broker's restart, which rewrites the same list.
        await self._push_access(self._access())

    async def _set_albums(self, message: SetDeviceAlbums) -> Device:
        device = self._device(message.device_id)
        album_ids = list(dict.fromkeys(message.album_ids))
        if len(album_ids) > MAX_ALBUMS:
            raise Invalid(f"a frame shows at most {MAX_ALBUMS} albums")
        if album_ids == device.album_ids:
            return device
        contents = await self._album.ask(GetAlbumContents(album_ids=album_ids))
        if contents.missing:
            raise NotFound(f"no album {', '.join(contents.missing)}")
        updated = msgspec.structs.replace(device, album_ids=album_ids)
        await self._push_access(self._access(replacing=updated))
        async with self._store.transaction() as tx:
            self._stage_albums(tx, updated, message.user_id, message.correlation_id)
        self._devices[updated.device_id] = updated
        return updated

    # -- journal handlers ----------------------------------------------------------------------

    async def _on_event(self, entry: Entry, tx: Transaction) -> None:
        match entry.event:
            case FirmwareUploaded() as firmware:
                for device in compatible(self._devices.values(), firmware):
                    if device.firmware_version == firmware.version:
                        continue
                    tx.publish(
                        DeviceUpdated(
                            audit=Audit.system("devices"),
                            correlation_id=firmware.correlation_id,
                            device_id=device.device_id,
                            changes={"firmware_available": firmware.version},
                        )
                    )
            case (
                UpdateCompleted(device_id=device_id, firmware_version=version)
                | UpdateRolledBack(device_id=device_id, firmware_version=version)
            ):
                self._change(tx, device_id, firmware_version=version)
            case TelemetryDataReceived(device_id=device_id, last_sample_at=seen):
                known = self._devices.get(device_id)
                if known is not None and (known.last_seen or "") < seen:
                    # Samples from before the frame went offline (the coalesced event may
                    # come after device.offline) do not bring it back.
                    back = seen > self._offline_at.get(device_id, "")
                    self._change(tx, device_id, last_seen=seen, active=back or known.active)
            case DeviceOnline(device_id=device_id):
                self._change(tx, device_id, active=True)
            case DeviceOffline(device_id=device_id, occurred_at=occurred_at):
                self._offline_at[device_id] = occurred_at
                self._change(tx, device_id, active=False, offline_at=occurred_at)
            case AlbumDeleted(album_id=album_id):
                for device in list(self._devices.values()):
                    if album_id in device.album_ids:
                        kept = [a for a in device.album_ids if a != album_id]
                        updated = msgspec.structs.replace(device, album_ids=kept)
                        self._stage_albums(tx, updated, None, entry.event.correlation_id)
                        self._devices[device.device_id] = updated
                        tx.on_commit(self._mark_access_stale)
            case _:
                pass

    def _change(self, tx: Transaction, device_id: str, **fields: Any) -> None:
        """Set ``fields`` (named as their ``devices`` columns) of a known device; a new
        firmware version is announced with ``device.updated``."""
        device = self._devices.get(device_id)
        if device is None:
            return
        assignments = ", ".join(f"{name} = ?" for name in fields)
        tx.execute(
            f"UPDATE devices SET {assignments} WHERE device_id = ?", (*fields.values(), device_id)
        )
        version = fields.get("firmware_version")
        if version is not None and version != device.firmware_version:
            tx.publish(
                DeviceUpdated(
                    audit=Audit.system("devices"),
                    device_id=device_id,
                    changes={"firmware_version": version},
                )
            )
        shown = {name: value for name, value in fields.items() if name in Device.__struct_fields__}
        self._devices[device_id] = msgspec.structs.replace(device, **shown)

    def _mark_access_stale(self) -> None:
        self._access_stale = True

    # -- helpers -------------------------------------------------------------------------------

    def _stage_albums(
        self, tx: Transaction, device: Device, user_id: str | None, correlation_id: str | None
    ) -> None:
        tx.execute("DELETE FROM device_albums WHERE device_id = ?", (device.device_id,))
        tx.executemany(
            "INSERT INTO device_albums (device_id, album_id, position) VALUES (?, ?, ?)",
            [(device.device_id, album_id, i) for i, album_id in enumerate(device.album_ids)],
        )
        tx.publish(
            DeviceUpdated(
                audit=Audit.user_or_system(user_id, "devices"),
                correlation_id=correlation_id or new_id(),
                device_id=device.device_id,
                changes={"album_ids": ",".join(device.album_ids)},
            )
        )

    def _access_of(self, device: Device, password_hash: str) -> FrameAccess:
        return FrameAccess(
            frame_id=device.device_id,
            username=device.mqtt_username,
            password_hash=password_hash,
            album_ids=device.album_ids,
        )

    def _access(self, *, replacing: Device | None = None) -> list[FrameAccess]:
        access: list[FrameAccess] = []
        for device in self._devices.values():
            if replacing is not None and device.device_id == replacing.device_id:
                device = replacing
            password_hash = self._password_hashes.get(device.device_id, "")
            if device.mqtt_username and password_hash:
                access.append(self._access_of(device, password_hash))
        return access

    async def _push_access(self, access: list[FrameAccess]) -> None:
        if self._send_access is not None:
            await self._send_access(access)
