"""The hub's one SQLite database: WAL mode, group commit, per-owner migrations.

All database work goes through ``aiosqlite`` on the runtime's asyncio bridge. A crossing into
asyncio and each hop to aiosqlite's thread are expensive (hundreds of microseconds), so the
store never holds a transaction open across actor code: an actor reads what it needs first
(it owns its tables and handles one message at a time, so nobody changes them meanwhile), then
describes its writes and events in a ``Transaction`` that is applied in one crossing. Commits
that arrive while one is being written are grouped into the next single SQLite transaction
(leader/follower group commit): one fsync for many writers.
"""

from __future__ import annotations

import logging
import math
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import aiosqlite
import msgspec
import trio

from actors.errors import StorageFull
from actors.events import Event
from supervision import AsyncioBridge

log = logging.getLogger("framehub.store")

SQLITE_HEADER = b"SQLite format 3\x00"
_OWNER = re.compile(r"^[a-z][a-z0-9_]*$")
_encode = msgspec.json.Encoder().encode

Params = Sequence[Any]


class StoreError(Exception):
    """The database cannot be used (not SQLite, corrupt, unwritable). Start-up stops."""


class StoreFull(StoreError, StorageFull):
    """A write failed because the database's disk is full (``SQLITE_FULL``); nothing of the
    transaction was written.

    It is a ``StorageFull`` too, a domain error: the actor whose request failed answers its
    asker with it (HTTP 507) and keeps running — actors change their memory only once a
    request's transaction has committed. A full disk is not a bug a restart fixes; crashing
    on it would only make every writer crash again until its supervisor's restart intensity
    is spent and the hub stops. (A journal consumer's transaction is not refused but waits
    for room: see ``Store.commit``.)"""


class Entry(msgspec.Struct, frozen=True):
    """One event as the journal holds it: its position and the event itself."""

    seq: int
    event: Event


