"""The store: per-owner migrations, refusing unusable files, and group commit."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
import trio
import trio.lowlevel

from actors import DATABASE_NAME
from actors.events import AnyEvent, Audit, FileDeleted
from actors.store import Entry, Store, StoreError, Transaction
from supervision import AsyncioBridge, open_asyncio_bridge
from tests.harness import ROOT

ALBUMS_V1 = "CREATE TABLE albums (id TEXT PRIMARY KEY, title TEXT NOT NULL)"
ALBUMS_V2 = """
    ALTER TABLE albums ADD COLUMN cover TEXT NOT NULL DEFAULT '';
    CREATE INDEX albums_title ON albums (title);
"""
ALBUMS_BAD_V3 = """
    ALTER TABLE albums ADD COLUMN owner TEXT;
    UPDATE albums SET title = 'clobbered';
    INSERT INTO no_such_table VALUES (1);
"""


def event(n: int) -> FileDeleted:
    return FileDeleted(audit=Audit.system("test"), file_id=f"f{n}", user_id="u")


async def version_of(store: Store, owner: str) -> int | None:
    row = await store.fetch_one("SELECT version FROM schema_versions WHERE owner = ?", (owner,))
    return None if row is None else int(row[0])


async def columns(store: Store, table: str) -> list[str]:
    return [str(row[1]) for row in await store.fetch_all(f"PRAGMA table_info({table})")]


# -- migrations -------------------------------------------------------------------------------


async def test_migrations_go_forward_keeping_data(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    async with open_asyncio_bridge() as bridge:
        async with Store.open(path, bridge) as store:
            assert await store.migrate("album", [ALBUMS_V1]) == 1
            async with store.transaction() as tx:
                tx.executemany(
                    "INSERT INTO albums (id, title) VALUES (?, ?)", [("a", "Alps"), ("b", "Baltic")]
                )
        async with Store.open(path, bridge) as store:
            assert await version_of(store, "album") == 1
            assert await store.migrate("album", [ALBUMS_V1, ALBUMS_V2]) == 2
            assert await version_of(store, "album") == 2
            assert await columns(store, "albums") == ["id", "title", "cover"]
            rows = await store.fetch_all("SELECT id, title, cover FROM albums ORDER BY id")
            assert rows == [("a", "Alps", ""), ("b", "Baltic", "")]
            # Running it again is a no-op; other owners are independent.
            assert await store.migrate("album", [ALBUMS_V1, ALBUMS_V2]) == 2
            assert await version_of(store, "device") is None
            assert await version_of(store, "journal") == 1


async def test_a_failing_migration_leaves_the_previous_version_and_data(tmp_path: Path) -> None:
    async with open_asyncio_bridge() as bridge, Store.open(tmp_path / "hub.db", bridge) as store:
        await store.migrate("album", [ALBUMS_V1, ALBUMS_V2])
        async with store.transaction() as tx:
            tx.execute("INSERT INTO albums (id, title) VALUES (?, ?)", ("a", "Alps"))
        with pytest.raises(StoreError, match=r"album.*version 3.*no_such_table"):
            await store.migrate("album", [ALBUMS_V1, ALBUMS_V2, ALBUMS_BAD_V3])
        assert await version_of(store, "album") == 2
        assert await columns(store, "albums") == ["id", "title", "cover"]
        assert await store.fetch_all("SELECT id, title FROM albums") == [("a", "Alps")]
        # The store is still usable afterwards: commits work and nothing is left half-done.
        async with store.transaction() as tx:
            tx.execute("INSERT INTO albums (id, title) VALUES (?, ?)", ("b", "Baltic"))
            tx.publish(event(1))
        assert await store.fetch_one("SELECT count(*) FROM albums") == (2,)


async def test_a_database_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    async with open_asyncio_bridge() as bridge:
        async with Store.open(path, bridge) as store:
            await store.migrate("album", [ALBUMS_V1, ALBUMS_V2])
            async with store.transaction() as tx:
                tx.execute("INSERT INTO albums (id, title) VALUES (?, ?)", ("a", "Alps"))
            with pytest.raises(StoreError, match="album schema version 2, newer"):
                await store.migrate("album", [ALBUMS_V1])
            assert await version_of(store, "album") == 2
            assert await columns(store, "albums") == ["id", "title", "cover"]
            # The journal's own tables are versioned too: a future journal is refused at open.
            async with store.transaction() as tx:
                tx.execute("UPDATE schema_versions SET version = 9 WHERE owner = 'journal'")
        with pytest.raises(StoreError, match="journal schema version 9"):
            async with Store.open(path, bridge):
                pass


async def test_a_foreign_sqlite_database_is_refused_with_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE events (id INTEGER, what TEXT)")
        conn.execute("INSERT INTO events VALUES (1, 'not ours')")
    conn.close()
    async with open_asyncio_bridge() as bridge:
        with pytest.raises(StoreError, match=r"database of another program .*events"):
            async with Store.open(path, bridge):
                pass
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT * FROM events").fetchall() == [(1, "not ours")]
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert tables == {"events"}, "nothing of framehub's may be added to a foreign database"
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    conn.close()


# -- unusable files -------------------------------------------------------------------------


def database_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob(f"{DATABASE_NAME}*"))


async def make_database(path: Path, bridge: AsyncioBridge) -> None:
    async with Store.open(path, bridge) as store:
        await store.migrate("album", [ALBUMS_V1])
        for k in range(50):
            async with store.transaction() as tx:
                tx.execute("INSERT INTO albums (id, title) VALUES (?, ?)", (f"a{k}", "x" * 300))
                tx.publish(event(k))


def corrupt(kind: str, data: bytes) -> bytes:
    if kind == "truncated":
        return data[: len(data) // 2]
    if kind == "garbled":  # the second page overwritten, the size unchanged
        return data[:4096] + bytes(range(256)) * 16 + data[8192:]
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["text", "truncated", "garbled"])
async def test_an_unusable_file_is_refused_and_left_untouched(tmp_path: Path, kind: str) -> None:
    path = tmp_path / DATABASE_NAME
    async with open_asyncio_bridge() as bridge:
        if kind == "text":
            path.write_bytes(b"my holiday notes, not a database\n" * 200)
        else:
            await make_database(tmp_path / "good.db", bridge)
            path.write_bytes(corrupt(kind, (tmp_path / "good.db").read_bytes()))
        before = path.read_bytes()
        with pytest.raises(StoreError) as refused:
            async with Store.open(path, bridge):
                pass
    message = str(refused.value)
    assert str(path) in message
    assert ("not a SQLite database" if kind == "text" else "not a usable SQLite") in message
    assert path.read_bytes() == before
    assert database_files(tmp_path) == [DATABASE_NAME]  # no -wal or -shm either


@pytest.mark.parametrize("kind", ["text", "truncated"])
async def test_serve_refuses_an_unusable_database_naming_it(tmp_path: Path, kind: str) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    path = data_dir / DATABASE_NAME
    if kind == "text":
        path.write_bytes(b"\x00\x01 binary junk " * 100)
    else:
        async with open_asyncio_bridge() as bridge:
            await make_database(tmp_path / "good.db", bridge)
        path.write_bytes(corrupt("truncated", (tmp_path / "good.db").read_bytes()))
    before = path.read_bytes()
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("FRAMEHUB_")}
    env |= {"FRAMEHUB_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT)}
    with trio.fail_after(30):
        done = await trio.run_process(
            [sys.executable, "run.py", "serve"],
            cwd=ROOT,
            env=env,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    stderr = done.stderr.decode()
    assert done.returncode != 0
    assert "cannot start" in stderr and str(path) in stderr
    assert "Traceback" not in stderr
    assert path.read_bytes() == before


# -- group commit ---------------------------------------------------------------------------


async def test_concurrent_commits_are_grouped_and_each_gets_its_own_seqs(tmp_path: Path) -> None:
    async with open_asyncio_bridge() as bridge, Store.open(tmp_path / "hub.db", bridge) as store:
        await store.migrate("album", [ALBUMS_V1])
        results: dict[int, list[Entry]] = {}
        committed: list[int] = []

        async def writer(n: int) -> None:
            tx = Transaction()
            tx.execute("INSERT INTO albums (id, title) VALUES (?, ?)", (f"a{n}", f"album {n}"))
            for k in range(n % 3 + 1):
                tx.publish(event(n * 10 + k))
            tx.on_commit(lambda: committed.append(n))
            results[n] = await store.commit(tx)

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                for n in range(40):
                    nursery.start_soon(writer, n)

        assert store.commits == 40
        assert store.groups < store.commits, "concurrent commits were not merged"
        assert sorted(committed) == list(range(40))
        seqs = sorted(entry.seq for entries in results.values() for entry in entries)
        assert seqs == list(range(1, len(seqs) + 1)) and store.last_seq == len(seqs)
        rows = dict(await store.fetch_all("SELECT seq, payload FROM events"))
        for n, entries in results.items():
            # Each transaction's events, in its own order, on consecutive seqs.
            assert [e.event.file_id for e in entries] == [  # type: ignore[attr-defined]
                f"f{n * 10 + k}" for k in range(n % 3 + 1)
            ]
            assert [e.seq for e in entries] == list(range(entries[0].seq, entries[-1].seq + 1))
            for entry in entries:
                assert msgspec.json.decode(rows[entry.seq], type=AnyEvent) == entry.event
        assert await store.fetch_one("SELECT count(*) FROM albums") == (40,)


async def test_a_bad_transaction_fails_alone_within_its_group(tmp_path: Path) -> None:
    async with open_asyncio_bridge() as bridge, Store.open(tmp_path / "hub.db", bridge) as store:
        await store.migrate("album", [ALBUMS_V1])
        group_sizes: list[int] = []
        write = store._write

        async def spy(group: list[object]) -> None:
            group_sizes.append(len(group))
            await write(group)  # type: ignore[arg-type]

        store._write = spy  # type: ignore[method-assign]
        outcomes: dict[int, list[Entry] | BaseException] = {}
        bad = 5

        async def writer(n: int) -> None:
            tx = Transaction()
            tx.execute("INSERT INTO albums (id, title) VALUES (?, ?)", (f"a{n}", "ok"))
            if n == bad:
                tx.execute("INSERT INTO albums (id, title) VALUES (?, ?)", (f"a{n}", "dup"))
            tx.publish(event(n))
            try:
                outcomes[n] = await store.commit(tx)
            except StoreError as error:
                outcomes[n] = error

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                for n in range(10):
                    nursery.start_soon(writer, n)

        assert max(group_sizes) > 1, "the bad transaction was never part of a group"
        error = outcomes.pop(bad)
        assert isinstance(error, StoreError) and "UNIQUE constraint failed" in str(error)
        assert all(isinstance(entries, list) for entries in outcomes.values())
        good = sorted(
            (entry.seq, entry.event.file_id)  # type: ignore[attr-defined]
            for entries in outcomes.values()
            for entry in entries  # type: ignore[union-attr]
        )
        assert [seq for seq, _ in good] == list(range(1, 10))
        rows = await store.fetch_all("SELECT id FROM albums ORDER BY id")
        assert [row[0] for row in rows] == sorted(f"a{n}" for n in range(10) if n != bad)
        names = await store.fetch_all("SELECT payload FROM events ORDER BY seq")
        stored = [msgspec.json.decode(row[0], type=AnyEvent).file_id for row in names]
        assert stored == [file_id for _, file_id in good] and f"f{bad}" not in stored
        # The store goes on: the next commit follows on the next seq.
        tx = Transaction()
        tx.publish(event(99))
        assert [entry.seq for entry in await store.commit(tx)] == [10]


async def test_migrations_running_during_commits_do_not_break_them(tmp_path: Path) -> None:
    """A migration (an actor starting) while others commit must not split their transactions."""
    async with open_asyncio_bridge() as bridge, Store.open(tmp_path / "hub.db", bridge) as store:
        await store.migrate("album", [ALBUMS_V1])
        errors: list[BaseException] = []
        stop = trio.Event()
        counter = 0

        async def writer() -> None:
            nonlocal counter
            while not stop.is_set():
                counter += 1
                tx = Transaction()
                tx.execute("INSERT INTO albums (id, title) VALUES (?, ?)", (f"a{counter}", "x"))
                tx.execute("INSERT INTO albums (id, title) VALUES (?, ?)", (f"b{counter}", "y"))
                tx.publish(event(counter))
                try:
                    await store.commit(tx)
                except StoreError as error:
                    errors.append(error)

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                for _ in range(4):
                    nursery.start_soon(writer)
                for owner in range(8):
                    await store.migrate(
                        f"owner{owner}", [f"CREATE TABLE t{owner} (x); CREATE TABLE u{owner} (y);"]
                    )
                    await trio.lowlevel.checkpoint()
                stop.set()

        assert errors == []
        for owner in range(8):
            assert await version_of(store, f"owner{owner}") == 1
        (count, last) = await store.fetch_one("SELECT count(*), max(seq) FROM events") or (0, 0)
        assert count == last == store.last_seq == store.commits
        assert await store.fetch_one("SELECT count(*) FROM albums") == (2 * store.last_seq,)
