"""The device registry: pairing, listing, showing and unpairing frames, on a real SQLite file.

Events are read back from the journal's ``events`` table; a restart is a second actor system
on the same database file, so the registry has to rebuild what it answers from its table.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest

from actors.accounts import Accounts, AccountsMessage, Authenticate
from actors.album import Album, AlbumMessage
from actors.devices import (
    DeleteDevice,
    Device,
    DeviceMessage,
    DevicePage,
    DeviceRegistry,
    GetDevice,
    ListAllDevices,
    ListDevices,
    PairDevice,
    RegisterDevice,
    Registered,
)
from actors.errors import BadRequest, Invalid, NotFound, Unauthorized
from actors.events import (
    AnyEvent,
    Audit,
    DeviceOffline,
    DeviceOnline,
    FirmwareUploaded,
    TelemetryDataReceived,
    UpdateCompleted,
)
from actors.journal import Journal
from actors.store import Store
from supervision import (
    ActorRef,
    ActorSystem,
    AskTimeout,
    ChildSpec,
    FaultAction,
    FaultRule,
    open_asyncio_bridge,
    open_system,
    supervisor,
)
from tests.harness.journal import publish

_decode = msgspec.json.Decoder(AnyEvent).decode


@dataclass(frozen=True)
class Domain:
    store: Store
    system: ActorSystem
    registry: ActorRef[DeviceMessage]
    accounts: ActorRef[AccountsMessage]


@asynccontextmanager
async def open_domain(path: Path) -> AsyncIterator[Domain]:
    """The registry on the database file ``path``, with the albums and accounts it asks."""
    async with open_asyncio_bridge() as bridge, Store.open(path, bridge) as store:
        journal = Journal(store)
        album: ActorRef[AlbumMessage] = ActorRef.declare("album")
        accounts: ActorRef[AccountsMessage] = ActorRef.declare("accounts")
        registry: ActorRef[DeviceMessage] = ActorRef.declare("devices")
        domain = [
            ChildSpec("accounts", lambda: Accounts(store), ref=accounts),
            ChildSpec("album", lambda: Album(store, journal), ref=album),
            ChildSpec(
                "devices",
                lambda: DeviceRegistry(store, journal, album=album, accounts=accounts),
                ref=registry,
            ),
        ]
        tree = supervisor("root", [supervisor("domain", domain)])
        async with open_system(tree, bridge=bridge) as system:
            yield Domain(store, system, registry, accounts)


@asynccontextmanager
async def open_registry(path: Path) -> AsyncIterator[tuple[Store, ActorRef[Any]]]:
    async with open_domain(path) as domain:
        yield domain.store, domain.registry


async def published(store: Store, name: str) -> list[Any]:
    rows = await store.fetch_all("SELECT payload FROM events WHERE name = ? ORDER BY seq", (name,))
    return [_decode(row[0]) for row in rows]


async def register(registry: ActorRef[Any], request: RegisterDevice) -> Device:
    registered = await registry.ask(request)
    assert isinstance(registered, Registered)
    assert len(registered.mqtt_password) >= 24
    assert registered.mqtt_password not in repr(registered)
    return registered.device


def hall_frame(**changes: Any) -> RegisterDevice:
    fields: dict[str, Any] = {
        "name": "Hall",
        "model": "FH-10",
        "hw_version": "rev2",
        "width": 1024,
        "height": 600,
        "orientation": "landscape",
    }
    return RegisterDevice(**{**fields, **changes})


async def test_devices_are_registered_listed_shown_and_deleted(tmp_path: Path) -> None:
    async with open_registry(tmp_path / "hub.db") as (store, registry):
        hall = await register(registry, hall_frame(name="  Hall  ", correlation_id="pair-1"))
        assert isinstance(hall, Device)
        assert (hall.name, hall.model, hall.hw_version) == ("Hall", "FH-10", "rev2")
        assert (hall.width, hall.height, hall.orientation) == (1024, 600, "landscape")
        kitchen = await register(registry, hall_frame(name="Kitchen", orientation="portrait"))
        attic = await register(registry, hall_frame(name="Attic", user_id="admin-1"))
        assert len({hall.device_id, kitchen.device_id, attic.device_id}) == 3

        assert await registry.ask(GetDevice(device_id=kitchen.device_id)) == kitchen
        page = await registry.ask(ListDevices(limit=2))
        assert isinstance(page, DevicePage)
        assert page.items == [hall, kitchen]
        assert page.next_cursor is not None
        rest = await registry.ask(ListDevices(limit=2, cursor=page.next_cursor))
        assert (rest.items, rest.next_cursor) == ([attic], None)

        assert await registry.ask(DeleteDevice(device_id=kitchen.device_id)) is None
        for request in (
            GetDevice(device_id=kitchen.device_id),
            DeleteDevice(device_id=kitchen.device_id),
            GetDevice(device_id="no-such-device"),
        ):
            with pytest.raises(NotFound):
                await registry.ask(request)
        assert (await registry.ask(ListDevices())).items == [hall, attic]

        registered = await published(store, "device.registered")
        assert [(e.device_id, e.name, e.width, e.height, e.orientation) for e in registered] == [
            (hall.device_id, "Hall", 1024, 600, "landscape"),
            (kitchen.device_id, "Kitchen", 1024, 600, "portrait"),
            (attic.device_id, "Attic", 1024, 600, "landscape"),
        ]
        assert (registered[0].model, registered[0].hw_version) == ("FH-10", "rev2")
        assert registered[0].correlation_id == "pair-1"
        assert registered[0].audit == Audit.system("devices")
        assert registered[2].audit == Audit.user("admin-1")
        deleted = await published(store, "device.deleted")
        assert [e.device_id for e in deleted] == [kitchen.device_id]


async def test_invalid_devices_are_refused_and_publish_nothing(tmp_path: Path) -> None:
    async with open_registry(tmp_path / "hub.db") as (store, registry):
        for request in (
            hall_frame(name=""),
            hall_frame(name="   "),
            hall_frame(name="x" * 65),
            hall_frame(name="tab\there"),
            hall_frame(model=""),
            hall_frame(model="m" * 65),
            hall_frame(hw_version=""),
            hall_frame(width=0),
            hall_frame(height=-1),
            hall_frame(width=8193),
            hall_frame(orientation="upside-down"),
        ):
            with pytest.raises(Invalid):
                await registry.ask(request)
        longest = await register(
            registry,
            hall_frame(name="n" * 64, model="m" * 64, hw_version="h" * 64, width=8192, height=1),
        )
        assert (longest.width, longest.height) == (8192, 1)
        for page in (ListDevices(limit=0), ListDevices(limit=501), ListDevices(cursor="junk")):
            with pytest.raises(BadRequest):
                await registry.ask(page)
        assert [e.device_id for e in await published(store, "device.registered")] == [
            longest.device_id
        ]


def test_the_panel_turns_with_the_orientation() -> None:
    def panel(width: int, height: int, orientation: str) -> tuple[int, int]:
        return Device(
            device_id="d",
            name="n",
            model="m",
            hw_version="h",
            width=width,
            height=height,
            orientation=orientation,  # type: ignore[arg-type]
            created_at="2026-01-01T00:00:00.000Z",
        ).panel

    assert panel(1024, 600, "landscape") == (1024, 600)
    assert panel(600, 1024, "landscape") == (1024, 600)
    assert panel(1024, 600, "portrait") == (600, 1024)
    assert panel(600, 1024, "portrait") == (600, 1024)
    assert panel(800, 800, "portrait") == (800, 800)


async def test_devices_survive_a_restart_and_deleted_ones_stay_deleted(tmp_path: Path) -> None:
    database = tmp_path / "hub.db"
    async with open_registry(database) as (_, registry):
        hall = await register(registry, hall_frame())
        gone = await register(registry, hall_frame(name="Gone", orientation="portrait"))
        await registry.ask(DeleteDevice(device_id=gone.device_id))
    async with open_registry(database) as (store, registry):
        assert await registry.ask(GetDevice(device_id=hall.device_id)) == hall
        with pytest.raises(NotFound):
            await registry.ask(GetDevice(device_id=gone.device_id))
        assert (await registry.ask(ListDevices())).items == [hall]
        # The deleted frame's row stays, so its id is never reused and its events stay known.
        row = await store.fetch_one(
            "SELECT deleted FROM devices WHERE device_id = ?", (gone.device_id,)
        )
        assert row == (1,)


async def test_seed_handlers_keep_the_record_of_firmware_and_activity(tmp_path: Path) -> None:
    async with open_registry(tmp_path / "hub.db") as (store, registry):
        old = await register(registry, hall_frame(name="Old", hw_version="rev2"))
        new = await register(registry, hall_frame(name="New", hw_version="rev10"))
        other = await register(registry, hall_frame(name="Other", model="XL-1", hw_version="9"))
        audit = Audit.system("test")
        await publish(
            store,
            FirmwareUploaded(
                audit=audit,
                firmware_id="fw1",
                version="2.0.0",
                model="FH-10",
                min_hw_version="rev9",
                sha256="0" * 64,
                size=10,
            ),
            UpdateCompleted(
                audit=audit, campaign_id="c1", device_id=new.device_id, firmware_version="2.0.0"
            ),
            TelemetryDataReceived(
                audit=audit,
                device_id=old.device_id,
                samples=3,
                last_sample_at="2026-11-22T10:00:00.000Z",
            ),
            DeviceOffline(audit=audit, device_id=other.device_id, reason="silence"),
        )
        # A query drains the journal first, so it sees every handler's effect.
        shown = {d.name: d for d in (await registry.ask(ListDevices())).items}
        assert shown["New"].firmware_version == "2.0.0"
        assert shown["Old"].firmware_version is None
        assert shown["Old"].last_seen == "2026-11-22T10:00:00.000Z"
        assert (shown["Old"].active, shown["Other"].active) == (True, False)
        updates = [(e.device_id, e.changes) for e in await published(store, "device.updated")]
        # rev10 >= rev9 >= rev2 in natural order: only the new frame of the model is told.
        assert updates == [
            (new.device_id, {"firmware_available": "2.0.0"}),
            (new.device_id, {"firmware_version": "2.0.0"}),
        ]
    async with open_registry(tmp_path / "hub.db") as (_, registry):
        again = await registry.ask(GetDevice(device_id=new.device_id))
        assert again.firmware_version == "2.0.0"
        assert (await registry.ask(GetDevice(device_id=other.device_id))).active is False


async def test_a_paired_frame_is_inactive_until_online_and_stale_samples_do_not_revive_it(
    tmp_path: Path,
) -> None:
    async with open_registry(tmp_path / "hub.db") as (store, registry):
        hall = await register(registry, hall_frame())
        assert hall.active is False  # never connected yet
        audit = Audit.frame(hall.device_id)
        await publish(store, DeviceOnline(audit=audit, device_id=hall.device_id))
        assert (await registry.ask(GetDevice(device_id=hall.device_id))).active is True
        offline = DeviceOffline(
            audit=audit,
            device_id=hall.device_id,
            reason="silence",
            occurred_at="2026-11-22T10:00:10.000Z",
        )
        await publish(store, offline)
        # Coalesced telemetry arriving after device.offline, about samples from before it.
        stale = TelemetryDataReceived(
            audit=audit,
            device_id=hall.device_id,
            samples=5,
            last_sample_at="2026-11-22T10:00:05.000Z",
        )
        await publish(store, stale)
        shown = await registry.ask(GetDevice(device_id=hall.device_id))
        assert (shown.active, shown.last_seen) == (False, "2026-11-22T10:00:05.000Z")
    async with open_registry(tmp_path / "hub.db") as (store, registry):
        # After a restart too; a sample from after it went offline brings it back.
        again = TelemetryDataReceived(
            audit=audit,
            device_id=hall.device_id,
            samples=1,
            last_sample_at="2026-11-22T10:00:07.000Z",
        )
        await publish(store, again)
        assert (await registry.ask(GetDevice(device_id=hall.device_id))).active is False
        fresh = TelemetryDataReceived(
            audit=audit,
            device_id=hall.device_id,
            samples=1,
            last_sample_at="2026-11-22T10:00:20.000Z",
        )
        await publish(store, fresh)
        assert (await registry.ask(GetDevice(device_id=hall.device_id))).active is True


async def test_pairing_registers_the_frame_and_issues_its_token(tmp_path: Path) -> None:
    async with open_domain(tmp_path / "hub.db") as domain:
        paired = await domain.registry.ask(PairDevice(registration=hall_frame(user_id="admin")))
        assert paired.token not in repr(paired) and paired.mqtt_password not in repr(paired)
        principal = await domain.accounts.ask(Authenticate(token=paired.token))
        assert (principal.kind, principal.id) == ("frame", paired.device.device_id)
        assert await domain.registry.ask(ListAllDevices()) == [paired.device]


async def test_a_pairing_whose_asker_gave_up_is_undone(tmp_path: Path) -> None:
    """Its secrets are shown only in the answer: a pairing nobody receives is an orphan no
    frame can ever use, so the registry unpairs it (and revokes its token) instead."""
    async with open_domain(tmp_path / "hub.db") as domain:
        domain.system.faults.install(
            FaultRule(action=FaultAction.DELAY, message_type="IssueFrameToken", delay_s=0.5)
        )
        with pytest.raises(AskTimeout):
            await domain.registry.ask(PairDevice(registration=hall_frame()), timeout=0.1)
        # Handled after the pairing, so answered once it was undone.
        assert await domain.registry.ask(ListAllDevices()) == []
        [registered] = await published(domain.store, "device.registered")
        [deleted] = await published(domain.store, "device.deleted")
        assert deleted.device_id == registered.device_id
        tokens = await domain.store.fetch_all(
            "SELECT count(*) FROM api_tokens WHERE principal_id = ? AND revoked_at IS NULL",
            (registered.device_id,),
        )
        assert tokens == [(0,)]


async def test_deleting_a_device_revokes_its_tokens_first(tmp_path: Path) -> None:
    async with open_domain(tmp_path / "hub.db") as domain:
        paired = await domain.registry.ask(PairDevice(registration=hall_frame()))
        await domain.registry.ask(DeleteDevice(device_id=paired.device.device_id))
        with pytest.raises(Unauthorized):
            await domain.accounts.ask(Authenticate(token=paired.token))
        with pytest.raises(NotFound):
            await domain.registry.ask(GetDevice(device_id=paired.device.device_id))
