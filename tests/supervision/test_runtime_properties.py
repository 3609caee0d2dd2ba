"""Property test: random crash sequences through random supervision trees.

Each example is a fresh ``trio.run`` on a mock clock (hypothesis and pytest-trio's async tests
do not mix). Invariants checked after every step, once the system is quiescent:

* the tree has its original shape again and every actor runs with an empty mailbox;
* no message is handled twice (every message has a unique id; handlers record the ids they
  see), and a poison message is never handled again by the next incarnation;
* restart intensity: within one incarnation of a supervisor, the crashes of its children never
  exceed ``max_restarts`` within ``within_s``; at ``max_restarts + 1`` the supervisor gives up
  (``RestartIntensityExceeded``), and it never gives up earlier. At the root, giving up ends the
  system with ``SystemFailure``.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervision import (
    Actor,
    Backoff,
    ChildSpec,
    Intensity,
    Restart,
    RestartIntensityExceeded,
    Strategy,
    Supervision,
    Supervisor,
    SystemFailure,
    open_system,
)

NO_BACKOFF = Backoff(min_s=0.0, max_s=0.0, jitter=0.0)


@dataclass(frozen=True)
class Msg:
    id: int
    crash: bool = False


@dataclass(frozen=True)
class Sync:
    pass


class World:
    """What the actors of one example record: an ordered log and the ids each handled."""

    def __init__(self) -> None:
        self.log: list[tuple[Any, ...]] = []
        self.seen: dict[int, list[tuple[str, int]]] = defaultdict(list)
        self.instances = itertools.count(1)

    def add(self, kind: str, path: str, *extra: Any) -> None:
        self.log.append((kind, path, trio.current_time(), *extra))


class LoggingSupervisor(Supervisor):
    def __init__(self, world: World) -> None:
        self.world = world

    async def on_start(self) -> None:
        self.world.add("sup_start", self.context.path)

    async def on_failure(self, error: BaseException) -> None:
        self.world.add("sup_fail", self.context.path, type(error).__name__)


class Worker(Actor[Any]):
    def __init__(self, world: World) -> None:
        self.world = world
        self.instance = next(world.instances)

    async def receive(self, message: Any) -> Any:
        if isinstance(message, Sync):
            return self.instance
        self.world.seen[message.id].append((self.context.path, self.instance))
        if message.crash:
            self.world.add("crash", self.context.path, message.id)
            raise RuntimeError(f"poison {message.id}")
        return None


# -- the generated trees and steps -------------------------------------------------------------

restart_types = st.sampled_from([Restart.PERMANENT, Restart.TRANSIENT])


def policies(max_restarts: int) -> st.SearchStrategy[tuple[Strategy, int, float]]:
    return st.tuples(
        st.sampled_from(list(Strategy)),
        st.integers(0, max_restarts),
        st.sampled_from([2.0, 5.0, 20.0]),
    )


nodes = st.one_of(
    st.tuples(st.just("worker"), restart_types),
    st.tuples(st.just("sup"), policies(2), st.lists(restart_types, min_size=1, max_size=3)),
)
trees = st.tuples(policies(4), st.lists(nodes, min_size=1, max_size=3))
# (worker index, messages before, crash?, messages after, virtual seconds to wait afterwards)
steps = st.lists(
    st.tuples(
        st.integers(0, 20),
        st.integers(0, 2),
        st.sampled_from([True, True, False]),  # crashes are the point: mostly crash
        st.integers(0, 2),
        st.sampled_from([0.0, 0.0, 1.0, 3.0, 10.0]),
    ),
    min_size=2,
    max_size=8,
)


def build(world: World, tree: Any) -> tuple[ChildSpec[Any], dict[str, Intensity], list[str]]:
    """The root spec, each supervisor's intensity by path, and the worker paths."""
    intensities: dict[str, Intensity] = {}
    workers: list[str] = []

    def sup(name: str, path: str, policy: Any, children: list[ChildSpec[Any]]) -> ChildSpec[Any]:
        strategy, max_restarts, within_s = policy
        intensities[path] = Intensity(max_restarts, within_s)
        return ChildSpec(
            name=name,
            factory=lambda: LoggingSupervisor(world),
            supervision=Supervision(strategy, intensities[path], NO_BACKOFF),
            children=tuple(children),
        )

    def worker(name: str, path: str, restart: Restart) -> ChildSpec[Any]:
        workers.append(path)
        return ChildSpec(name=name, factory=lambda: Worker(world), restart=restart)

    root_policy, root_nodes = tree
    children: list[ChildSpec[Any]] = []
    for i, node in enumerate(root_nodes):
        if node[0] == "worker":
            children.append(worker(f"w{i}", f"/w{i}", node[1]))
        else:
            _, policy, kinds = node
            grandchildren = [worker(f"w{j}", f"/s{i}/w{j}", kind) for j, kind in enumerate(kinds)]
            children.append(sup(f"s{i}", f"/s{i}", policy, grandchildren))
    return sup("root", "/", root_policy, children), intensities, workers


