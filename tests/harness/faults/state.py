"""The hub's end state after the workload, normalized so that two runs compare equal, and the
invariants that must hold whatever happened on the way.

``end_state`` names everything by what the workload chose (user, album and frame names, the
SHA-256 and file name of each photo, firmware versions, campaign names, the alert rule's
metric), never by generated ids or times: photos per owner, album membership, devices with
their albums and firmware, the firmware images, campaigns with each frame's state, alert rules
and the alerts of each rule and frame, notifications per admin and kind, counts of the events
whose number the script decides, and what each frame on the wall holds (read from the
simulated frame's own disk: ``state.json`` and its photo cache).

``problems`` lists broken invariants: an acknowledged upload missing or its blob damaged, a
blob file without its row or a row without its blob, a journal consumer behind or an event
parked, an actor not running, an effect applied twice (a photo twice in an album or in a
frame's playlist, an event's derived event or notification more than once, more alerts than
triggers), a frame not holding exactly its playlist.

``converge`` waits (bounded) until the hub has recovered: every actor running, uploads
analysed, every frame holding exactly what its albums hold, the journal drained.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import trio

from actors.blobs import BlobStore
from actors.imaging import frame_spec
from actors.journal import Bus
from actors.notifier import NOTIFIED_EVENTS
from frame_device import STATE_FILE
from frame_device._state import load_state
from supervision import ActorSnapshot
from tests.harness.hub import Hub

from .workload import FrameRecord, Workload

CONVERGE_S = 120.0
SETTLE_S = 30.0
State = dict[str, Any]

COUNTED_EVENTS = (
    "album.created",
    "album.photo_added",
    "album.photo_removed",
    "alert.acknowledged",
    "alert.resolved",
    "alert.rule.created",
    "alert.triggered",
    "campaign.completed",
    "campaign.created",
    "campaign.paused",
    "campaign.started",
    "device.deleted",
    "device.registered",
    "file.deleted",
    "file.uploaded",
    "file.uploaded.with_ai",
    "firmware.uploaded",
    "metric.defined",
    "rollback.initiated",
    "update.cancelled",
    "update.completed",
    "update.failed",
    "update.rolled_back",
)
"""Events whose number the script decides (frame presence, syncs, sightings and versions made
on demand depend on timing, and are left out)."""

_UNIQUE_KEYS: dict[str, tuple[str, ...]] = {
    "album.photo_added": ("album_id", "file_id"),
    "album.photo_removed": ("album_id", "file_id"),
    "file.uploaded": ("file_id",),
    "file.uploaded.with_ai": ("file_id",),
    "file.deleted": ("file_id",),
    "media.version_created": ("file_id", "size"),
    "media.cache_ready": ("file_id",),
    "update.completed": ("campaign_id", "device_id"),
    "alert.acknowledged": ("alert_id",),
    "alert.resolved": ("alert_id",),
    "campaign.completed": ("campaign_id",),
    "campaign.created": ("campaign_id",),
    "device.deleted": ("device_id",),
}
"""Events that happen at most once per key in this script: a second one is an effect applied
twice (a redelivered event handled again, an ask repeated after a crash)."""


async def _rows(hub: Hub, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    return await hub.store.fetch_all(sql, params)


def _sha256_of(path: Path) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


class _Names:
    """Ids of one run turned into the names the workload chose."""

    def __init__(self) -> None:
        self.users: dict[str, str] = {}
        self.albums: dict[str, str] = {}
        self.devices: dict[str, str] = {}
        self.files: dict[str, tuple[str, str, str]] = {}
        """file id -> (owner name, sha256, file name)"""
        self.rules: dict[str, str] = {}
        self.campaigns: dict[str, str] = {}

    @classmethod
    async def of(cls, hub: Hub) -> _Names:
        names = cls()
        names.users = dict(await _rows(hub, "SELECT user_id, name FROM users"))
        for album_id, owner, name in await _rows(
            hub, "SELECT album_id, owner_id, name FROM albums"
        ):
            names.albums[album_id] = f"{names.users.get(owner, owner)}/{name}"
        names.devices = dict(await _rows(hub, "SELECT device_id, name FROM devices"))
        for file_id, owner, sha, file_name in await _rows(
            hub, "SELECT file_id, user_id, sha256, file_name FROM files"
        ):
            names.files[file_id] = (names.users.get(owner, owner), sha, file_name)
        for rule_id, metric, comparison, threshold in await _rows(
            hub, "SELECT rule_id, metric, comparison, threshold FROM alert_rules"
        ):
            names.rules[rule_id] = f"{metric} {comparison} {threshold:g}"
        names.campaigns = dict(await _rows(hub, "SELECT campaign_id, name FROM campaigns"))
        return names

    def photo(self, file_id: str) -> tuple[str, str]:
        """(sha256, file name): the photo's bytes and name, whoever owns it."""
        _, sha, file_name = self.files.get(file_id, ("?", file_id, "?"))
        return sha, file_name


