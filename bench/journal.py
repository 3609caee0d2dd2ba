"""Journal benchmark: publish → commit → delivered to subscriber actors, exactly once.

``python run.py bench journal [--json]`` or ``python -m bench.journal [--json]``.

Every scenario runs on a fresh SQLite file (WAL, ``synchronous=FULL``, the store's default) in
a temporary directory, with 3 subscriber actors. Each subscriber's handler adds one real
effect per event, ``UPDATE bench_counts SET n = n + 1 WHERE subscriber = ?``, which commits
together with its cursor advance; an ``on_commit`` callback records what was handled.

1. end to end: 4 publisher tasks publish 50,000 events, 250 per transaction, concurrently;
   events/s from the first publish to the commit of the last event by the last subscriber.
   Every subscriber must have handled every published event exactly once (checked in memory
   and against its counter row and durable cursor).
2. naive baseline: 2,000 events, one ``store.commit`` per event from one task, sequentially;
   the consumers run with ``batch_max=1`` (one commit per event per subscriber).
3. latency at light load: 500 events at 100 events/s, one transaction each, paced with
   ``trio.sleep_until``; from just before ``store.commit`` of the event to the commit of a
   subscriber's handler transaction that handled it.
"""

from __future__ import annotations

import gc
import math
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from importlib.metadata import version as _version
from pathlib import Path
from typing import Any

import psutil
import trio

from actors.events import Audit, FileDeleted
from actors.journal import Consumer, Journal, JournalNudge
from actors.store import Entry, Store, Transaction
from bench._report import Report, Target, percentile, run_cli
from supervision import Actor, ChildSpec, open_asyncio_bridge, open_system, supervisor

SUBSCRIBERS = ("sub_a", "sub_b", "sub_c")
PATTERNS = ("file.*",)

E2E_EVENTS = 50_000
E2E_PUBLISHERS = 4
E2E_PER_TX = 250
NAIVE_EVENTS = 2_000
LATENCY_WARMUP = 20
LATENCY_EVENTS = 500
LATENCY_RATE = 100.0  # events/s
DONE_TIMEOUT_S = 60.0
"""How long to wait for the subscribers to catch up before counting what is missing."""

_AUDIT = Audit.system("bench")
_BENCH_MIGRATIONS = (
    "CREATE TABLE bench_counts (subscriber TEXT PRIMARY KEY, n INTEGER NOT NULL);",
)
_COUNT_SQL = "UPDATE bench_counts SET n = n + 1 WHERE subscriber = ?"


# -- subscribers ------------------------------------------------------------------------------


@dataclass(slots=True)
class Tally:
    """What one subscriber has handled, by committed transaction. Outlives its actor."""

    name: str
    expected: int = 0
    count: int = 0
    batches: list[tuple[float, list[Entry]]] = field(default_factory=list)
    done: trio.Event = field(default_factory=trio.Event)
    done_at: float = math.nan

    def committed(self, entries: list[Entry]) -> None:
        now = trio.current_time()
        self.batches.append((now, entries))
        self.count += len(entries)
        if self.count >= self.expected and not self.done.is_set():
            self.done_at = now
            self.done.set()

    def seqs(self) -> list[int]:
        return [entry.seq for _, entries in self.batches for entry in entries]


class Subscriber(Actor[JournalNudge]):
    def __init__(self, journal: Journal, tally: Tally) -> None:
        self.journal = journal
        self.tally = tally
        self.params = (tally.name,)
        self.consumer: Consumer | None = None
        self.tx: Transaction | None = None
        self.batch: list[Entry] = []

    async def on_start(self) -> None:
        self.consumer = await self.journal.consume(
            self.tally.name, PATTERNS, self.context, self.handle
        )

    async def on_stop(self) -> None:
        if self.consumer is not None:
            self.consumer.close()

    async def receive(self, message: JournalNudge) -> None:
        assert self.consumer is not None
        await self.consumer.drain()

    async def handle(self, entry: Entry, tx: Transaction) -> None:
        tx.execute(_COUNT_SQL, self.params)
        if tx is not self.tx:
            # The first event of a new consumer batch: one callback per transaction.
            self.tx = tx
            self.batch = []
            tx.on_commit(partial(self.tally.committed, self.batch))
        self.batch.append(entry)


