"""Process kills: the workload (``tests/harness/faults/workload.py``) against ``run.py serve``
in a child process that is SIGKILLed at seeded random moments and started again on the same
data directory and ports, many times (CI: ``CI_KILLS``; ``--long``: ``LONG_KILLS``).

Each kill is planned as (workload step, delay into it): the hub dies in the middle of whatever
that step is doing (an upload being stored, a pairing, a campaign rolling out, an alert being
evaluated). Requests that die with it are retried by the client (the workload's retry policy);
frames reconnect by themselves. After the last kill the hub is stopped and started once more
in this process, the end state is taken once everything converged, and:

* every upload the hub acknowledged (201/200) is still there, its blob intact;
* no event's effect was applied twice (the invariants of ``tests/harness/faults/state.py``);
* every frame holds exactly what its albums hold;
* the end state equals the fault-free run's, except for what a kill legitimately changes and
  ``explained`` names precisely (orphan pairings, firmware downloads cut by a kill).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import trio

from tests.harness.faults.runs import RUN_SETTINGS, fault_free, samples_stored
from tests.harness.faults.state import (
    State,
    converge,
    differences,
    end_state,
    problems,
    staged_leftovers,
)
from tests.harness.faults.workload import Ledger, Workload
from tests.harness.hub import running_hub
from tests.harness.hub_process import HubProcess

CI_KILLS = 5
LONG_KILLS = 50
LONGEST_DELAY_S = 1.5
"""A kill lands this long at most after its step began."""
FIRST_KILLED_STEP = 1
"""Not while the users are made: a user's token is shown once (see the workload's retries)."""
KILL_SETTINGS = {**RUN_SETTINGS, "FRAMES__COMMAND_TIMEOUT_S": "600"}
"""A frame command's deadline is wall-clock time and the hub is down for seconds at each
kill: the test's command must not time out for the kills' sake alone, only if its answer is
lost for good."""
PROCESS_SETTINGS = {**KILL_SETTINGS, "CONSOLE__PORT": "0", "LOG_LEVEL": "INFO"}


class Killer:
    """Kills the hub at planned moments of the workload and starts it again.

    The workload does not begin a step before every kill planned for the steps before it has
    happened (a restart takes seconds; without this, kills would pile up at the end)."""

    def __init__(self, hub: HubProcess, plan: list[tuple[int, float]]) -> None:
        self.hub = hub
        self.plan = plan
        self.step = -1
        self.step_name = ""
        self._changed = trio.Event()
        self.done = trio.Event()
        self.kills: list[tuple[str, float, float]] = []
        """(step it landed in, delay into its planned step, seconds until the hub was back)."""

    def _tell(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def on_step(self, index: int, name: str) -> None:
        while len(self.kills) < len(self.plan) and self.plan[len(self.kills)][0] < index:
            await self._changed.wait()
        self.step, self.step_name = index, name
        self._tell()

    async def run(self) -> None:
        for step, delay in self.plan:
            while self.step < step:
                await self._changed.wait()
            await trio.sleep(delay)  # the random moment within the step: this is the fault
            await self.hub.kill()
            started = time.monotonic()
            await self.hub.start()
            self.kills.append((self.step_name, delay, time.monotonic() - started))
            self._tell()
        self.done.set()


def kill_plan(rng: random.Random, kills: int, steps: int) -> list[tuple[int, float]]:
    """``kills`` moments: a seeded step (after the users) and a delay into it, in order."""
    moments = [
        (rng.randrange(FIRST_KILLED_STEP, steps), round(rng.uniform(0.0, LONGEST_DELAY_S), 3))
        for _ in range(kills)
    ]
    return sorted(moments)


def _shift(counts: dict[str, int], name: str, by: int) -> None:
    counts[name] = counts.get(name, 0) - by
    if not counts[name]:
        del counts[name]


def explained(reference: State, state: State, ledger: Ledger) -> tuple[State, list[str]]:
    """``state`` without what a kill legitimately changes, and what that was.

    * An orphan pairing (its answer died with the hub) is a device registered, then deleted
      by the client: one more ``device.registered`` and ``device.deleted`` each, and a deleted
      device with no firmware and no albums.
    * A firmware download cut by a kill fails the update when the hub is down for longer than
      the frame retries (``frame_device``: 5 attempts in about 3 s); the campaign pauses and
      the admin retries the failed frames: more attempts, an ``update.failed`` per failure, a
      ``campaign.paused`` and a resuming ``campaign.started`` per retry, each notified. Only
      failures the frame reported as ``download failed`` are explained so.
    """
    notes: list[str] = []
    events = dict(state["events"])
    notified = dict(state["notifications"].get("admin", {}))
    devices = {kind: dict(named) for kind, named in state["devices"].items()}
    campaigns = dict(state["campaigns"])
    orphans = ledger.orphan_pairings
    if orphans:
        for name in ("device.registered", "device.deleted"):
            _shift(events, name, orphans)
        deleted = devices.get("deleted", {})
        expected = reference["devices"].get("deleted", {})
        for name, entries in list(deleted.items()):
            kept = list(entries)
            for entry in entries:
                surplus = kept.count(entry) - expected.get(name, []).count(entry)
                if surplus > 0 and entry["firmware_version"] is None and not entry["albums"]:
                    kept.remove(entry)
            deleted[name] = kept
            if not kept:
                del deleted[name]
        notes.append(f"{orphans} orphan pairings, deleted by the client")
    retried = ledger.campaign_retries
    if retried and all(error.startswith("download failed") for r in retried for _, error in r):
        failures = sum(len(r) for r in retried)
        for counts in (events, notified):
            _shift(counts, "update.failed", failures)
            _shift(counts, "campaign.paused", len(retried))
            _shift(counts, "campaign.started", len(retried))
        extra = {name: sum(1 for r in retried for n, _ in r if n == name) for name, _ in retried[0]}
        rollout = dict(campaigns["rollout"])
        rollout["targets"] = [
            (name, target_state, attempts - extra.get(name, 0), error)
            for name, target_state, attempts, error in rollout["targets"]
        ]
        campaigns["rollout"] = rollout
        notes.append(f"firmware downloads cut by kills, retried by the admin: {retried}")
    normalized = {
        **state,
        "events": events,
        "notifications": {**state["notifications"], "admin": notified},
        "devices": {kind: named for kind, named in devices.items() if named},
        "campaigns": campaigns,
    }
    return normalized, notes


async def test_the_hub_killed_at_random_moments_loses_nothing_acknowledged(
    tmp_path: Path, seed: int, long_run: bool
) -> None:
    reference = await fault_free(tmp_path / "fault-free")
    rng = random.Random(seed)
    data_dir = tmp_path / "hub"
    data_dir.mkdir()
    async with trio.open_nursery() as nursery:
        hub = HubProcess(data_dir, nursery, **PROCESS_SETTINGS)
        await hub.start()
        try:
            token = await trio.to_thread.run_sync(hub.admin_token)
            killer = Killer(hub, [])
            workload = Workload(hub.base_url, token, tmp_path / "work", on_step=killer.on_step)
            killer.plan = kill_plan(rng, LONG_KILLS if long_run else CI_KILLS, len(workload.steps))
            started = time.monotonic()
            async with workload:
                nursery.start_soon(killer.run)
                await workload.run()
                with trio.fail_after(300):
                    await killer.done.wait()  # kills planned late in the last step
                workload_s = time.monotonic() - started
                await hub.stop()
                ports = {"HTTP__PORT": str(hub.http_port), "MQTT__PORT": str(hub.mqtt_port)}
                async with running_hub(data_dir, **KILL_SETTINGS, **ports) as final:
                    recovery_s = await converge(final, workload)
                    state = await end_state(final, workload)
                    found = await problems(final, workload, staged_allowed=True)
                    stored = await samples_stored(final)
                    staged = len(staged_leftovers(final))
        finally:
            with trio.CancelScope(shield=True):
                await hub.stop()
            nursery.cancel_scope.cancel()

    ledger = workload.ledger
    api = workload.api
    print(
        f"kills: {len(killer.kills)} survived, at {[(s, d) for s, d, _ in killer.kills]}; "
        f"restarts took {sum(r for _, _, r in killer.kills):.1f} s in all; "
        f"{api.requests} requests, {sum(api.retries.values())} retried {dict(api.failures)}, "
        f"{sum(api.reconciled.values())} reconciled, {sum(api.settled.values())} settled by "
        f"404/409; {len(ledger.uploads)} uploads acknowledged; telemetry: "
        f"{ledger.samples_published} samples acknowledged by the broker, "
        f"{ledger.samples_published - stored} lost; {ledger.orphan_pairings} orphan pairings; "
        f"{staged} cut-off uploads left in staging (swept after an hour); "
        f"workload {workload_s:.1f} s, recovery {recovery_s:.1f} s"
    )
    assert len(killer.kills) == len(killer.plan)
    assert not found, "broken invariants:\n" + "\n".join(found)
    got, notes = explained(reference.state, state, ledger)
    if notes:
        print("legitimate differences:", notes)
    assert ledger.commands == reference.ledger.commands, ledger.commands
    changed = differences(reference.state, got)
    assert not changed, "the end state differs from the fault-free run:\n" + "\n".join(changed)
