"""``/domain/devices`` (seed device_service): the frames paired with the hub.

This is the registry's first part: what a frame is (its name, model, hardware version and
panel) and its pairing and removal. The twin (online, last seen, firmware version, desired and
reported settings) and the seeds' event handlers (``firmware.uploaded``, ``update.completed``,
``telemetry.data.received``) come with the MQTT, OTA and telemetry work, as later migrations
and journal consumers; the constructor already takes the journal they will consume from.

The actor answers from memory: the devices that are not deleted, rebuilt from ``devices`` in
``on_start`` and changed only once a transaction has committed. A deleted device keeps its row
(``deleted = 1``), so its id is never handed out again and the journal's events about it keep
naming a known device.
"""

from __future__ import annotations

import unicodedata
from typing import Any, Literal

import msgspec

from actors.errors import Invalid, NotFound
from actors.events import Audit, DeviceDeleted, DeviceRegistered, new_id, utc_now
from actors.journal import Journal
from actors.media import MAX_FRAME_SIDE
from actors.paging import DEFAULT_PAGE, page_of
from actors.store import Store
from supervision import Actor

DEVICES_PATH = "/domain/devices"
"""Where the hub's tree puts the ``DeviceRegistry`` actor."""

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
)
"""The ``devices`` schema. The twin's columns come with the MQTT work, as the next migration."""

_UNPRINTABLE = {"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"}


# -- messages ----------------------------------------------------------------------------------


class RegisterDevice(msgspec.Struct, frozen=True, kw_only=True):
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


class GetDevice(msgspec.Struct, frozen=True, kw_only=True):
    """One device; answers ``Device`` (``NotFound`` if unknown or deleted)."""

    device_id: str


class ListDevices(msgspec.Struct, frozen=True, kw_only=True):
    """Every device, oldest first; answers ``DevicePage``."""

    limit: int = DEFAULT_PAGE
    cursor: str | None = None


class DeleteDevice(msgspec.Struct, frozen=True, kw_only=True):
    """Unpair a device and publish ``device.deleted``; answers None (``NotFound`` if unknown).

    Its API token is the accounts actor's to revoke; the media cache drops the frame's
    schedules and cache entries on the event.
    """

    device_id: str
    user_id: str | None = None
    correlation_id: str | None = None


DeviceMessage = RegisterDevice | GetDevice | ListDevices | DeleteDevice


class Device(msgspec.Struct, frozen=True, kw_only=True):
    device_id: str
    name: str
    model: str
    hw_version: str
    width: int
    height: int
    orientation: Orientation
    created_at: str

    @property
    def panel(self) -> tuple[int, int]:
        """The panel's width and height as the frame hangs: the long side follows
        ``orientation`` (a 1024x600 panel in portrait is 600 wide and 1024 high)."""
        short, long = sorted((self.width, self.height))
        return (long, short) if self.orientation == "landscape" else (short, long)


class DevicePage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[Device]
    next_cursor: str | None


# -- checks ------------------------------------------------------------------------------------


def check_text(value: str, what: str) -> str:
    """``value`` without surrounding white space, or ``Invalid`` saying why."""
    value = value.strip()
    if not 1 <= len(value) <= MAX_TEXT_LENGTH:
        raise Invalid(f"{what} must be 1 to {MAX_TEXT_LENGTH} characters long")
    for char in value:
        if unicodedata.category(char) in _UNPRINTABLE:
            raise Invalid(f"{what} must not contain control characters (U+{ord(char):04X})")
    return value


def check_side(value: int, what: str) -> int:
    if not 1 <= value <= MAX_PANEL_SIDE:
        raise Invalid(f"{what} must be between 1 and {MAX_PANEL_SIDE}, got {value}")
    return value


def _audit_of(user_id: str | None) -> Audit:
    return Audit.system("devices") if user_id is None else Audit.user(user_id)


# -- the actor ---------------------------------------------------------------------------------


class DeviceRegistry(Actor[DeviceMessage]):
    """``/domain/devices``: owns ``devices``; publishes ``device.registered`` and
    ``device.deleted``."""

    def __init__(self, store: Store, journal: Journal) -> None:
        self._store = store
        self._journal = journal
        self._devices: dict[str, Device] = {}
        """The devices not deleted, by id."""

    async def on_start(self) -> None:
        await self._store.migrate("devices", DEVICE_MIGRATIONS)
        rows = await self._store.fetch_all(
            "SELECT device_id, name, model, hw_version, width, height, orientation, created_at "
            "FROM devices WHERE deleted = 0"
        )
        self._devices = {
            row[0]: Device(
                device_id=row[0],
                name=row[1],
                model=row[2],
                hw_version=row[3],
                width=row[4],
                height=row[5],
                orientation=row[6],
                created_at=row[7],
            )
            for row in rows
        }

    async def receive(self, message: DeviceMessage) -> Any:
        match message:
            case RegisterDevice():
                return await self._register(message)
            case GetDevice(device_id=device_id):
                return self._device(device_id)
            case ListDevices(limit=limit, cursor=cursor):
                return self._list(limit, cursor)
            case DeleteDevice():
                return await self._delete(message)

    async def _register(self, message: RegisterDevice) -> Device:
        if message.orientation not in ORIENTATIONS:
            raise Invalid(f"orientation must be one of {', '.join(ORIENTATIONS)}")
        device = Device(
            device_id=new_id(),
            name=check_text(message.name, "name"),
            model=check_text(message.model, "model"),
            hw_version=check_text(message.hw_version, "hw_version"),
            width=check_side(message.width, "width"),
            height=check_side(message.height, "height"),
            orientation=message.orientation,
            created_at=utc_now(),
        )
        async with self._store.transaction() as tx:
            tx.execute(
                "INSERT INTO devices (device_id, name, model, hw_version, width, height, "
                "orientation, created_at, deleted) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0)",
                (
                    device.device_id,
                    device.name,
                    device.model,
                    device.hw_version,
                    device.width,
                    device.height,
                    device.orientation,
                    device.created_at,
                ),
            )
            tx.publish(
                DeviceRegistered(
                    audit=_audit_of(message.user_id),
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
            tx.on_commit(lambda: self._remember(device))
        return device

    def _device(self, device_id: str) -> Device:
        device = self._devices.get(device_id)
        if device is None:
            raise NotFound(f"no device {device_id}")
        return device

    def _list(self, limit: int, cursor: str | None) -> DevicePage:
        page, next_cursor = page_of(
            self._devices.values(), lambda d: (d.created_at, d.device_id), limit, cursor
        )
        return DevicePage(items=page, next_cursor=next_cursor)

    async def _delete(self, message: DeleteDevice) -> None:
        device = self._device(message.device_id)
        async with self._store.transaction() as tx:
            tx.execute("UPDATE devices SET deleted = 1 WHERE device_id = ?", (device.device_id,))
            tx.publish(
                DeviceDeleted(
                    audit=_audit_of(message.user_id),
                    correlation_id=message.correlation_id or new_id(),
                    device_id=device.device_id,
                )
            )
            tx.on_commit(lambda: self._forget(device.device_id))

    def _remember(self, device: Device) -> None:
        self._devices[device.device_id] = device

    def _forget(self, device_id: str) -> None:
        self._devices.pop(device_id, None)