# -- frames on the wall ------------------------------------------------------------------------


def _frame_dir(record: FrameRecord) -> Path:
    return record.sim_dir / "frames" / record.device_id


async def _frame_view(hub: Hub, record: FrameRecord, names: _Names) -> tuple[State, list[str]]:
    """What ``record``'s frame holds (normalized) and how it differs from what it should."""
    problems: list[str] = []
    directory = _frame_dir(record)
    state = await trio.to_thread.run_sync(load_state, directory / STATE_FILE)
    playlist = state.playlist()
    keys = [(p.album_id, p.file_id) for p in playlist]
    if len(set(keys)) != len(keys):
        problems.append(f"{record.name}: a photo twice in its playlist: {keys}")
    expected = set(
        await _rows(
            hub,
            "SELECT a.album_id, p.file_id FROM device_albums a JOIN album_photos p "
            "ON p.album_id = a.album_id WHERE a.device_id = ?",
            (record.device_id,),
        )
    )
    if set(keys) != expected:
        problems.append(f"{record.name}: holds {sorted(keys)}, its albums hold {sorted(expected)}")
    spec = frame_spec(1024, 600).name
    versions = dict(
        await _rows(
            hub,
            "SELECT file_id, sha256 FROM photo_versions WHERE size = ?",
            (spec,),
        )
    )
    photos_dir = directory / "photos"
    cached = {p.name for p in photos_dir.iterdir()} if photos_dir.is_dir() else set()
    wanted = {p.sha256 for p in playlist}
    for photo in playlist:
        if photo.sha256 != versions.get(photo.file_id):
            problems.append(f"{record.name}: {photo.file_id} is not the hub's frame version")
    if cached != wanted:
        problems.append(f"{record.name}: caches {len(cached)} photos, its playlist has {wanted}")
    for sha in cached & wanted:
        if await trio.to_thread.run_sync(_sha256_of, photos_dir / sha) != sha:
            problems.append(f"{record.name}: the cached photo {sha} is damaged")
    shown = state.current_file_id
    if playlist and shown not in {p.file_id for p in playlist}:
        problems.append(f"{record.name}: shows {shown}, not a photo of its playlist")
    twin = await hub.store.fetch_one(
        "SELECT desired_version FROM frame_twins WHERE frame_id = ?", (record.device_id,)
    )
    synced = state.sync.version if state.sync is not None else None
    if twin is None or synced != twin[0] or state.applied_version != twin[0]:
        problems.append(
            f"{record.name}: applied sync {state.applied_version} (received {synced}), "
            f"the hub's is {twin[0] if twin else None}"
        )
    view = {
        "playlist": sorted(
            (names.albums.get(p.album_id, p.album_id), *names.photo(p.file_id)) for p in playlist
        ),
        "shows a playlist photo": not playlist or shown in {p.file_id for p in playlist},
    }
    return view, problems


# -- recovery ----------------------------------------------------------------------------------


def _walk(node: ActorSnapshot) -> list[ActorSnapshot]:
    nodes = [node]
    for child in node.children:
        nodes.extend(_walk(child))
    return nodes


def not_running(hub: Hub) -> list[str]:
    """Actors not running (restarting, stopped), with their state."""
    return [
        f"{node.path} is {node.state}"
        for node in _walk(hub.system.snapshot())
        if node.state != "running"
    ]


def _bus(hub: Hub) -> Bus:
    for listener in hub.store.commit_listeners:
        owner = getattr(listener, "__self__", None)
        if isinstance(owner, Bus):
            return owner
    raise AssertionError("the hub's store has no journal bus listening")


