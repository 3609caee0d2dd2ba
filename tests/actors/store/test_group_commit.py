"""GroupCommit: an actor's buffered writes committed in batches, on a real SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio

from actors.store import GroupCommit, Store, Transaction
from supervision import (
    Actor,
    ActorCrashed,
    ActorRef,
    ChildSpec,
    open_asyncio_bridge,
    open_system,
    supervisor,
)

READINGS = "CREATE TABLE readings (value INTEGER NOT NULL); CREATE TABLE notes (text TEXT);"


class Record(msgspec.Struct, frozen=True):
    values: list[int]


class Note(msgspec.Struct, frozen=True):
    """Owner's own write that must not wait for the window."""

    text: str


class Settle(msgspec.Struct, frozen=True):
    pass


class Stats(msgspec.Struct, frozen=True):
    pass


class _WindowEnded(msgspec.Struct, frozen=True):
    pass


class _Committed(msgspec.Struct, frozen=True):
    pass


RecorderMessage = Record | Note | Settle | Stats | _WindowEnded | _Committed


class Recorder(Actor[RecorderMessage]):
    """Buffers readings; a negative one makes its batch fail (no such table)."""

    def __init__(self, store: Store, *, window_s: float, batch_size: int, max_buffered: int):
        self._store = store
        self._notes: list[str] = []
        self.batches: list[int] = []
        self._commits: GroupCommit[int, RecorderMessage] = GroupCommit(
            self,
            store,
            self._write,
            window_s=window_s,
            batch_size=batch_size,
            max_buffered=max_buffered,
            window_ended=_WindowEnded(),
            committed=_Committed(),
            overdue=lambda: bool(self._notes),
        )

    async def on_start(self) -> None:
        await self._store.migrate("recorder", [READINGS])

    async def on_stop(self) -> None:
        await self._commits.close()

    async def receive(self, message: RecorderMessage) -> Any:
        self._commits.check()
        match message:
            case Record(values=values):
                self._commits.extend(values)
                await self._commits.added()
            case Note(text=text):
                self._notes.append(text)
            case Settle():
                await self._commits.settle()
            case Stats():
                c = self._commits
                return (c.committed_items, c.flushes, c.buffered, list(self.batches))
            case _WindowEnded():
                await self._commits.window_ended()
            case _Committed():
                await self._commits.commit_finished()
        return None

    def _write(self, tx: Transaction, values: list[int]) -> None:
        if values:
            self.batches.append(len(values))
        for value in values:
            table = "readings" if value >= 0 else "no_such_table"
            tx.execute(f"INSERT INTO {table} (value) VALUES (?)", (value,))
        tx.executemany("INSERT INTO notes (text) VALUES (?)", [(t,) for t in self._notes])
        self._notes = []


@asynccontextmanager
async def recorder_in(
    path: Path, **settings: Any
) -> AsyncIterator[tuple[ActorRef[RecorderMessage], Store]]:
    settings = {"window_s": 60.0, "batch_size": 1000, "max_buffered": 10_000} | settings
    async with open_asyncio_bridge() as bridge, Store.open(path / "hub.db", bridge) as store:
        tree = supervisor("root", [ChildSpec("recorder", lambda: Recorder(store, **settings))])
        async with open_system(tree, bridge=bridge) as system:
            yield system.lookup("/recorder"), store


async def readings(store: Store) -> list[int]:
    return [row[0] for row in await store.fetch_all("SELECT value FROM readings ORDER BY rowid")]


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if await check():
            return
        await trio.sleep(0.01)
    raise AssertionError(f"not within {timeout} s")


async def test_items_commit_together_once_the_window_ends(tmp_path: Path) -> None:
    async with recorder_in(tmp_path, window_s=0.5) as (recorder, store):
        for start in (0, 5, 10):
            await recorder.tell(Record(list(range(start, start + 5))))
        assert await readings(store) == []
        stored, flushes, buffered, _ = await recorder.ask(Stats())
        assert (stored, flushes, buffered) == (0, 0, 15)

        async def all_stored() -> bool:
            return await readings(store) == list(range(15))

        await eventually(all_stored)
        stored, flushes, buffered, batches = await recorder.ask(Stats())
        assert (stored, flushes, buffered, batches) == (15, 1, 0, [15])


async def test_a_full_batch_commits_without_waiting_for_the_window(tmp_path: Path) -> None:
    async with recorder_in(tmp_path, batch_size=10) as (recorder, store):
        await recorder.tell(Record(list(range(12))))

        async def committed() -> bool:
            return bool(await readings(store))

        await eventually(committed)
        assert await readings(store) == list(range(12))
        await recorder.tell(Record([12, 13]))
        await trio.sleep(0.2)
        stored, _, buffered, _ = await recorder.ask(Stats())
        assert (stored, buffered) == (12, 2)
        assert await readings(store) == list(range(12))


async def test_settle_returns_once_everything_added_is_committed(tmp_path: Path) -> None:
    async with recorder_in(tmp_path) as (recorder, store):
        await recorder.tell(Record([1, 2, 3]))
        await recorder.ask(Settle())
        assert await readings(store) == [1, 2, 3]


async def test_settle_commits_the_owners_overdue_writes_without_items(tmp_path: Path) -> None:
    async with recorder_in(tmp_path) as (recorder, store):
        await recorder.tell(Note("hello"))
        await recorder.ask(Settle())
        assert await store.fetch_all("SELECT text FROM notes") == [("hello",)]
        assert await readings(store) == []


async def test_the_next_batch_fills_while_one_commits(tmp_path: Path) -> None:
    async with recorder_in(tmp_path, batch_size=1) as (recorder, store):
        for value in range(50):
            await recorder.tell(Record([value]))
        await recorder.ask(Settle())
        assert await readings(store) == list(range(50))
        _, flushes, _, batches = await recorder.ask(Stats())
        assert sum(batches) == 50
        assert flushes == len(batches) < 50


async def test_past_max_buffered_the_writer_waits_for_the_commit(tmp_path: Path) -> None:
    async with recorder_in(tmp_path, batch_size=1, max_buffered=1) as (recorder, store):
        for value in range(20):
            await recorder.tell(Record([value]))
        await recorder.ask(Settle())
        assert await readings(store) == list(range(20))
        _, flushes, _, batches = await recorder.ask(Stats())
        assert (flushes, batches) == (20, [1] * 20)


async def test_a_graceful_stop_commits_what_is_buffered(tmp_path: Path) -> None:
    async with open_asyncio_bridge() as bridge, Store.open(tmp_path / "hub.db", bridge) as store:
        tree = supervisor(
            "root",
            [
                ChildSpec(
                    "recorder",
                    lambda: Recorder(store, window_s=60.0, batch_size=1000, max_buffered=1000),
                )
            ],
        )
        async with open_system(tree, bridge=bridge) as system:
            await system.lookup("/recorder").tell(Record([7, 8, 9]))
            assert await readings(store) == []
        assert await readings(store) == [7, 8, 9]


async def test_a_failed_batch_is_not_half_written_and_crashes_the_owner(tmp_path: Path) -> None:
    async with recorder_in(tmp_path) as (recorder, store):
        await recorder.tell(Record([1, -1, 2]))
        with pytest.raises(ActorCrashed):
            await recorder.ask(Settle())
        assert await readings(store) == []
        # The restarted owner starts afresh and commits again.
        await recorder.tell(Record([3]))
        await recorder.ask(Settle())
        assert await readings(store) == [3]
