"""Exactly-once effects: a crash at every step of publishing and handling loses nothing and
applies nothing twice (ARCHITECTURE.md, "Durability")."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from actors.events import Event
from actors.journal import Journal
from actors.store import Entry, Store, Transaction
from supervision import Actor, ActorCrashed, ChildSpec, FaultAction, FaultRule
from tests.harness.journal import (
    Probe,
    assert_exactly_once,
    cursor_of,
    deleted,
    open_hub,
    publish,
    recorder,
    uploaded,
)

TIMEOUT = 10


@dataclass(frozen=True)
class Publish:
    event: Event
    crash_before_commit: bool = False


class Publisher(Actor[Publish]):
    """Changes its own state and publishes the event in the same transaction."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def receive(self, message: Publish) -> int:
        async with self.store.transaction() as tx:
            tx.execute(
                "INSERT INTO files (file_id, event_id) VALUES (?, ?)",
                (getattr(message.event, "file_id", ""), message.event.event_id),
            )
            tx.publish(message.event)
            if message.crash_before_commit:
                raise RuntimeError("publisher crashed after building its transaction")
        return self.store.last_seq


async def journal_entries(store: Store) -> list[tuple[int, str]]:
    rows = await store.fetch_all("SELECT seq, name FROM events ORDER BY seq")
    return [(int(seq), str(name)) for seq, name in rows]


async def test_publisher_crash_before_commit_publishes_nothing(tmp_path: Path) -> None:
    probe = Probe()

    def children(journal: Journal) -> list[ChildSpec[Any]]:
        return [
            recorder(journal, "sub", probe),
            ChildSpec("publisher", lambda: Publisher(journal.store)),
        ]

    async with open_hub(tmp_path / "hub.db", children) as hub:
        publisher = hub.system.lookup("/publisher")
        good1, lost, good2 = uploaded("good-1"), uploaded("lost"), uploaded("good-2")
        with trio.fail_after(TIMEOUT):
            assert await publisher.ask(Publish(good1)) == 1
            with pytest.raises(ActorCrashed):
                await publisher.ask(Publish(lost, crash_before_commit=True))
            # The restarted publisher goes on; the lost event took no sequence number.
            assert await publisher.ask(Publish(good2)) == 2
            await probe.wait_applied("sub", 2)

        store = hub.store
        assert await journal_entries(store) == [(1, "file.uploaded"), (2, "file.uploaded")]
        rows = await store.fetch_all("SELECT event_id FROM files ORDER BY rowid")
        assert [row[0] for row in rows] == [good1.event_id, good2.event_id]
        assert lost.event_id not in {event_id for _, _, event_id in probe.deliveries}
        assert hub.system.snapshot("/publisher").restarts == 1
        entries = [Entry(1, good1), Entry(2, good2)]
        await assert_exactly_once(store, "sub", entries)
        assert await cursor_of(store, "sub") == 2


async def test_crash_after_commit_before_delivery_catches_up_from_cursor(tmp_path: Path) -> None:
    probe = Probe()
    async with open_hub(tmp_path / "hub.db", lambda j: [recorder(j, "sub", probe)]) as hub:
        with trio.fail_after(TIMEOUT):
            await probe.wait_until(lambda: probe.drains["sub"] >= 1)  # the start-up nudge
            hub.system.faults.install(
                FaultRule(
                    action=FaultAction.CRASH,
                    path="/sub",
                    message_type="JournalNudge",
                    nth=1,
                )
            )
            entries: list[Entry] = []
            for k in range(5):
                entries += await publish(hub.store, uploaded(f"a{k}"), deleted(f"a{k}"))
            await probe.wait_applied("sub", len(entries))

        (fault,) = hub.system.faults.installed()
        assert fault.fired == 1
        assert hub.system.snapshot("/sub").restarts == 1
        # The crash came before any delivery: every event was handed over exactly once.
        assert probe.delivery_counts("sub") == {entry.seq: 1 for entry in entries}
        assert probe.seqs("sub") == [entry.seq for entry in entries]
        await assert_exactly_once(hub.store, "sub", entries)
        assert await cursor_of(hub.store, "sub") == hub.store.last_seq == 10


async def test_failing_handler_is_retried_and_its_effects_apply_once(tmp_path: Path) -> None:
    probe = Probe()
    failed_once: set[int] = set()
    seen_attempts: list[tuple[Any, ...] | None] = []
    stores: list[Store] = []

    async def hook(name: str, entry: Entry, tx: Transaction) -> None:
        if getattr(entry.event, "file_id", "") != "flaky":
            return
        if entry.seq not in failed_once:
            failed_once.add(entry.seq)
            # A partial effect, then the bug: the partial effect must be undone.
            tx.execute(
                "INSERT INTO effects (subscriber, event_id, seq, name) VALUES (?, ?, ?, ?)",
                (name, entry.event.event_id, entry.seq, "partial"),
            )
            raise RuntimeError("handler bug on first delivery")
        seen_attempts.append(
            await stores[0].fetch_one(
                "SELECT attempts, last_error FROM journal_attempts "
                "WHERE subscriber = ? AND seq = ?",
                (name, entry.seq),
            )
        )

    probe.hooks["sub"] = hook
    async with open_hub(
        tmp_path / "hub.db", lambda j: [recorder(j, "sub", probe)], retry_base_s=0.05
    ) as hub:
        store = hub.store
        stores.append(store)
        with trio.fail_after(TIMEOUT):
            entries = await publish(
                store, uploaded("one"), uploaded("flaky"), uploaded("three"), uploaded("four")
            )
            await probe.wait_applied("sub", 4)

        flaky = entries[1].seq
        assert probe.delivery_counts("sub") == {
            e.seq: (2 if e.seq == flaky else 1) for e in entries
        }
        # The failed attempt was recorded durably before the retry, then cleared on success.
        assert seen_attempts == [(1, "RuntimeError('handler bug on first delivery')")]
        assert await store.fetch_all("SELECT * FROM journal_attempts") == []
        assert await store.fetch_all("SELECT * FROM effects WHERE name = 'partial'") == []
        # Events before the failing one were committed; nothing after it overtook the retry.
        assert probe.seqs("sub") == [e.seq for e in entries]
        await assert_exactly_once(store, "sub", entries)
        assert await cursor_of(store, "sub") == entries[-1].seq


