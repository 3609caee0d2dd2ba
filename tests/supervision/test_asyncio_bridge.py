"""The asyncio bridge: real aiosqlite work from Trio actors, and cancellation across the loops.

aiosqlite runs its own thread, so these tests use the real clock.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
import trio

from supervision import Actor, ActorCrashed, ChildSpec, open_system, supervisor


@dataclass(frozen=True)
class Insert:
    name: str
    size: int


@dataclass(frozen=True)
class Query:
    min_size: int = 0


@dataclass(frozen=True)
class Explode:
    pass


class Journal(Actor[Any]):
    """Keeps one aiosqlite connection per incarnation, opened in on_start, closed on stop."""

    def __init__(self, path: Path, events: Any) -> None:
        self.path = path
        self.events = events
        self.db: aiosqlite.Connection | None = None

    async def on_start(self) -> None:
        bridge = self.context.system.asyncio
        self.db = await bridge.run(aiosqlite.connect, str(self.path))
        await bridge.run(
            self.db.execute,
            "CREATE TABLE IF NOT EXISTS photos (name TEXT PRIMARY KEY, size INTEGER NOT NULL)",
        )
        self.events.add("opened")

    async def receive(self, message: Any) -> Any:
        bridge = self.context.system.asyncio
        assert self.db is not None
        match message:
            case Insert(name=name, size=size):
                await bridge.run(self.db.execute, "INSERT INTO photos VALUES (?, ?)", (name, size))
                await bridge.run(self.db.commit)
                return None
            case Query(min_size=min_size):
                rows = await bridge.run(
                    self.db.execute_fetchall,
                    "SELECT name, size FROM photos WHERE size >= ? ORDER BY name",
                    (min_size,),
                )
                return [tuple(row) for row in rows]
            case Explode():
                raise RuntimeError("journal bug")
        raise TypeError(message)

    async def _close(self) -> None:
        if self.db is not None:
            await self.context.system.asyncio.run(self.db.close)
            self.db = None
            self.events.add("closed")

    async def on_stop(self) -> None:
        await self._close()

    async def on_failure(self, error: BaseException) -> None:
        await self._close()


async def test_an_actor_does_real_aiosqlite_work_through_the_bridge(tmp_path, events):
    db_path = tmp_path / "journal.sqlite"
    spec = ChildSpec(name="journal", factory=lambda: Journal(db_path, events))
    async with open_system(supervisor("root", [spec])) as system:
        journal = system.lookup("/journal")
        for name, size in [("b.jpg", 200), ("a.jpg", 100), ("c.jpg", 300)]:
            await journal.ask(Insert(name, size))
        assert await journal.ask(Query()) == [("a.jpg", 100), ("b.jpg", 200), ("c.jpg", 300)]
        assert await journal.ask(Query(min_size=150)) == [("b.jpg", 200), ("c.jpg", 300)]
        # A constraint violation raised on the asyncio side reaches the Trio handler as is.
        with pytest.raises(ActorCrashed) as info:
            await journal.ask(Insert("a.jpg", 1))
        assert isinstance(info.value.cause, aiosqlite.IntegrityError)
        # The restarted incarnation reopens the file: committed rows are still there.
        assert await journal.ask(Query()) == [("a.jpg", 100), ("b.jpg", 200), ("c.jpg", 300)]
        assert [e[0] for e in events.entries] == ["opened", "closed", "opened"]
    assert [e[0] for e in events.entries][-1] == "closed"

    # The data is really on disk (checked with the standard library, no bridge involved).
    import sqlite3

    with sqlite3.connect(db_path) as check:
        assert check.execute("SELECT count(*) FROM photos").fetchone() == (3,)


async def test_bridge_context_and_iterate_wrap_asyncio_managers_and_iterators(tmp_path):
    db_path = tmp_path / "ctx.sqlite"
    async with open_system(supervisor("root"), with_asyncio=True) as system:
        bridge = system.asyncio
        async with bridge.context(aiosqlite.connect(str(db_path))) as db:
            await bridge.run(db.execute, "CREATE TABLE t (n INTEGER)")
            await bridge.run(db.executemany, "INSERT INTO t VALUES (?)", [(i,) for i in range(5)])
            await bridge.run(db.commit)
            async with bridge.context(db.execute("SELECT n FROM t ORDER BY n")) as cursor:
                got = [row[0] async for row in bridge.iterate(cursor)]
            assert got == [0, 1, 2, 3, 4]
        # Leaving the context closed the connection (on the asyncio side).
        with pytest.raises(ValueError, match="no active connection"):
            await bridge.run(db.execute, "SELECT 1")


async def test_trio_cancellation_reaches_the_awaited_asyncio_call():
    seen: list[str] = []

    async def slow_asyncio_call() -> None:
        asyncio.get_running_loop()  # really runs on the asyncio loop
        try:
            await asyncio.sleep(30)
            seen.append("finished")
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    async with open_system(supervisor("root")) as system:
        start = trio.current_time()
        with trio.move_on_after(0.2) as scope:
            await system.asyncio.run(slow_asyncio_call)
        assert scope.cancelled_caught
        assert trio.current_time() - start < 5
        assert seen == ["cancelled"]
        # The bridge still works after a cancelled call.
        assert await system.asyncio.run(asyncio.sleep, 0, "ok") == "ok"


async def test_bridge_is_absent_when_the_system_is_opened_without_it():
    async with open_system(supervisor("root"), with_asyncio=False) as system:
        with pytest.raises(RuntimeError, match="without the asyncio bridge"):
            _ = system.asyncio