_VERSIONS_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_versions (
    owner TEXT PRIMARY KEY,
    version INTEGER NOT NULL
);
"""

JOURNAL_MIGRATIONS = (
    """
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        payload BLOB NOT NULL,
        correlation_id TEXT NOT NULL,
        published_at REAL NOT NULL
    );
    CREATE INDEX events_published_at ON events (published_at);
    CREATE TABLE journal_cursors (
        subscriber TEXT PRIMARY KEY,
        seq INTEGER NOT NULL
    );
    CREATE TABLE journal_attempts (
        subscriber TEXT NOT NULL,
        seq INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        last_error TEXT NOT NULL,
        PRIMARY KEY (subscriber, seq)
    );
    CREATE TABLE journal_dead_letters (
        id INTEGER PRIMARY KEY,
        subscriber TEXT NOT NULL,
        seq INTEGER NOT NULL,
        name TEXT NOT NULL,
        payload BLOB NOT NULL,
        error TEXT NOT NULL,
        traceback TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        parked_at REAL NOT NULL,
        replay_requested INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX journal_dead_letters_replay ON journal_dead_letters (replay_requested);
    """,
)
"""The journal's own tables (owner ``journal``): events, cursors, retries, dead letters."""


class Transaction:
    """Writes, events and cursor moves that commit together or not at all.

    Nothing touches the database until ``Store.commit``: statements are recorded in order.
    ``mark``/``rollback_to`` undo what a failed step added. Callbacks registered with
    ``on_commit`` run after a successful commit only — the place for in-memory caches.
    """

    __slots__ = ("_callbacks", "_cursors", "events", "statements")

    def __init__(self) -> None:
        self.statements: list[tuple[str, list[Params]]] = []
        self.events: list[Event] = []
        self._cursors: dict[str, int] = {}
        self._callbacks: list[Callable[[], None]] = []

    def __bool__(self) -> bool:
        return bool(self.statements or self.events or self._cursors)

    def execute(self, sql: str, params: Params = ()) -> None:
        statements = self.statements
        if statements and statements[-1][0] == sql:
            statements[-1][1].append(params)
        else:
            statements.append((sql, [params]))

    def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        for row in rows:
            self.execute(sql, row)

    def publish(self, event: Event) -> None:
        """Append ``event`` to the journal with this transaction's other effects."""
        self.events.append(event)

    def advance_cursor(self, subscriber: str, seq: int) -> None:
        """Record that ``subscriber`` has handled every event up to ``seq``."""
        self._cursors[subscriber] = seq

    def on_commit(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def mark(self) -> tuple[int, int, int, int, dict[str, int] | None]:
        last = len(self.statements[-1][1]) if self.statements else 0
        cursors = dict(self._cursors) if self._cursors else None
        return (len(self.statements), last, len(self.events), len(self._callbacks), cursors)

    def rollback_to(self, mark: tuple[int, int, int, int, dict[str, int] | None]) -> None:
        statements, last, events, callbacks, cursors = mark
        del self.statements[statements:]
        if self.statements:
            del self.statements[-1][1][last:]
        del self.events[events:]
        del self._callbacks[callbacks:]
        self._cursors = cursors if cursors is not None else {}


class _Pending:
    __slots__ = ("done", "entries", "error", "tx")

    def __init__(self, tx: Transaction) -> None:
        self.tx = tx
        self.done = trio.Event()
        self.entries: list[Entry] = []
        self.error: BaseException | None = None


async def _apply(
    conn: aiosqlite.Connection,
    statements: list[tuple[str, list[Params]]],
    event_rows: list[tuple[int, str, bytes, str, float]],
    cursors: dict[str, int],
) -> None:
    """Runs on the asyncio side: one SQLite transaction, consecutive same-SQL runs batched.

    Every hop to aiosqlite's thread costs a wake-up of the asyncio loop, so the transaction is
    opened implicitly by its first data statement (sqlite3's default) instead of by a BEGIN of
    its own — unless it starts with something else, which must not run outside it.
    """
    if statements and not _DML.match(statements[0][0]):
        await conn.execute("BEGIN IMMEDIATE")
    try:
        for sql, rows in statements:
            if len(rows) == 1:
                await conn.execute(sql, rows[0])
            else:
                await conn.executemany(sql, rows)
        if event_rows:
            await conn.executemany(
                "INSERT INTO events (seq, name, payload, correlation_id, published_at) "
                "VALUES (?, ?, ?, ?, ?)",
                event_rows,
            )
        if cursors:
            await conn.executemany(
                "INSERT INTO journal_cursors (subscriber, seq) VALUES (?, ?) "
                "ON CONFLICT (subscriber) DO UPDATE SET seq = max(seq, excluded.seq)",
                list(cursors.items()),
            )
        await conn.commit()
    except BaseException:
        if conn.in_transaction:
            await conn.rollback()
        raise


FULL_RETRY_MIN_S = 0.1
FULL_RETRY_MAX_S = 1.0
"""How a journal consumer's transaction waits for disk space (see ``Store.commit``)."""
FULL_LOG_EVERY_S = 60.0

_DML = re.compile(r"\s*(INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)


async def _connect(path: str) -> aiosqlite.Connection:
    # sqlite3's legacy transaction handling: a data statement opens a transaction implicitly.
    return await aiosqlite.connect(path, isolation_level="DEFERRED")


async def _fetch(conn: aiosqlite.Connection, sql: str, params: Params) -> list[tuple[Any, ...]]:
    rows = await conn.execute_fetchall(sql, params)
    return [tuple(row) for row in rows]


async def _script(conn: aiosqlite.Connection, script: str) -> None:
    try:
        await conn.executescript(script)
    except BaseException:
        if conn.in_transaction:
            await conn.execute("ROLLBACK")
        raise


class Store:
    """The database of one hub. Open it with ``Store.open``."""

    def __init__(
        self,
        path: Path,
        conn: aiosqlite.Connection,
        bridge: AsyncioBridge,
        last_seq: int,
        *,
        reader: aiosqlite.Connection,
    ) -> None:
        self.path = path
        self._conn = conn
        self._reader = reader
        self._bridge = bridge
        self.last_seq = last_seq
        self._queue: list[_Pending] = []
        self._leading = False
        self._write_lock = trio.Lock()
        self.batch_max = 512
        self.commit_listeners: list[Callable[[list[Entry]], None]] = []
        """Called after every committed group with the events it published (maybe none)."""
        self.commits = 0
        self.groups = 0
        self._room = trio.Event()
        """Set by every successful write: a transaction waiting for disk space tries again."""

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        path: Path,
        bridge: AsyncioBridge,
        *,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
    ) -> AsyncIterator[Store]:
        """Open (or create) the database at ``path``; raises ``StoreError`` if it is not usable.

        A file that is not SQLite, or fails SQLite's quick check, is reported and left exactly
        as it was: nothing is written to it.
        """
        _check_header(path)
        reader: aiosqlite.Connection | None = None
        try:
            conn = await bridge.run(_connect, str(path))
        except sqlite3.Error as error:
            raise StoreError(f"cannot open database {path}: {error}") from error
        try:
            try:
                (check,) = (await bridge.run(_fetch, conn, "PRAGMA quick_check", ()))[0]
            except sqlite3.DatabaseError as error:
                raise StoreError(f"{path} is not a usable SQLite database: {error}") from error
            if check != "ok":
                raise StoreError(f"{path} is damaged (SQLite quick_check: {check})")
            tables = {
                row[0]
                for row in await bridge.run(
                    _fetch, conn, "SELECT name FROM sqlite_master WHERE type = 'table'", ()
                )
            }
            if tables and "schema_versions" not in tables:
                raise StoreError(
                    f"{path} is a SQLite database of another program (tables: "
                    f"{', '.join(sorted(tables)[:5])}); it was left untouched"
                )
            try:
                await bridge.run(_script, conn, "PRAGMA journal_mode=WAL;")
                await bridge.run(
                    _script,
                    conn,
                    f"PRAGMA synchronous={synchronous}; PRAGMA foreign_keys=ON; "
                    "PRAGMA busy_timeout=5000;",
                )
                await bridge.run(_script, conn, _VERSIONS_SCHEMA)
            except sqlite3.Error as error:
                raise StoreError(f"cannot use database {path}: {error}") from error
            reader = await bridge.run(_connect, str(path))
            store = cls(path, conn, bridge, 0, reader=reader)
            await store.migrate("journal", JOURNAL_MIGRATIONS)
            # Pruning may have emptied the events table: the cursors remember how far the
            # journal went, so sequence numbers are never handed out twice.
            row = await store.fetch_one(
                "SELECT max(coalesce((SELECT max(seq) FROM events), 0), "
                "coalesce((SELECT max(seq) FROM journal_cursors), 0))"
            )
            assert row is not None
            store.last_seq = int(row[0])
            yield store
        finally:
            with trio.CancelScope(shield=True):
                if reader is not None:
                    await bridge.run(reader.close)
                await bridge.run(conn.close)

    # -- reading -------------------------------------------------------------------------

    async def fetch_all(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        """Rows of a query on a connection of its own: it sees committed data only, never a
        group commit that is half-way through its transaction."""
        return await self._bridge.run(_fetch, self._reader, sql, params)

    async def fetch_one(self, sql: str, params: Params = ()) -> tuple[Any, ...] | None:
        rows = await self.fetch_all(sql, params)
        return rows[0] if rows else None

    # -- schema --------------------------------------------------------------------------

    async def migrate(self, owner: str, migrations: Sequence[str]) -> int:
        """Bring ``owner``'s tables to the latest version; returns the version.

        ``migrations[i]`` moves the schema from version i to i + 1. Each runs in its own
        transaction together with the version bump, so a failure leaves the previous version
        intact. Migrations only go forward; a database newer than the code is refused.
        """
        if not _OWNER.match(owner):
            raise ValueError(f"invalid schema owner {owner!r}")
        # Not while a group commit is half-way through its transaction on this connection
        # (executescript would commit it early), nor alongside another migration.
        async with self._write_lock:
            row = await self.fetch_one(
                "SELECT version FROM schema_versions WHERE owner = ?", (owner,)
            )
            current = int(row[0]) if row else 0
            if current > len(migrations):
                raise StoreError(
                    f"the database has {owner} schema version {current}, newer than this "
                    f"framehub ({len(migrations)}); upgrade framehub instead"
                )
            for version in range(current, len(migrations)):
                script = (
                    f"BEGIN IMMEDIATE;\n{migrations[version]}\n;"
                    f"INSERT INTO schema_versions (owner, version) VALUES ('{owner}', "
                    f"{version + 1}) ON CONFLICT (owner) DO UPDATE SET version = "
                    "excluded.version;\nCOMMIT;"
                )
                try:
                    with trio.CancelScope(shield=True):
                        await self._bridge.run(_script, self._conn, script)
                except sqlite3.Error as error:
                    raise StoreError(
                        f"{self.path}: migrating the {owner} schema to version {version + 1} "
                        f"failed: {error}"
                    ) from error
                log.info("migrated %s schema to version %d", owner, version + 1)
        return len(migrations)

    # -- writing -------------------------------------------------------------------------

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """``async with store.transaction() as tx:`` — commits when the block ends normally."""
        tx = Transaction()
        yield tx
        await self.commit(tx)

    async def commit(self, tx: Transaction, *, wait_for_room: bool = False) -> list[Entry]:
        """Apply ``tx`` atomically; returns its events with their sequence numbers.

        The write itself is shielded from cancellation: once begun it completes or fails as a
        whole, never half-written. After the commit the listeners (the event bus) see the
        new entries in sequence order.

        A full disk raises ``StoreFull`` — except for a transaction that moves a journal
        cursor, or one committed with ``wait_for_room`` (a write-behind buffer's). Their
        actors have already applied its effects to their memory, and rely on a crash and
        rebuild if they do not commit; but a restart would fail the same way at once, again
        and again, until the supervisor gives up. So that transaction waits for room instead
        (trying again after ``FULL_RETRY_MIN_S``, doubling up to ``FULL_RETRY_MAX_S``, or as
        soon as another transaction committed; cancellable, and then nothing of it was
        written): its actor pauses, and resumes by itself when writes succeed again.
        """
        delay = FULL_RETRY_MIN_S
        logged_at = -math.inf
        while True:
            try:
                return await self._commit(tx)
            except StoreFull as error:
                if not (tx._cursors or wait_for_room):
                    raise
                if trio.current_time() - logged_at >= FULL_LOG_EVERY_S:
                    logged_at = trio.current_time()
                    waiting = ", ".join(tx._cursors) or "a write-behind buffer"
                    log.warning("%s waits for disk space (%s)", waiting, error.__cause__)
            with trio.move_on_after(delay):
                await self._room.wait()
            delay = min(FULL_RETRY_MAX_S, delay * 2)

    async def _commit(self, tx: Transaction) -> list[Entry]:
        if not tx:
            for callback in tx._callbacks:
                callback()
            return []
        pending = _Pending(tx)
        self._queue.append(pending)
        if self._leading:
            await pending.done.wait()
        else:
            self._leading = True
            try:
                with trio.CancelScope(shield=True):
                    while self._queue:
                        group, self._queue = (
                            self._queue[: self.batch_max],
                            self._queue[self.batch_max :],
                        )
                        async with self._write_lock:
                            await self._write_group(group)
            finally:
                self._leading = False
        if pending.error is not None:
            raise pending.error
        return pending.entries

    async def _write_group(self, group: list[_Pending]) -> None:
        try:
            await self._write(group)
        except Exception as error:
            if len(group) == 1:
                group[0].error = _store_error(error)
                group[0].done.set()
                return
            # One bad transaction must not sink the others: retry them one by one.
            for pending in group:
                try:
                    await self._write([pending])
                except Exception as single_error:
                    pending.error = _store_error(single_error)
                pending.done.set()
            return
        for pending in group:
            pending.done.set()

    async def _write(self, group: list[_Pending]) -> None:
        statements: list[tuple[str, list[Params]]] = []
        cursors: dict[str, int] = {}
        event_rows: list[tuple[int, str, bytes, str, float]] = []
        seq = self.last_seq
        now = time.time()
        assigned: list[list[Entry]] = []
        for pending in group:
            tx = pending.tx
            for sql, rows in tx.statements:
                if statements and statements[-1][0] == sql:
                    statements[-1][1].extend(rows)
                else:
                    statements.append((sql, list(rows)))
            for subscriber, position in tx._cursors.items():
                cursors[subscriber] = max(position, cursors.get(subscriber, 0))
            entries = []
            for event in tx.events:
                seq += 1
                event_rows.append(
                    (seq, event.event_name, _encode(event), event.correlation_id, now)
                )
                entries.append(Entry(seq, event))
            assigned.append(entries)
        await self._bridge.run(_apply, self._conn, statements, event_rows, cursors)
        self.last_seq = seq
        self.commits += len(group)
        self.groups += 1
        self._room.set()
        self._room = trio.Event()
        published: list[Entry] = []
        for pending, entries in zip(group, assigned, strict=True):
            pending.entries = entries
            published.extend(entries)
            for callback in pending.tx._callbacks:
                try:
                    callback()
                except Exception:
                    log.exception("an on-commit callback failed")
        for listener in self.commit_listeners:
            try:
                listener(published)
            except Exception:
                log.exception("a commit listener failed")


def _store_error(error: Exception) -> Exception:
    if isinstance(error, sqlite3.Error):
        if getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
            wrapped: StoreError = StoreFull(f"the disk is full; nothing was changed ({error})")
        else:
            wrapped = StoreError(f"database write failed: {error}")
        wrapped.__cause__ = error
        return wrapped
    return error


def _check_header(path: Path) -> None:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        return
    if path.is_dir():
        raise StoreError(f"{path} is a directory, not a database file")
    with path.open("rb") as file:
        header = file.read(len(SQLITE_HEADER))
    if header and header != SQLITE_HEADER:
        raise StoreError(
            f"{path} is not a SQLite database (found {header[:16]!r}); it was left untouched. "
            "Move it away or point FRAMEHUB_DATA_DIR at another directory."
        )