# -- what else happened while timing ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Probed:
    others_cpu_pct: float  # CPU time of other processes, % of all CPUs over the wall time
    main_cpu_s: float  # CPU time of the thread running Trio
    gc_full: int  # full (generation 2) collections
    gc_max_pause_ms: float  # the longest collection of any generation


class Probe:
    """Other processes' CPU use and garbage-collection pauses during a timed section."""

    def __init__(self) -> None:
        self._pauses: list[tuple[int, float]] = []
        self._gc_start = 0.0
        self._wall = self._thread = 0.0
        self._own = self._busy = 0.0

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
        else:
            self._pauses.append((info["generation"], time.perf_counter() - self._gc_start))

    @staticmethod
    def _cpu() -> tuple[float, float]:
        """(this process's CPU seconds, every CPU's busy seconds)."""
        own = psutil.Process().cpu_times()
        total = psutil.cpu_times()
        idle = total.idle + getattr(total, "iowait", 0.0)
        return own.user + own.system, sum(total) - idle

    def start(self) -> None:
        self._own, self._busy = self._cpu()
        self._wall, self._thread = time.perf_counter(), time.thread_time()
        gc.callbacks.append(self._on_gc)

    def stop(self) -> Probed:
        wall, thread = time.perf_counter() - self._wall, time.thread_time() - self._thread
        gc.callbacks.remove(self._on_gc)
        own, busy = self._cpu()
        others = max(0.0, (busy - self._busy) - (own - self._own))
        return Probed(
            others_cpu_pct=100.0 * others / (wall * (os.cpu_count() or 1)),
            main_cpu_s=thread,
            gc_full=sum(1 for generation, _ in self._pauses if generation == 2),
            gc_max_pause_ms=1000.0 * max((pause for _, pause in self._pauses), default=0.0),
        )


# -- one scenario -----------------------------------------------------------------------------


Published = tuple[float, float, list[Entry]]
"""(just before store.commit, just after it, the entries it returned); times only if paced."""


@dataclass(slots=True)
class Outcome:
    published: list[Published]
    tallies: list[Tally]
    started: float
    finished: float
    commits: int
    groups: int
    db_counts: dict[str, int]
    db_cursors: dict[str, int]
    last_seq: int
    probed: Probed

    @property
    def events(self) -> int:
        return sum(len(entries) for _, _, entries in self.published)

    @property
    def events_per_s(self) -> float:
        return self.events / (self.finished - self.started)

    def check(self) -> tuple[int, int, int]:
        """(lost, duplicates, failed checks), summed over the subscribers."""
        published = {entry.seq for _, _, entries in self.published for entry in entries}
        lost = duplicates = failed = 0
        for tally in self.tallies:
            seqs = tally.seqs()
            distinct = set(seqs)
            missing = len(published - distinct)
            repeated = len(seqs) - len(distinct)
            lost += missing
            duplicates += repeated
            extra = len(distinct - published)
            counted = self.db_counts.get(tally.name, -1)
            cursor = self.db_cursors.get(tally.name, -1)
            if missing or repeated or extra or counted != len(published) or cursor != self.last_seq:
                failed += 1
        return lost, duplicates, failed


