"""Dead letters: an event that keeps failing is parked, the stream goes on, and a replay
(through the journal keeper, or ``run.py deadletters replay`` on a stopped hub) applies it."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from actors import DATABASE_NAME
from actors.journal import (
    Journal,
    JournalKeeper,
    ListDeadLetters,
    ParkedEvent,
    ReplayDeadLetter,
    UnknownDeadLetter,
)
from actors.store import Entry, Transaction
from supervision import ChildSpec
from tests.harness import ROOT
from tests.harness.journal import (
    Probe,
    assert_exactly_once,
    cursor_of,
    deleted,
    open_hub,
    publish,
    recorder,
    until_committed,
)

TIMEOUT = 10
MAX_ATTEMPTS = 3


class Poison:
    """A handler bug on the event of file ``poison`` until ``fixed``."""

    def __init__(self) -> None:
        self.fixed = False

    async def __call__(self, name: str, entry: Entry, tx: Transaction) -> None:
        if getattr(entry.event, "file_id", "") == "poison" and not self.fixed:
            raise ValueError("cannot handle the poison file")


async def parked(journal: Journal, *, replay_requested: bool | None = None) -> bool:
    letters = await journal.dead_letters()
    return bool(letters) and replay_requested in (None, letters[0].replay_requested)


async def none_parked(journal: Journal) -> bool:
    return not await journal.dead_letters()


def flaky_hub(probe: Probe, *, keeper: bool = True) -> Any:
    def children(journal: Journal) -> list[ChildSpec[Any]]:
        specs = [recorder(journal, "flaky", probe)]
        if keeper:
            specs.append(ChildSpec("journal", lambda: JournalKeeper(journal, retention_s=3600.0)))
        return specs

    return children


async def park_the_poison(path: Path, probe: Probe) -> tuple[list[Entry], Entry]:
    """Run a hub until the poison event is parked and the events around it are handled."""
    async with open_hub(
        path, flaky_hub(probe, keeper=False), max_attempts=MAX_ATTEMPTS, retry_base_s=0.01
    ) as hub:
        with trio.fail_after(TIMEOUT):
            entries = await publish(hub.store, deleted("before"), deleted("poison"))
            entries += await publish(hub.store, deleted("after"))
            await probe.wait_applied("flaky", 2)
            await until_committed(hub.store, lambda: parked(hub.journal))
        return entries, entries[1]


async def test_a_poison_event_is_parked_and_replayed_through_the_keeper(tmp_path: Path) -> None:
    probe = Probe()
    poison = Poison()
    probe.hooks["flaky"] = poison
    async with open_hub(
        tmp_path / "hub.db", flaky_hub(probe), max_attempts=MAX_ATTEMPTS, retry_base_s=0.01
    ) as hub:
        store, journal, keeper = hub.store, hub.journal, hub.system.lookup("/journal")
        with trio.fail_after(TIMEOUT):
            entries = await publish(store, deleted("before"), deleted("poison"))
            entries += await publish(store, deleted("after"), deleted("later"))
            # The stream went on past the poison event.
            await probe.wait_applied("flaky", 3)
            await until_committed(journal.store, lambda: parked(journal))
        bad = entries[1]
        assert probe.seqs("flaky") == [1, 3, 4]
        assert probe.delivery_counts("flaky")[bad.seq] == MAX_ATTEMPTS
        assert await cursor_of(store, "flaky") == 4

        (letter,) = await journal.dead_letters()
        assert (letter.subscriber, letter.seq, letter.event) == ("flaky", bad.seq, "file.deleted")
        assert "cannot handle the poison file" in letter.error
        assert letter.attempts == MAX_ATTEMPTS and not letter.replay_requested
        assert await keeper.ask(ListDeadLetters()) == [letter]
        assert await keeper.ask(ListDeadLetters("someone-else")) == []
        assert await store.fetch_all("SELECT * FROM journal_attempts") == []
        row = await store.fetch_one(
            "SELECT traceback FROM journal_dead_letters WHERE id = ?", (letter.id,)
        )
        assert row is not None and "ValueError: cannot handle the poison file" in row[0]

        # A replay while the bug is still there fails again and stays parked.
        with trio.fail_after(TIMEOUT):
            requested = await keeper.ask(ReplayDeadLetter(letter.id))
            assert isinstance(requested, ParkedEvent) and requested.replay_requested
            await probe.wait_until(
                lambda: probe.delivery_counts("flaky")[bad.seq] == MAX_ATTEMPTS + 1
            )
            await until_committed(journal.store, lambda: parked(journal, replay_requested=False))
        (again,) = await journal.dead_letters()
        assert again.id == letter.id and again.attempts == MAX_ATTEMPTS + 1

        # Fixed: the replay applies it once and removes the dead letter.
        poison.fixed = True
        with trio.fail_after(TIMEOUT):
            await keeper.ask(ReplayDeadLetter(letter.id))
            await probe.wait_seq("flaky", bad.seq)
            await until_committed(journal.store, lambda: none_parked(journal))
        await assert_exactly_once(store, "flaky", entries)
        with pytest.raises(UnknownDeadLetter):
            await keeper.ask(ReplayDeadLetter(letter.id))


def run_cli(data_dir: Path, *args: str) -> tuple[int, str, str]:
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("FRAMEHUB_")}
    env |= {"FRAMEHUB_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "run.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


async def cli(data_dir: Path, *args: str) -> tuple[int, str, str]:
    return await trio.to_thread.run_sync(run_cli, data_dir, *args)


async def test_the_cli_lists_and_replays_dead_letters_of_a_stopped_hub(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    path = data_dir / DATABASE_NAME
    probe = Probe()
    poison = Poison()
    probe.hooks["flaky"] = poison
    entries, bad = await park_the_poison(path, probe)

    # The hub is stopped; the operator looks at the dead letters (independent runs at once).
    commands = {
        "json": ("deadletters", "list", "--json"),
        "other": ("deadletters", "list", "--json", "--subscriber", "other"),
        "text": ("deadletters", "list"),
        "unknown": ("deadletters", "replay", "999"),
    }
    results: dict[str, tuple[int, str, str]] = {}

    async def run(key: str) -> None:
        results[key] = await cli(data_dir, *commands[key])

    async with trio.open_nursery() as nursery:
        for key in commands:
            nursery.start_soon(run, key)

    code, out, err = results["json"]
    assert code == 0, err
    (listed,) = json.loads(out)
    assert listed["subscriber"] == "flaky" and listed["seq"] == bad.seq
    assert listed["event"] == "file.deleted" and listed["attempts"] == MAX_ATTEMPTS
    assert "cannot handle the poison file" in listed["error"]
    assert listed["replay_requested"] is False and listed["parked_at"].endswith("Z")
    code, out, _ = results["other"]
    assert code == 0 and json.loads(out) == []
    code, out, _ = results["text"]
    assert code == 0 and f"{listed['id']}\tflaky\t#{bad.seq} file.deleted" in out
    code, out, err = results["unknown"]
    assert code == 1 and "no dead letter 999" in err

    code, out, err = await cli(data_dir, "deadletters", "replay", str(listed["id"]))
    assert code == 0, err
    assert f"replay of dead letter {listed['id']}" in out
    code, out, _ = await cli(data_dir, "deadletters", "list", "--json")
    assert json.loads(out)[0]["replay_requested"] is True

    # The next start, with the handler fixed, applies it exactly once.
    poison.fixed = True
    async with open_hub(path, flaky_hub(probe), max_attempts=MAX_ATTEMPTS) as hub:
        with trio.fail_after(TIMEOUT):
            await probe.wait_seq("flaky", bad.seq)
            await until_committed(hub.store, lambda: none_parked(hub.journal))
        await assert_exactly_once(hub.store, "flaky", entries)
    code, out, _ = await cli(data_dir, "deadletters", "list", "--json")
    assert code == 0 and json.loads(out) == []


async def test_the_cli_refuses_a_missing_database(tmp_path: Path) -> None:
    code, _, err = await cli(tmp_path / "empty", "deadletters", "list")
    assert code == 1 and "no database" in err
    assert not (tmp_path / "empty" / DATABASE_NAME).exists()


async def test_a_cli_replay_reaches_a_running_hub_through_the_keeper(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    path = data_dir / DATABASE_NAME
    probe = Probe()
    poison = Poison()
    probe.hooks["flaky"] = poison

    def children(journal: Journal) -> list[ChildSpec[Any]]:
        return [
            recorder(journal, "flaky", probe),
            ChildSpec(
                "journal",
                lambda: JournalKeeper(journal, retention_s=3600.0, replay_check_s=0.05),
            ),
        ]

    async with open_hub(path, children, max_attempts=MAX_ATTEMPTS, retry_base_s=0.01) as hub:
        with trio.fail_after(TIMEOUT):
            entries = await publish(hub.store, deleted("poison"), deleted("after"))
            await probe.wait_applied("flaky", 1)
            await until_committed(hub.store, lambda: parked(hub.journal))
        (letter,) = await hub.journal.dead_letters()
        poison.fixed = True
        # Another process marks it while this hub runs; the keeper's periodic check wakes
        # the subscriber, which applies it.
        with trio.fail_after(TIMEOUT):
            code, _, err = await cli(data_dir, "deadletters", "replay", str(letter.id))
            assert code == 0, err
            await probe.wait_seq("flaky", letter.seq)
            await until_committed(hub.store, lambda: none_parked(hub.journal))
        await assert_exactly_once(hub.store, "flaky", entries)
        assert await cursor_of(hub.store, "flaky") == entries[-1].seq
