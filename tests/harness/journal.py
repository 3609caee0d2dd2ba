"""A recording subscriber actor and a small hub around one SQLite file, shared by the tests.

The subscriber writes one row per handled event into ``effects`` (no uniqueness constraint on
purpose: a duplicate shows up as a count above one). ``Probe`` is the test's side: it sees
every delivery attempt and every committed effect, and tests wait on it instead of sleeping.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from actors.events import Audit, DeviceDeleted, Event, FileDeleted, FileUploaded
from actors.journal import Consumer, Journal, JournalNudge
from actors.store import Entry, Store, Transaction
from supervision import (
    Actor,
    ActorSystem,
    AsyncioBridge,
    Backoff,
    ChildSpec,
    Intensity,
    open_asyncio_bridge,
    open_system,
    supervisor,
)

EFFECTS_MIGRATIONS = [
    """
    CREATE TABLE effects (
        id INTEGER PRIMARY KEY,
        subscriber TEXT NOT NULL,
        event_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        name TEXT NOT NULL
    );
    CREATE TABLE totals (subscriber TEXT PRIMARY KEY, n INTEGER NOT NULL);
    CREATE TABLE files (file_id TEXT NOT NULL, event_id TEXT NOT NULL);
    """
]
"""Owner ``tests``: the subscribers' effects and the publisher's own state."""

Hook = Callable[[str, Entry, Transaction], Awaitable[None]]

_ids = itertools.count(1)


def uploaded(file_id: str | None = None, *, user: str = "u1", correlation: str = "") -> Event:
    file_id = file_id or f"f{next(_ids)}"
    extra = {"correlation_id": correlation} if correlation else {}
    return FileUploaded(
        audit=Audit.user(user),
        file_id=file_id,
        user_id=user,
        file_name=f"{file_id}.jpg",
        file_size=1024,
        content_type="image/jpeg",
        storage_path=f"blobs/{file_id}",
        sha256="0" * 64,
        **extra,
    )


def deleted(file_id: str | None = None, *, user: str = "u1") -> Event:
    return FileDeleted(audit=Audit.user(user), file_id=file_id or f"f{next(_ids)}", user_id=user)


def device_deleted(device_id: str = "frame-1") -> Event:
    return DeviceDeleted(audit=Audit.system("test"), device_id=device_id)


class Probe:
    """Shared by every incarnation of the subscribers: deliveries, committed effects, hooks."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[str, int, str]] = []
        self.applied: list[tuple[str, int, str]] = []
        self.hooks: dict[str, Hook] = {}
        self.crash_after_drain: dict[str, int] = {}
        self.drains: Counter[str] = Counter()
        self._changed = trio.Event()

    def _touch(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def delivered(self, name: str, entry: Entry) -> None:
        self.deliveries.append((name, entry.seq, entry.event.event_id))
        self._touch()

    def committed(self, name: str, entry: Entry) -> None:
        self.applied.append((name, entry.seq, entry.event.event_id))
        self._touch()

    def seqs(self, name: str) -> list[int]:
        """Sequence numbers whose effects ``name`` committed, in commit order."""
        return [seq for who, seq, _ in self.applied if who == name]

    def delivery_counts(self, name: str) -> Counter[int]:
        return Counter(seq for who, seq, _ in self.deliveries if who == name)

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            await self._changed.wait()

    async def wait_applied(self, name: str, count: int) -> None:
        await self.wait_until(lambda: len(self.seqs(name)) >= count)

    async def wait_seq(self, name: str, seq: int) -> None:
        await self.wait_until(lambda: seq in self.seqs(name))


class Recorder(Actor[JournalNudge]):
    """A subscriber: one ``effects`` row per event, plus a running total, in the handler's tx."""

    def __init__(self, journal: Journal, name: str, patterns: Sequence[str], probe: Probe) -> None:
        self.journal = journal
        self.name = name
        self.patterns = patterns
        self.probe = probe
        self.consumer: Consumer | None = None

    async def on_start(self) -> None:
        self.consumer = await self.journal.consume(
            self.name, self.patterns, self.context, self.handle
        )

    async def on_stop(self) -> None:
        if self.consumer is not None:
            self.consumer.close()

    async def receive(self, message: JournalNudge) -> None:
        assert self.consumer is not None
        probe = self.probe
        before = len(probe.seqs(self.name))
        await self.consumer.drain()
        probe.drains[self.name] += 1
        probe._touch()
        left = probe.crash_after_drain.get(self.name, 0)
        if left and len(probe.seqs(self.name)) > before:
            probe.crash_after_drain[self.name] = left - 1
            raise RuntimeError(f"{self.name}: crash right after a committed drain")

    async def handle(self, entry: Entry, tx: Transaction) -> None:
        probe = self.probe
        probe.delivered(self.name, entry)
        hook = probe.hooks.get(self.name)
        if hook is not None:
            await hook(self.name, entry, tx)
        tx.execute(
            "INSERT INTO effects (subscriber, event_id, seq, name) VALUES (?, ?, ?, ?)",
            (self.name, entry.event.event_id, entry.seq, entry.event.event_name),
        )
        tx.execute(
            "INSERT INTO totals (subscriber, n) VALUES (?, 1) "
            "ON CONFLICT (subscriber) DO UPDATE SET n = n + 1",
            (self.name,),
        )
        tx.on_commit(lambda: probe.committed(self.name, entry))


def recorder(
    journal: Journal, name: str, probe: Probe, patterns: Sequence[str] = ("file.*",)
) -> ChildSpec[Any]:
    return ChildSpec(name, lambda: Recorder(journal, name, list(patterns), probe))


def subscribers(children: list[ChildSpec[Any]]) -> ChildSpec[Any]:
    """A root that restarts crashed children at once and never gives up during a test."""
    return supervisor(
        "subs",
        children,
        intensity=Intensity(max_restarts=1000, within_s=1.0),
        backoff=Backoff(min_s=0.0, max_s=0.0, jitter=0.0),
    )


async def publish(store: Store, *events: Event) -> list[Entry]:
    """Commit ``events`` in one transaction with the publisher's own row per file event."""
    tx = Transaction()
    for event in events:
        file_id = getattr(event, "file_id", None)
        if file_id is not None:
            tx.execute(
                "INSERT INTO files (file_id, event_id) VALUES (?, ?)", (file_id, event.event_id)
            )
        tx.publish(event)
    return await store.commit(tx)


async def poll(check: Callable[[], Awaitable[bool]], interval: float = 0.01) -> None:
    """Re-read the database until ``check`` holds; callers bound it with ``trio.fail_after``.

    Only for another process's writes, which nothing in this process is told about; state
    this process commits is waited for with ``until_committed``.
    """
    while True:
        if await check():
            return
        await trio.sleep(interval)


async def until_committed(store: Store, check: Callable[[], Awaitable[bool]]) -> None:
    """Wait until ``check`` holds, re-checking after each commit of ``store`` (no polling).

    Callers bound it with ``trio.fail_after``.
    """
    commits = 0
    changed = trio.Event()

    def committed(_: object) -> None:
        nonlocal commits
        commits += 1
        changed.set()

    store.commit_listeners.append(committed)
    try:
        while True:
            seen = commits
            if await check():
                return
            if commits == seen:
                changed = trio.Event()
                await changed.wait()
    finally:
        store.commit_listeners.remove(committed)


async def effect_counts(store: Store, name: str) -> dict[str, int]:
    rows = await store.fetch_all(
        "SELECT event_id, count(*) FROM effects WHERE subscriber = ? GROUP BY event_id", (name,)
    )
    return {str(event_id): int(count) for event_id, count in rows}


async def effect_seqs(store: Store, name: str) -> list[int]:
    """The seqs ``name`` applied, in the order their rows were written."""
    rows = await store.fetch_all(
        "SELECT seq FROM effects WHERE subscriber = ? ORDER BY id", (name,)
    )
    return [int(row[0]) for row in rows]


async def cursor_of(store: Store, name: str) -> int | None:
    row = await store.fetch_one("SELECT seq FROM journal_cursors WHERE subscriber = ?", (name,))
    return None if row is None else int(row[0])


async def has_cursor(store: Store, name: str, seq: int) -> bool:
    return await cursor_of(store, name) == seq


async def assert_exactly_once(store: Store, name: str, entries: Sequence[Entry]) -> None:
    """Every one of ``entries`` has exactly one effect of ``name``, and nothing else has any."""
    counts = await effect_counts(store, name)
    expected = {entry.event.event_id for entry in entries}
    duplicates = {event_id: n for event_id, n in counts.items() if n != 1}
    assert not duplicates, f"{name} applied some events more than once: {duplicates}"
    missing = expected - counts.keys()
    assert not missing, f"{name} never applied {len(missing)} events"
    extra = counts.keys() - expected
    assert not extra, f"{name} applied events that were not expected: {extra}"
    row = await store.fetch_one("SELECT n FROM totals WHERE subscriber = ?", (name,))
    assert row is not None and row[0] == len(expected), "the running total disagrees"


class Hub:
    """What a test needs from one running hub: the store, the journal and the actor system."""

    def __init__(self, store: Store, journal: Journal, system: ActorSystem) -> None:
        self.store = store
        self.journal = journal
        self.system = system


@asynccontextmanager
async def open_store(path: Path, bridge: AsyncioBridge | None = None) -> AsyncIterator[Store]:
    """Open the store at ``path`` with the tests' own tables (on a fresh bridge if none given)."""
    if bridge is None:
        async with open_asyncio_bridge() as bridge, Store.open(path, bridge) as store:
            await store.migrate("tests", EFFECTS_MIGRATIONS)
            yield store
    else:
        async with Store.open(path, bridge) as store:
            await store.migrate("tests", EFFECTS_MIGRATIONS)
            yield store


@asynccontextmanager
async def open_hub(
    path: Path,
    children: Callable[[Journal], list[ChildSpec[Any]]],
    **journal_options: Any,
) -> AsyncIterator[Hub]:
    """Store, journal and an actor tree ``/<children>`` on the file at ``path``."""
    async with open_asyncio_bridge() as bridge, open_store(path, bridge) as store:
        journal = Journal(store, **journal_options)
        async with open_system(subscribers(children(journal)), bridge=bridge) as system:
            yield Hub(store, journal, system)