async def _scenario(
    path: Path, publish: Callable[[Store], Any], expected: int, batch_max: int
) -> Outcome:
    """Open a store and 3 subscribers, run ``publish`` and wait until all have handled it."""
    tallies = [Tally(name, expected=expected) for name in SUBSCRIBERS]
    async with open_asyncio_bridge() as bridge, Store.open(path, bridge) as store:
        await store.migrate("bench", _BENCH_MIGRATIONS)
        setup = Transaction()
        setup.executemany(
            "INSERT INTO bench_counts (subscriber, n) VALUES (?, 0)", [(n,) for n in SUBSCRIBERS]
        )
        await store.commit(setup)
        journal = Journal(store, batch_max=batch_max)
        children = [
            ChildSpec(name=t.name, factory=partial(Subscriber, journal, t)) for t in tallies
        ]
        async with open_system(supervisor("bench", children), bridge=bridge):
            await trio.sleep(0.05)  # the consumers' first (empty) drains
            gc.collect()
            commits0, groups0 = store.commits, store.groups
            probe = Probe()
            probe.start()
            started = trio.current_time()
            published: list[Published] = await publish(store)
            with trio.move_on_after(DONE_TIMEOUT_S):
                for tally in tallies:
                    await tally.done.wait()
            if any(math.isnan(t.done_at) for t in tallies):
                finished = trio.current_time()  # timed out: the check counts what is missing
            else:
                finished = max(t.done_at for t in tallies)
            probed = probe.stop()
            commits, groups = store.commits - commits0, store.groups - groups0
            await trio.sleep(0.05)  # nothing more may arrive: duplicates would show now
        counts = await store.fetch_all("SELECT subscriber, n FROM bench_counts")
        cursors = await store.fetch_all("SELECT subscriber, seq FROM journal_cursors")
        last_seq = store.last_seq
    return Outcome(
        published=published,
        tallies=tallies,
        started=started,
        finished=finished,
        commits=commits,
        groups=groups,
        db_counts={str(name): int(n) for name, n in counts},
        db_cursors={str(name): int(seq) for name, seq in cursors},
        last_seq=last_seq,
        probed=probed,
    )


def _event(i: int) -> FileDeleted:
    return FileDeleted(audit=_AUDIT, file_id=f"f{i}", user_id="u1")


async def _publish_grouped(store: Store) -> list[Published]:
    published: list[Published] = []
    per_task = E2E_EVENTS // E2E_PUBLISHERS

    async def publisher(k: int) -> None:
        for first in range(k * per_task, (k + 1) * per_task, E2E_PER_TX):
            tx = Transaction()
            for i in range(first, min(first + E2E_PER_TX, (k + 1) * per_task)):
                tx.publish(_event(i))
            published.append((0.0, 0.0, await store.commit(tx)))

    async with trio.open_nursery() as nursery:
        for k in range(E2E_PUBLISHERS):
            nursery.start_soon(publisher, k)
    return published


async def _publish_one_by_one(store: Store) -> list[Published]:
    published: list[Published] = []
    for i in range(NAIVE_EVENTS):
        tx = Transaction()
        tx.publish(_event(i))
        published.append((0.0, 0.0, await store.commit(tx)))
    return published


async def _publish_paced(store: Store) -> list[Published]:
    published: list[Published] = []
    interval = 1.0 / LATENCY_RATE
    start = trio.current_time() + interval
    for i in range(LATENCY_WARMUP + LATENCY_EVENTS):
        await trio.sleep_until(start + i * interval)
        tx = Transaction()
        tx.publish(_event(i))
        t0 = trio.current_time()
        entries = await store.commit(tx)
        published.append((t0, trio.current_time(), entries))
    return published


def _latencies_ms(outcome: Outcome, skip: int) -> tuple[list[float], list[float]]:
    """Per (event, subscriber) latencies, and per event until all subscribers had it."""
    sent = {entries[0].seq: t0 for t0, _, entries in outcome.published[skip:]}
    each: list[float] = []
    last: dict[int, float] = {}
    for tally in outcome.tallies:
        for at, entries in tally.batches:
            for entry in entries:
                t0 = sent.get(entry.seq)
                if t0 is not None:
                    each.append((at - t0) * 1000.0)
                    last[entry.seq] = max(last.get(entry.seq, 0.0), (at - t0) * 1000.0)
    return each, list(last.values())


# -- the whole run ----------------------------------------------------------------------------


def _progress(text: str) -> None:
    print(f"[bench journal] {text}", file=sys.stderr, flush=True)


@dataclass(frozen=True, slots=True)
class Result:
    """The figures of one scenario; the outcome itself (every entry) is dropped."""

    events: int
    events_per_s: float
    commits: int
    groups: int
    lost: int
    duplicates: int
    failed: int
    latencies_ms: list[float]
    latencies_all_ms: list[float]
    commit_ms: list[float]
    probed: Probed