async def journal_behind(hub: Hub) -> list[str]:
    """Consumers with events past their durable cursor that they subscribe to, retries
    waiting, and parked events."""
    behind: list[str] = []
    subscriptions = _bus(hub).subscriptions
    cursors = dict(await _rows(hub, "SELECT subscriber, seq FROM journal_cursors"))
    for name, subscription in sorted(subscriptions.items()):
        cursor = cursors.get(name)
        if cursor is None:
            behind.append(f"{name} has no cursor")
            continue
        later = await _rows(hub, "SELECT DISTINCT name FROM events WHERE seq > ?", (cursor,))
        pending = [event for (event,) in later if subscription.matches(event)]
        if pending:
            behind.append(f"{name} has not handled {pending} yet")
    for subscriber, seq, attempts in await _rows(
        hub, "SELECT subscriber, seq, attempts FROM journal_attempts"
    ):
        behind.append(f"{subscriber} is retrying event #{seq} (attempt {attempts})")
    for subscriber, seq, name in await _rows(
        hub, "SELECT subscriber, seq, name FROM journal_dead_letters"
    ):
        behind.append(f"{subscriber} parked {name} #{seq} as a dead letter")
    return behind


async def frames_behind(hub: Hub, workload: Workload) -> list[str]:
    names = await _Names.of(hub)
    problems: list[str] = []
    for record in workload.live_frames():
        _, found = await _frame_view(hub, record, names)
        problems.extend(found)
    return problems


async def _until_empty(
    what: str, check: Callable[[], Awaitable[list[str]]], deadline: float
) -> None:
    found: list[str] = []
    with trio.move_on_at(deadline):
        while True:
            found = await check()
            if not found:
                return
            await trio.sleep(0.1)  # other processes (the frames) change what is checked
    raise AssertionError(f"no recovery: {what}: {found}")


async def converge(hub: Hub, workload: Workload, timeout: float = CONVERGE_S) -> float:
    """Wait until the hub has recovered and the frames converged; returns the seconds it took."""
    started = trio.current_time()
    deadline = started + timeout

    async def running() -> list[str]:
        return not_running(hub)

    await _until_empty("actors not running", running, deadline)
    with trio.fail_after(max(1.0, deadline - trio.current_time())):
        await hub.analysed()
    await _until_empty("frames not converged", lambda: frames_behind(hub, workload), deadline)
    await _until_empty("journal behind", lambda: journal_behind(hub), deadline)
    await _until_empty("actors not running", running, deadline)
    return trio.current_time() - started


# -- the end state -----------------------------------------------------------------------------