def parent_of(path: str) -> str:
    parent = path.rsplit("/", 1)[0]
    return parent or "/"


def paths(snapshot: Any) -> set[str]:
    return {snapshot.path}.union(*(paths(c) for c in snapshot.children))


def walk(snapshot: Any) -> list[Any]:
    return [snapshot, *(s for c in snapshot.children for s in walk(c))]


# -- one example ----------------------------------------------------------------------------------


async def run_example(tree: Any, plan: Any) -> None:
    world = World()
    root, intensities, workers = build(world, tree)
    ids = itertools.count(1)
    sent: list[int] = []  # ids of messages a completed Sync proves were handled
    poison: list[int] = []
    failure: SystemFailure | None = None
    dead_letters = None
    try:
        async with open_system(root, with_asyncio=False, seed=0) as system:
            dead_letters = system.dead_letters
            await trio.testing.wait_all_tasks_blocked()
            shape = paths(system.snapshot())
            for index, before, crash, after, gap in plan:
                ref = system.lookup(workers[index % len(workers)])
                batch = [Msg(next(ids)) for _ in range(before)]
                if crash:
                    batch.append(Msg(next(ids), crash=True))
                batch += [Msg(next(ids)) for _ in range(after)]
                old = await ref.ask(Sync(), timeout=60)
                for message in batch:
                    await ref.tell(message)
                new = await ref.ask(Sync(), timeout=60)
                sent += [m.id for m in batch]
                poison += [m.id for m in batch if m.crash]
                # A crash means a fresh instance handles what was queued behind the poison;
                # without one, the same instance goes on.
                assert (new != old) is crash
                await trio.testing.wait_all_tasks_blocked()
                snapshot = system.snapshot()
                assert paths(snapshot) == shape
                for actor in walk(snapshot):
                    assert actor.state == "running", actor
                    assert actor.mailbox_depth == 0, actor
                await trio.sleep(gap)  # virtual time passes between steps
    except SystemFailure as exc:
        failure = exc

    # No message handled twice, none lost; poison handled once, by one incarnation.
    for message_id in sent:
        assert len(world.seen[message_id]) == 1, (message_id, world.seen[message_id])
    assert set(world.seen) <= set(range(1, next(ids)))
    assert all(len(handlers) == 1 for handlers in world.seen.values())
    crashed = [entry[3] for entry in world.log if entry[0] == "crash"]
    assert len(crashed) == len(set(crashed))
    assert set(poison) <= set(crashed)
    if failure is None:
        assert set(crashed) == set(poison)
    assert dead_letters is not None and dead_letters.total == len(crashed)

    # Restart intensity, replayed from the log.
    window: dict[str, list[float]] = defaultdict(list)
    giving_up: set[str] = set()
    for kind, path, at, *extra in world.log:
        if kind == "sup_start":
            assert path not in giving_up
            window[path] = []  # a new incarnation of the supervisor: a fresh history
            continue
        if kind == "sup_fail":
            assert extra == ["RestartIntensityExceeded"], extra
            assert path in giving_up, f"{path} gave up before its restart intensity was exceeded"
            giving_up.discard(path)
            if path == "/":
                continue
        supervisor = parent_of(path)
        assert supervisor not in giving_up, f"{supervisor} restarted past its intensity"
        limit = intensities[supervisor]
        window[supervisor].append(at)
        recent = [t for t in window[supervisor] if t >= at - limit.within_s]
        assert len(recent) <= limit.max_restarts + 1
        if len(recent) == limit.max_restarts + 1:
            giving_up.add(supervisor)
    assert not giving_up, f"{giving_up} should have given up"

    root_failed = any(entry[:2] == ("sup_fail", "/") for entry in world.log)
    assert root_failed is (failure is not None)
    if failure is not None:
        assert isinstance(failure.cause, RestartIntensityExceeded)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(tree=trees, plan=steps)
def test_random_crashes_keep_the_tree_and_process_each_message_once(tree, plan):
    trio.run(run_example, tree, plan, clock=trio.testing.MockClock(autojump_threshold=0))
