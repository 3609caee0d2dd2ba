"""``kill -9`` of a publishing and subscribing hub, three times, at seeded-random points:
every committed event ends up with exactly one effect and the cursor reaches the end."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import msgspec
import trio

from actors.events import AnyEvent
from actors.store import Entry
from tests.harness import ROOT
from tests.harness.journal import (
    Probe,
    assert_exactly_once,
    cursor_of,
    has_cursor,
    open_hub,
    poll,
    recorder,
    until_committed,
)
from tests.harness.journal_worker import SUBSCRIBER

SEED = 20261121
KILLS = 3


def read_progress(path: Path) -> tuple[int, int, int]:
    """(effects, last seq, cursor) read by a separate connection; -1s before the tables exist."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=1.0)
    except sqlite3.Error:
        return -1, -1, -1  # not created yet (mode=rw never creates it)
    try:
        (effects,) = conn.execute("SELECT count(*) FROM effects").fetchone()
        (last,) = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
        row = conn.execute(
            "SELECT seq FROM journal_cursors WHERE subscriber = ?", (SUBSCRIBER,)
        ).fetchone()
        return int(effects), int(last), int(row[0]) if row else -1
    except sqlite3.Error:
        return -1, -1, -1
    finally:
        conn.close()


def handled_so_far(path: Path) -> int:
    return read_progress(path)[0]


def tail(log: Path) -> str:
    return log.read_text()[-2000:]


async def handled(path: Path, target: int, process: trio.Process, log: Path) -> bool:
    assert process.poll() is None, f"the worker died: {tail(log)}"
    return await trio.to_thread.run_sync(handled_so_far, path) >= target


async def run_until_killed(path: Path, log: Path, rng: random.Random) -> tuple[int, int, int]:
    """Start the worker, let it handle a random number of events, then SIGKILL it.

    Returns the progress on disk right after the kill.
    """
    target = max(0, handled_so_far(path)) + rng.randint(20, 120)
    with log.open("ab") as stderr:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "tests.harness.journal_worker", str(path)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        with trio.fail_after(10):
            await poll(lambda: handled(path, target, process, log), interval=0.005)
            # A random instant within the next few commits, not a synchronisation point.
            await trio.sleep(rng.uniform(0.0, 0.03))
    finally:
        process.send_signal(signal.SIGKILL)
        returncode = await process.wait()
    assert returncode == -signal.SIGKILL
    return read_progress(path)


async def test_kill_9_at_random_points_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    log = tmp_path / "worker.log"
    rng = random.Random(SEED)
    after_kills = [await run_until_killed(path, log, rng) for _ in range(KILLS)]
    handled = after_kills[-1][0]
    # The kills left committed events behind the subscriber's cursor (not just idle hubs).
    assert any(cursor < last for _, last, cursor in after_kills), after_kills
    # Nothing went wrong in the workers before the kills (errors are logged to stderr).
    assert tail(log) == ""

    # Restart on the same file and let the subscriber finish what was committed.
    probe = Probe()
    async with open_hub(path, lambda j: [recorder(j, SUBSCRIBER, probe)]) as hub:
        store = hub.store
        with trio.fail_after(10):
            await until_committed(store, lambda: has_cursor(store, SUBSCRIBER, store.last_seq))

        rows = await store.fetch_all("SELECT seq, payload FROM events ORDER BY seq")
        entries = [Entry(seq, msgspec.json.decode(payload, type=AnyEvent)) for seq, payload in rows]
        assert len(entries) > handled > 0
        assert [entry.seq for entry in entries] == list(range(1, store.last_seq + 1))
        # Every committed event has its effect exactly once; no effect lacks its event.
        await assert_exactly_once(store, SUBSCRIBER, entries)
        # The publisher's own rows and its events committed together or not at all.
        files = await store.fetch_all("SELECT event_id FROM files")
        assert sorted(row[0] for row in files) == sorted(e.event.event_id for e in entries)
        assert await cursor_of(store, SUBSCRIBER) == store.last_seq
