"""Delivery order, subscribers at different speeds, and journal retention."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import trio

from actors.events import Event
from actors.journal import Journal, JournalKeeper, PruneJournal
from actors.store import Entry, Transaction
from supervision import ChildSpec
from tests.harness.journal import (
    Probe,
    assert_exactly_once,
    cursor_of,
    deleted,
    device_deleted,
    effect_seqs,
    open_hub,
    publish,
    recorder,
    uploaded,
)

TIMEOUT = 10


async def test_each_subscriber_sees_its_stream_in_seq_order_across_buffer_and_table(
    tmp_path: Path,
) -> None:
    probe = Probe()
    rng = random.Random(7)

    async def simulated_work(name: str, entry: Entry, tx: Transaction) -> None:
        if entry.seq % 5 == 0:
            await trio.sleep(0.002)  # a slow handler: the tiny buffer overflows

    probe.hooks["files"] = simulated_work

    def children(journal: Journal) -> list[ChildSpec[Any]]:
        return [
            recorder(journal, "files", probe, ["file.*"]),
            recorder(journal, "devices", probe, ["device.deleted"]),
            recorder(journal, "everything", probe, ["*"]),
        ]

    async with open_hub(tmp_path / "hub.db", children, buffer_capacity=4, batch_max=5) as hub:
        store, bus = hub.store, hub.journal.bus
        published: list[Entry] = []
        saw_lagging: set[str] = set()

        async def publisher(number: int) -> None:
            for k in range(40):
                makers = [uploaded, deleted, lambda _: device_deleted(f"frame-{number}")]
                events: list[Event] = [
                    rng.choice(makers)(f"p{number}-{k}-{i}") for i in range(rng.randint(1, 3))
                ]
                published.extend(await publish(store, *events))
                saw_lagging.update(n for n, s in bus.subscriptions.items() if s.lagging)

        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as nursery:
                for number in range(4):
                    nursery.start_soon(publisher, number)
            published.sort(key=lambda entry: entry.seq)
            streams = {
                "files": [e for e in published if e.event.event_name.startswith("file.")],
                "devices": [e for e in published if e.event.event_name == "device.deleted"],
                "everything": published,
            }
            for name, stream in streams.items():
                await probe.wait_applied(name, len(stream))

        assert [e.seq for e in published] == list(range(1, len(published) + 1))
        assert "files" in saw_lagging, "the slow subscriber never had to catch up from the table"
        for name, stream in streams.items():
            expected = [entry.seq for entry in stream]
            assert probe.seqs(name) == expected, name
            assert await effect_seqs(store, name) == expected, name
            await assert_exactly_once(store, name, stream)
        assert hub.system.dead_letters.total == 0


async def test_a_slow_subscriber_lags_without_holding_back_publishers_or_others(
    tmp_path: Path,
) -> None:
    probe = Probe()
    release = trio.Event()

    async def stuck_on_first(name: str, entry: Entry, tx: Transaction) -> None:
        if entry.seq == 1:
            await release.wait()

    probe.hooks["slow"] = stuck_on_first

    def children(journal: Journal) -> list[ChildSpec[Any]]:
        return [recorder(journal, name, probe) for name in ("slow", "fast", "faster")]

    async with open_hub(tmp_path / "hub.db", children, buffer_capacity=4) as hub:
        store, slow = hub.store, hub.journal.bus.subscriptions["slow"]
        with trio.fail_after(TIMEOUT):
            entries = await publish(store, uploaded("first"))
            await probe.wait_until(lambda: probe.delivery_counts("slow")[1] == 1)
            # The slow handler is parked inside event 1; publishing goes on regardless.
            for k in range(30):
                entries += await publish(store, uploaded(f"more-{k}"))
            await probe.wait_applied("fast", 31)
            await probe.wait_applied("faster", 31)
        assert probe.seqs("slow") == []
        # Lagging: buffering stopped at capacity; the other 27 events wait in the table only.
        assert slow.lagging
        assert [entry.seq for entry in slow.buffer] == [1, 2, 3, 4]

        release.set()
        with trio.fail_after(TIMEOUT):
            await probe.wait_applied("slow", 31)
        for name in ("slow", "fast", "faster"):
            assert probe.seqs(name) == list(range(1, 32)), name
            await assert_exactly_once(store, name, entries)
            assert await cursor_of(store, name) == 31
        assert probe.delivery_counts("slow") == {seq: 1 for seq in range(1, 32)}


async def remaining_seqs(hub_store: Any) -> list[int]:
    return [int(row[0]) for row in await hub_store.fetch_all("SELECT seq FROM events ORDER BY seq")]


async def test_prune_keeps_what_any_subscriber_has_not_handled(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    probe = Probe()
    # Both subscribers registered; both handle events 1..3.
    async with open_hub(
        path, lambda j: [recorder(j, "running", probe), recorder(j, "stopped", probe)]
    ) as hub:
        with trio.fail_after(TIMEOUT):
            first = await publish(hub.store, *[uploaded(f"a{k}") for k in range(3)])
            await probe.wait_applied("running", 3)
            await probe.wait_applied("stopped", 3)

    # "stopped" is no longer running; 4..6 are handled by "running" only.
    def keeper_and_running(journal: Journal) -> list[ChildSpec[Any]]:
        return [
            recorder(journal, "running", probe),
            ChildSpec("journal", lambda: JournalKeeper(journal, retention_s=0.0)),
        ]

    async with open_hub(path, keeper_and_running) as hub:
        store, keeper = hub.store, hub.system.lookup("/journal")
        with trio.fail_after(TIMEOUT):
            second = await publish(store, *[deleted(f"a{k}") for k in range(3)])
            await probe.wait_applied("running", 6)
            assert await hub.journal.prune(older_than_s=3600) == 0  # handled, but too recent
            assert await remaining_seqs(store) == [1, 2, 3, 4, 5, 6]
            assert await keeper.ask(PruneJournal()) == 3
        assert await remaining_seqs(store) == [4, 5, 6]
        assert await cursor_of(store, "stopped") == 3
        assert await hub.journal.prune(older_than_s=0) == 0

    # "stopped" comes back and still finds everything it has not handled.
    async with open_hub(path, lambda j: [recorder(j, "stopped", probe)]) as hub:
        with trio.fail_after(TIMEOUT):
            await probe.wait_applied("stopped", 6)
        assert probe.seqs("stopped") == [1, 2, 3, 4, 5, 6]
        await assert_exactly_once(hub.store, "stopped", first + second)
        assert await hub.journal.prune(older_than_s=0) == 3
        assert await remaining_seqs(hub.store) == []


async def test_seq_numbers_are_never_reused_after_the_journal_was_pruned_empty(
    tmp_path: Path,
) -> None:
    path = tmp_path / "hub.db"
    probe = Probe()
    async with open_hub(path, lambda j: [recorder(j, "sub", probe)]) as hub:
        with trio.fail_after(TIMEOUT):
            first = await publish(hub.store, uploaded("x"), uploaded("y"))
            await probe.wait_applied("sub", 2)
        assert await hub.journal.prune(older_than_s=0) == 2
        assert await remaining_seqs(hub.store) == []

    async with open_hub(path, lambda j: [recorder(j, "sub", probe)]) as hub:
        with trio.fail_after(TIMEOUT):
            later = await publish(hub.store, uploaded("z"))
            # A reused seq would sit below the subscriber's cursor and never be delivered.
            assert [entry.seq for entry in later] == [3]
            await probe.wait_applied("sub", 3)
        assert probe.seqs("sub") == [1, 2, 3]
        await assert_exactly_once(hub.store, "sub", first + later)


async def test_published_since_gives_the_recent_events_of_one_name_in_order(
    tmp_path: Path,
) -> None:
    async with open_hub(tmp_path / "hub.db", lambda journal: []) as hub:
        await publish(hub.store, device_deleted("frame-old"))
        since = time.time()
        await publish(hub.store, device_deleted("frame-a"), uploaded("file-1"))
        await publish(hub.store, device_deleted("frame-b"))
        recent = await hub.journal.published_since("device.deleted", since)
        assert [(e.event_name, e.device_id) for e in recent] == [
            ("device.deleted", "frame-a"),
            ("device.deleted", "frame-b"),
        ]
        assert await hub.journal.published_since("device.deleted", time.time()) == []