async def end_state(hub: Hub, workload: Workload) -> State:
    """The normalized end state (see the module's docstring)."""
    names = await _Names.of(hub)
    photos: dict[str, list[tuple[str, str]]] = {}
    deleted: dict[str, list[tuple[str, str]]] = {}
    for file_id, is_deleted in await _rows(hub, "SELECT file_id, deleted FROM files"):
        owner, sha, file_name = names.files[file_id]
        (deleted if is_deleted else photos).setdefault(owner, []).append((sha, file_name))
    albums: dict[str, list[tuple[str, str]]] = {label: [] for label in names.albums.values()}
    for album_id, file_id in await _rows(hub, "SELECT album_id, file_id FROM album_photos"):
        albums[names.albums[album_id]].append(names.photo(file_id))
    devices: dict[str, Any] = {}
    for device_id, name, model, hw, firmware, is_deleted in await _rows(
        hub,
        "SELECT device_id, name, model, hw_version, firmware_version, deleted FROM devices",
    ):
        assigned = await _rows(
            hub,
            "SELECT album_id FROM device_albums WHERE device_id = ? ORDER BY position",
            (device_id,),
        )
        entry = {
            "model": model,
            "hw_version": hw,
            "firmware_version": firmware,
            "albums": [names.albums.get(a, a) for (a,) in assigned],
        }
        devices.setdefault("deleted" if is_deleted else "live", {}).setdefault(name, []).append(
            entry
        )
    firmware = sorted(
        await _rows(hub, "SELECT model, version, min_hw_version, sha256, size FROM firmware")
    )
    campaigns: dict[str, Any] = {}
    for campaign_id, name, state, batch_size in await _rows(
        hub, "SELECT campaign_id, name, state, batch_size FROM campaigns"
    ):
        targets = await _rows(
            hub,
            "SELECT device_id, state, attempts, error FROM campaign_devices "
            "WHERE campaign_id = ? ORDER BY position",
            (campaign_id,),
        )
        campaigns[name] = {
            "state": state,
            "batch_size": batch_size,
            "targets": [
                (names.devices.get(d, d), s, attempts, error) for d, s, attempts, error in targets
            ],
        }
    rules = sorted(
        (names.rules[rule_id], clear, for_seconds, severity, model, device, bool(enabled))
        for rule_id, clear, for_seconds, severity, model, device, enabled in await _rows(
            hub,
            "SELECT rule_id, clear_threshold, for_seconds, severity, model, device_id, enabled "
            "FROM alert_rules",
        )
    )
    alerts: dict[str, list[tuple[Any, ...]]] = {}
    for rule_id, device_id, state, severity, value, note in await _rows(
        hub,
        "SELECT rule_id, device_id, state, severity, value, note FROM alerts "
        "ORDER BY triggered_at, alert_id",
    ):
        key = f"{names.rules[rule_id]} on {names.devices.get(device_id, device_id)}"
        alerts.setdefault(key, []).append((state, severity, value, note))
    notifications: dict[str, dict[str, int]] = {}
    for user_id, kind, count in await _rows(
        hub, "SELECT user_id, kind, count(*) FROM notifications GROUP BY user_id, kind"
    ):
        notifications.setdefault(names.users.get(user_id, user_id), {})[kind] = count
    marks = ",".join("?" * len(COUNTED_EVENTS))
    events = dict(
        await _rows(
            hub,
            f"SELECT name, count(*) FROM events WHERE name IN ({marks}) GROUP BY name",
            COUNTED_EVENTS,
        )
    )
    frames: dict[str, State] = {}
    for record in workload.live_frames():
        frames[record.name], _ = await _frame_view(hub, record, names)
    return {
        "photos": {owner: sorted(items) for owner, items in sorted(photos.items())},
        "deleted photos": {owner: sorted(items) for owner, items in sorted(deleted.items())},
        "albums": {label: sorted(items) for label, items in sorted(albums.items())},
        "devices": devices,
        "firmware": firmware,
        "campaigns": campaigns,
        "alert rules": rules,
        "alerts": alerts,
        "notifications": notifications,
        "events": events,
        "frames": frames,
    }


def differences(expected: Any, got: Any, path: str = "") -> list[str]:
    """Where ``got`` differs from ``expected``, as readable lines."""
    if isinstance(expected, dict) and isinstance(got, dict):
        found: list[str] = []
        for key in sorted(set(expected) | set(got), key=str):
            where = f"{path}/{key}"
            if key not in got:
                found.append(f"{where}: missing (expected {expected[key]!r})")
            elif key not in expected:
                found.append(f"{where}: unexpected {got[key]!r}")
            else:
                found.extend(differences(expected[key], got[key], where))
        return found
    if expected != got:
        return [f"{path}: expected {expected!r}, got {got!r}"]
    return []


# -- invariants --------------------------------------------------------------------------------


def staged_leftovers(hub: Hub) -> list[Path]:
    """Files left in the blob stores' staging directories (uploads in progress, or cut off:
    the stores sweep those after an hour)."""
    return sorted(
        path
        for store in ("originals", "versions", "firmware")
        for path in (hub.blobs_dir / store / ".staging").glob("*")
    )