def _run_scenario(
    directory: Path,
    name: str,
    publish: Callable[[Store], Any],
    expected: int,
    batch_max: int,
    latency_skip: int | None = None,
) -> Result:
    outcome = trio.run(_scenario, directory / f"{name}.db", publish, expected, batch_max)
    lost, duplicates, failed = outcome.check()
    each, every = _latencies_ms(outcome, latency_skip) if latency_skip is not None else ([], [])
    result = Result(
        events=outcome.events,
        events_per_s=outcome.events_per_s,
        commits=outcome.commits,
        groups=outcome.groups,
        lost=lost,
        duplicates=duplicates,
        failed=failed,
        latencies_ms=each,
        latencies_all_ms=every,
        commit_ms=[(t1 - t0) * 1000.0 for t0, t1, _ in outcome.published[latency_skip or 0 :]],
        probed=outcome.probed,
    )
    # Hundreds of thousands of live objects would make the next scenario's full collections
    # (tens of milliseconds each) show up in its latencies.
    del outcome
    gc.collect()
    return result


def main(json_output: bool) -> dict[str, float | int]:
    """Run every measurement, print the table (and the JSON last line); return the figures."""
    with tempfile.TemporaryDirectory(prefix="framehub-bench-journal-") as tmp:
        directory = Path(tmp)
        _progress(
            f"end to end: {E2E_EVENTS:,} events, {E2E_PUBLISHERS} publishers x"
            f" {E2E_PER_TX} events/tx, {len(SUBSCRIBERS)} subscribers"
        )
        e2e = _run_scenario(directory, "e2e", _publish_grouped, E2E_EVENTS, 256)
        _progress(f"naive baseline: {NAIVE_EVENTS:,} events, one commit each, batch_max=1")
        naive = _run_scenario(directory, "naive", _publish_one_by_one, NAIVE_EVENTS, 1)
        _progress(
            f"latency: {LATENCY_WARMUP + LATENCY_EVENTS} events at {LATENCY_RATE:g}/s"
            f" ({LATENCY_WARMUP} warm-up)"
        )
        paced = _run_scenario(
            directory,
            "latency",
            _publish_paced,
            LATENCY_WARMUP + LATENCY_EVENTS,
            256,
            latency_skip=LATENCY_WARMUP,
        )
    each, every = paced.latencies_ms, paced.latencies_all_ms

    report = Report("framehub journal: grouped end to end vs naive (one commit per event)")
    report.single("events end to end", "events", "events", e2e.events)
    report.single(
        "end-to-end throughput",
        "events/s",
        "events_per_s",
        round(e2e.events_per_s, 1),
        Target(">=", 20_000.0),
    )
    report.single(
        f"naive throughput ({NAIVE_EVENTS:,} events)",
        "events/s",
        "naive_events_per_s",
        round(naive.events_per_s, 1),
    )
    report.single(
        "end to end / naive",
        "x",
        "ratio_vs_naive",
        round(e2e.events_per_s / naive.events_per_s, 2),
        Target(">=", 10.0),
    )
    report.single("lost (end to end)", "events", "lost", e2e.lost, Target("<=", 0))
    report.single(
        "duplicates (end to end)", "events", "duplicates", e2e.duplicates, Target("<=", 0)
    )
    report.single(
        "Trio-thread CPU per event (end to end)",
        "us",
        "main_cpu_us_per_event",
        round(e2e.probed.main_cpu_s / e2e.events * 1e6, 2),
    )
    report.single(
        "other processes' CPU (end to end)",
        "% of CPUs",
        "others_cpu_pct",
        round(e2e.probed.others_cpu_pct, 1),
    )
    report.single("store.commit calls (end to end)", "commits", "commits", e2e.commits)
    report.single("SQLite transactions (end to end)", "groups", "groups", e2e.groups)
    report.single("store.commit calls (naive)", "commits", "naive_commits", naive.commits)
    report.single("SQLite transactions (naive)", "groups", "naive_groups", naive.groups)
    report.single(
        "events + handlings per SQLite tx",
        "rows",
        "events_per_group",
        round(e2e.events * (1 + len(SUBSCRIBERS)) / max(e2e.groups, 1), 1),
    )
    report.single("latency p50 (@100/s)", "ms", "latency_p50_ms", round(percentile(each, 50), 3))
    report.single(
        "latency p99 (@100/s)",
        "ms",
        "latency_p99_ms",
        round(percentile(each, 99), 3),
        Target("<", 10.0),
    )
    report.single(
        "latency p99, all 3 handled",
        "ms",
        "latency_all_p99_ms",
        round(percentile(every, 99), 3),
    )
    report.single("latency max", "ms", "latency_max_ms", round(max(each), 3))
    report.single(
        "publisher store.commit p50 (latency run)",
        "ms",
        "latency_commit_p50_ms",
        round(percentile(paced.commit_ms, 50), 3),
    )
    report.single(
        "publisher store.commit p99 (latency run)",
        "ms",
        "latency_commit_p99_ms",
        round(percentile(paced.commit_ms, 99), 3),
    )
    report.single(
        "full GC collections (latency run)", "count", "latency_gc_full", paced.probed.gc_full
    )
    report.single(
        "longest GC pause (latency run)",
        "ms",
        "latency_gc_max_pause_ms",
        round(paced.probed.gc_max_pause_ms, 2),
    )
    report.single(
        "other processes' CPU (latency run)",
        "% of CPUs",
        "latency_others_cpu_pct",
        round(paced.probed.others_cpu_pct, 1),
    )
    report.single(
        "failed checks (all scenarios)",
        "subscribers",
        "failed_checks",
        e2e.failed + naive.failed + paced.failed,
        Target("<=", 0),
    )

    report.note(
        f"python {sys.version.split()[0]}, trio {trio.__version__}, aiosqlite"
        f" {_version('aiosqlite')}, SQLite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs;"
        " each scenario in its own trio.run on a fresh database file (WAL, synchronous=FULL)"
        f" in {tempfile.gettempdir()}, one asyncio bridge, {len(SUBSCRIBERS)} subscriber actors"
    )
    report.note(
        "subscriber effect: one `UPDATE bench_counts SET n = n + 1` per event, committed with"
        " the cursor advance (one transaction per consumer batch); Journal defaults otherwise"
        " (buffer_capacity 10,000, max_attempts 5); events are built"
        " (FileDeleted: two uuid4 ids, a timestamp) inside the timed section"
    )
    report.note(
        f"end to end: {E2E_PUBLISHERS} publisher tasks x {E2E_PER_TX} events per transaction,"
        " consumer batch_max=256; timed from the first publish to the commit of the last"
        " subscriber transaction; commits/groups are store.commit calls / SQLite transactions"
        " of publishers and subscribers together during the timed section"
    )
    report.note(
        f"naive: {NAIVE_EVENTS:,} events, each in its own store.commit awaited in turn by one"
        " task; consumers with batch_max=1 (one commit per event per subscriber); the store"
        " still groups commits that arrive together"
    )
    report.note(
        f"latency: {LATENCY_EVENTS} events (after {LATENCY_WARMUP} warm-up) at"
        f" {LATENCY_RATE:g}/s, one transaction each; from just before store.commit to the"
        " on_commit of the subscriber transaction that handled it, trio.current_time();"
        " p50/p99 over every (event, subscriber) pair; 'all 3 handled' is the slowest of the 3"
    )
    report.note(
        "other processes' CPU: system-wide busy CPU time minus this process's, over the timed"
        " section, as % of all CPUs (other work on the machine competes with the benchmark);"
        " GC: every collection during the timed section, measured with gc.callbacks"
    )
    report.note(
        "lost/duplicates: published seqs (from store.commit) missing from / repeated in the"
        " seqs each subscriber's committed transactions handled, summed over subscribers;"
        " failed checks count the subscribers (3 per scenario) with a lost, repeated or unknown"
        " seq, a counter row other than the events published, or a durable cursor other than"
        " the last seq"
    )
    return report.finish(json_output)


if __name__ == "__main__":
    run_cli("python -m bench.journal", __doc__, main)
