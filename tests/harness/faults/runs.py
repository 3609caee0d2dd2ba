"""One run of the workload against an in-process hub, with a fault plan installed, and what
came of it: the end state, the broken invariants, what each fault rule matched and fired,
what the client had to retry, how long the workload and the recovery took.

``fault_free`` is the reference run (every pair observed, none crashed), made once per test
session and shared by the tests that compare against it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from supervision import ActorSnapshot, ActorSystem
from tests.harness.hub import Hub, running_hub

from .plans import Installed, Target, fault_targets, observe
from .state import State, converge, end_state, problems
from .workload import ALERT_METRIC, HUB_SETTINGS, Ledger, Workload

RUN_SETTINGS = {
    **HUB_SETTINGS,
    "RUNTIME__MAX_RESTARTS": "100000",
    "RUNTIME__BACKOFF_MAX_S": "0.5",
}
"""Every run (fault-free or not) uses these: a supervisor that gives up after 5 restarts in
30 s (the default) is right for a bug in production, but a run that crashes every actor on
purpose makes far more; and restarts back off at most 0.5 s, to keep the runs short."""

Plan = Callable[[ActorSystem, list[Target]], Installed]


@dataclass
class RunResult:
    name: str
    state: State
    problems: list[str]
    targets: list[Target]
    counts: dict[Target, tuple[int, int]]
    """(matched, fired) of each installed rule."""
    ledger: Ledger
    retries: Counter[str]
    failures: Counter[str]
    reconciled: Counter[str]
    settled: Counter[str]
    requests: int
    restarts: int
    runtime_dead_letters: int
    samples_stored: int
    workload_s: float
    recovery_s: float
    notes: list[str] = field(default_factory=list)

    @property
    def fired(self) -> dict[Target, int]:
        return {t: fired for t, (_, fired) in self.counts.items() if fired}

    @property
    def matched(self) -> dict[Target, int]:
        return {t: matched for t, (matched, _) in self.counts.items()}

    def summary(self) -> str:
        fired = sum(self.fired.values())
        lost = self.ledger.samples_published - self.samples_stored
        return (
            f"{self.name}: {len(self.counts)} rules, {fired} faults fired "
            f"({self.restarts} restarts, {self.runtime_dead_letters} poison messages); "
            f"{self.requests} requests, {sum(self.retries.values())} retried "
            f"{dict(self.failures)}, {sum(self.reconciled.values())} reconciled, "
            f"{sum(self.settled.values())} settled by 404/409; telemetry: "
            f"{self.ledger.samples_published} samples published, {lost} lost; "
            f"{self.ledger.orphan_pairings} orphan pairings; "
            f"workload {self.workload_s:.1f} s, recovery {self.recovery_s:.1f} s"
        )


def _restarts(node: ActorSnapshot) -> int:
    return node.restarts + sum(_restarts(child) for child in node.children)


async def samples_stored(hub: Hub) -> int:
    row = await hub.store.fetch_one(
        "SELECT count(*) FROM samples WHERE series_id IN "
        "(SELECT series_id FROM series WHERE metric = ?)",
        (ALERT_METRIC,),
    )
    return int(row[0]) if row else 0


async def run_in_process(name: str, directory: Path, plan: Plan) -> RunResult:
    """The workload on a fresh in-process hub with ``plan``'s rules installed from the start
    (after the admin is made); they are removed once the workload is done, then the hub
    recovers and the end state is taken."""
    async with running_hub(directory / "hub", **RUN_SETTINGS) as hub:
        admin = await hub.new_user("admin", admin=True)
        targets = fault_targets(hub.system)
        installed = plan(hub.system, targets)
        started = time.monotonic()
        async with Workload(hub.address.base_url, admin.token, directory / "work") as workload:
            await workload.run()
            workload_s = time.monotonic() - started
            counts = installed.counts()
            installed.remove()
            recovery_s = await converge(hub, workload)
            state = await end_state(hub, workload)
            found = await problems(hub, workload)
            api = workload.api
            return RunResult(
                name=name,
                state=state,
                problems=found,
                targets=targets,
                counts=counts,
                ledger=workload.ledger,
                retries=api.retries,
                failures=api.failures,
                reconciled=api.reconciled,
                settled=api.settled,
                requests=api.requests,
                restarts=_restarts(hub.system.snapshot()),
                runtime_dead_letters=hub.system.dead_letters.total,
                samples_stored=await samples_stored(hub),
                workload_s=workload_s,
                recovery_s=recovery_s,
            )


_fault_free: list[RunResult] = []


async def fault_free(directory: Path) -> RunResult:
    """The reference run, every pair observed (made once per session)."""
    if not _fault_free:
        result = await run_in_process("fault-free", directory, observe)
        assert not result.problems, result.problems
        _fault_free.append(result)
    return _fault_free[0]