async def problems(hub: Hub, workload: Workload, *, staged_allowed: bool = False) -> list[str]:
    """Every broken invariant (see the module's docstring); empty when all hold.

    ``staged_allowed``: files in staging are no problem (a process kill cuts uploads off in
    the middle; a crash never leaves one behind)."""
    found: list[str] = []
    if not staged_allowed:
        found.extend(f"left in staging: {path}" for path in staged_leftovers(hub))
    originals = BlobStore(hub.blobs_dir / "originals")
    versions = BlobStore(hub.blobs_dir / "versions")
    firmware = BlobStore(hub.blobs_dir / "firmware")
    live = await _rows(hub, "SELECT user_id, sha256 FROM files WHERE deleted = 0")
    users = dict(await _rows(hub, "SELECT name, user_id FROM users"))

    # Every acknowledged upload is there, its blob intact, unless the workload deleted it.
    for owner, sha, file_name, status in workload.ledger.uploads:
        if (owner, sha) in workload.ledger.deleted_photos:
            continue
        if (users.get(owner), sha) not in set(live):
            found.append(f"upload {file_name} of {owner} ({status}) is not there")
            continue
        path = originals.path(sha)
        if not path.is_file():
            found.append(f"upload {file_name} of {owner}: its blob {sha} is missing")
        elif await trio.to_thread.run_sync(_sha256_of, path) != sha:
            found.append(f"upload {file_name} of {owner}: its blob {sha} is damaged")

    # Blob files and rows, both ways.
    def files_in(store: BlobStore) -> set[str]:
        root = store.root
        return {
            p.name
            for p in root.rglob("*")
            if p.is_file() and ".staging" not in p.relative_to(root).parts
        }

    rows_of = {
        "originals": (originals, {sha for _, sha in live}),
        "versions": (
            versions,
            {sha for (sha,) in await _rows(hub, "SELECT sha256 FROM photo_versions")},
        ),
        "firmware": (
            firmware,
            {sha for (sha,) in await _rows(hub, "SELECT sha256 FROM firmware")},
        ),
    }
    for kind, (store, shas) in rows_of.items():
        on_disk = await trio.to_thread.run_sync(files_in, store)
        for sha in sorted(on_disk - shas):
            found.append(f"{kind}: blob file {sha} without a row")
        for sha in sorted(shas - on_disk):
            found.append(f"{kind}: row without its blob file {sha}")

    # No effect applied twice.
    for name, fields in _UNIQUE_KEYS.items():
        seen: Counter[tuple[Any, ...]] = Counter()
        for (payload,) in await _rows(hub, "SELECT payload FROM events WHERE name = ?", (name,)):
            event = msgspec.json.decode(payload)
            seen[tuple(event.get(f) for f in fields)] += 1
        twice = {key: n for key, n in seen.items() if n > 1}
        if twice:
            found.append(f"{name} more than once for {twice}")
    triggers = Counter(
        (rule, device)
        for rule, device in (
            (e["rule_id"], e["device_id"])
            for (payload,) in await _rows(
                hub, "SELECT payload FROM events WHERE name = 'alert.triggered'"
            )
            for e in [msgspec.json.decode(payload)]
        )
    )
    stored = Counter(await _rows(hub, "SELECT rule_id, device_id FROM alerts"))
    if triggers != stored:
        found.append(f"alerts {dict(stored)} do not match their triggers {dict(triggers)}")
    open_alerts = Counter(
        await _rows(hub, "SELECT rule_id, device_id FROM alerts WHERE state != 'resolved'")
    )
    if any(n > 1 for n in open_alerts.values()):
        found.append(f"more than one open alert per rule and frame: {dict(open_alerts)}")
    # One notification per notified event and admin (one admin, there from the start).
    admins = {user_id for (user_id,) in await _rows(hub, "SELECT user_id FROM users WHERE admin")}
    made = Counter(await _rows(hub, "SELECT event_id, user_id FROM notifications"))
    marks = ",".join("?" * len(NOTIFIED_EVENTS))
    for name, payload in await _rows(
        hub, f"SELECT name, payload FROM events WHERE name IN ({marks})", NOTIFIED_EVENTS
    ):
        event_id = msgspec.json.decode(payload)["event_id"]
        for admin in admins:
            if made[(event_id, admin)] != 1:
                found.append(f"{name} {event_id} made {made[(event_id, admin)]} notifications")

    # These move while the hub runs (a frame falls behind, an event is being handled): each
    # must hold again within a while, not at this instant.
    deadline = trio.current_time() + SETTLE_S

    async def running() -> list[str]:
        return not_running(hub)

    for what, check in (
        ("journal behind", lambda: journal_behind(hub)),
        ("actors not running", running),
        ("frames not converged", lambda: frames_behind(hub, workload)),
    ):
        try:
            await _until_empty(what, check, deadline)
        except AssertionError as error:
            found.append(str(error))
    return found