async def test_actor_crash_mid_batch_commits_nothing_of_the_batch(tmp_path: Path) -> None:
    """The batch's commit fails (a bad statement), the actor crashes: all of it is redone."""
    probe = Probe()
    broken: set[str] = set()

    async def hook(name: str, entry: Entry, tx: Transaction) -> None:
        if getattr(entry.event, "file_id", "") == "m3" and "m3" not in broken:
            broken.add("m3")
            tx.execute("INSERT INTO no_such_table VALUES (1)")

    probe.hooks["sub"] = hook
    async with open_hub(tmp_path / "hub.db", lambda j: [recorder(j, "sub", probe)]) as hub:
        with trio.fail_after(TIMEOUT):
            # One transaction: the subscriber receives all six events as one batch.
            entries = await publish(hub.store, *[uploaded(f"m{k}") for k in range(6)])
            await probe.wait_applied("sub", 6)

        assert hub.system.snapshot("/sub").restarts == 1
        last_error = hub.system.snapshot("/sub").last_error or ""
        assert "StoreError" in last_error and "no_such_table" in last_error
        # The whole first batch was handled, its commit failed, then all of it again.
        assert probe.delivery_counts("sub") == {entry.seq: 2 for entry in entries}
        assert probe.seqs("sub") == [entry.seq for entry in entries]
        await assert_exactly_once(hub.store, "sub", entries)
        assert await cursor_of(hub.store, "sub") == entries[-1].seq


async def test_crash_right_after_the_subscribers_commit_redelivers_nothing(
    tmp_path: Path,
) -> None:
    probe = Probe()
    probe.crash_after_drain["sub"] = 2  # crash after each of the first two committed drains
    async with open_hub(tmp_path / "hub.db", lambda j: [recorder(j, "sub", probe)]) as hub:
        entries: list[Entry] = []
        with trio.fail_after(TIMEOUT):
            for batch in range(3):
                entries += await publish(
                    hub.store, *[deleted(f"d{batch}-{k}") for k in range(batch + 2)]
                )
                await probe.wait_applied("sub", len(entries))
            assert probe.crash_after_drain["sub"] == 0
            assert hub.system.snapshot("/sub").restarts == 2
            # And an injected crash on the nudge that follows a committed batch.
            hub.system.faults.install(
                FaultRule(action=FaultAction.CRASH, path="/sub", message_type="JournalNudge", nth=1)
            )
            entries += await publish(hub.store, deleted("after"))
            await probe.wait_applied("sub", len(entries))

        assert hub.system.faults.installed()[0].fired == 1
        assert hub.system.snapshot("/sub").restarts == 3
        assert probe.delivery_counts("sub") == {entry.seq: 1 for entry in entries}
        await assert_exactly_once(hub.store, "sub", entries)
        assert await cursor_of(hub.store, "sub") == entries[-1].seq


async def test_attempts_survive_a_restart_and_are_cleared_on_success(tmp_path: Path) -> None:
    """A retry pending when the actor crashes keeps its attempt count; success clears it."""
    probe = Probe()
    failures = {"once": 1, "twice": 2}
    seen: list[tuple[str, int]] = []
    stores: list[Store] = []

    async def hook(name: str, entry: Entry, tx: Transaction) -> None:
        file_id = getattr(entry.event, "file_id", "")
        row = await stores[0].fetch_one(
            "SELECT attempts FROM journal_attempts WHERE subscriber = ? AND seq = ?",
            (name, entry.seq),
        )
        seen.append((file_id, int(row[0]) if row else 0))
        if failures.get(file_id, 0):
            failures[file_id] -= 1
            raise RuntimeError(f"{file_id} failed")

    probe.hooks["sub"] = hook
    async with open_hub(
        tmp_path / "hub.db", lambda j: [recorder(j, "sub", probe)], retry_base_s=0.1
    ) as hub:
        store = hub.store
        stores.append(store)
        crash_next_nudge = FaultRule(
            action=FaultAction.CRASH, path="/sub", message_type="JournalNudge", nth=1
        )
        with trio.fail_after(TIMEOUT):
            (once,) = await publish(store, uploaded("once"))
            await probe.wait_until(lambda: probe.delivery_counts("sub")[once.seq] == 1)
            # The retry timer's nudge crashes the actor; the new incarnation retries at once.
            hub.system.faults.install(crash_next_nudge)
            await probe.wait_applied("sub", 1)
            hub.system.faults.clear()
            assert hub.system.snapshot("/sub").restarts == 1

            (twice,) = await publish(store, uploaded("twice"))
            await probe.wait_until(lambda: probe.delivery_counts("sub")[twice.seq] == 1)
            hub.system.faults.install(crash_next_nudge)
            await probe.wait_applied("sub", 2)

        assert hub.system.snapshot("/sub").restarts == 2
        # The count of failed attempts carried over each restart ...
        assert seen == [("once", 0), ("once", 1), ("twice", 0), ("twice", 1), ("twice", 2)]
        # ... and was removed once the event succeeded, even in a later incarnation.
        assert await store.fetch_all("SELECT * FROM journal_attempts") == []
        await assert_exactly_once(store, "sub", [once, twice])
