"""Supervision: strategies, restart types, intensity, backoff, lifecycle, timers, watch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import trio
import trio.testing

from supervision import (
    Actor,
    ActorCrashed,
    ActorNotFound,
    Backoff,
    ChildSpec,
    Intensity,
    Restart,
    RestartIntensityExceeded,
    State,
    Strategy,
    Supervision,
    SystemFailure,
    Terminated,
    open_system,
    supervisor,
)

NO_BACKOFF = Backoff(min_s=0.0, max_s=0.0, jitter=0.0)


@dataclass(frozen=True)
class Boom:
    pass


@dataclass(frozen=True)
class Stop:
    pass


@dataclass(frozen=True)
class Note:
    value: Any


@dataclass(frozen=True)
class Hang:
    pass


@dataclass(frozen=True)
class Tick:
    incarnation: int


@dataclass(frozen=True)
class Watch:
    ref: Any


@dataclass(frozen=True)
class Unwatch:
    ref: Any


class Child(Actor[Any]):
    """Logs its lifecycle as (kind, path, incarnation, time); ``incarnation`` counts per path."""

    def __init__(
        self, events: Any, *, hang_on_stop: bool = False, tick_every: float | None = None
    ) -> None:
        self.events = events
        self.hang_on_stop = hang_on_stop
        self.tick_every = tick_every
        self.incarnation = 0

    def log(self, kind: str, *extra: Any) -> None:
        self.events.add(kind, self.context.path, self.incarnation, trio.current_time(), *extra)

    async def on_start(self) -> None:
        path = self.context.path
        self.incarnation = 1 + sum(1 for e in self.events.of("start") if e[0] == path)
        self.log("start")
        if self.tick_every is not None:
            self.context.send_every(self.tick_every, Tick(self.incarnation))

    async def receive(self, message: Any) -> Any:
        match message:
            case Boom():
                raise RuntimeError(f"boom in {self.context.path}")
            case Stop():
                self.context.stop()
            case Note(value=value):
                self.log("note", value)
                return value
            case Hang():
                try:
                    await trio.sleep_forever()
                finally:
                    self.log("cancelled")
            case Tick(incarnation=incarnation):
                self.log("tick", incarnation)
            case Watch(ref=ref):
                self.context.watch(ref, lambda terminated: terminated)
            case Unwatch(ref=ref):
                self.context.unwatch(ref)
            case Terminated():
                self.log("terminated", message)
            case _:
                raise TypeError(message)

    async def on_stop(self) -> None:
        if self.hang_on_stop:
            try:
                await trio.sleep_forever()
            finally:
                self.log("cancelled")
        self.log("stop")

    async def on_failure(self, error: BaseException) -> None:
        self.log("failure", type(error).__name__)


def child(events: Any, name: str, **spec: Any) -> ChildSpec[Any]:
    options = {k: spec.pop(k) for k in ("hang_on_stop", "tick_every") if k in spec}
    return ChildSpec(name=name, factory=lambda: Child(events, **options), **spec)


def starts(events: Any) -> list[str]:
    return [e[0] for e in events.of("start")]


def stops(events: Any) -> list[str]:
    return [e[0] for e in events.of("stop")]


def paths(snapshot: Any) -> set[str]:
    return {snapshot.path}.union(*(paths(c) for c in snapshot.children))


async def crash(system: Any, path: str) -> None:
    with pytest.raises(ActorCrashed):
        await system.lookup(path).ask(Boom())


# -- strategies and restart types -------------------------------------------------------------


@pytest.mark.parametrize(
    ("strategy", "restarted", "stopped"),
    [
        (Strategy.ONE_FOR_ONE, ["/b"], []),
        (Strategy.ONE_FOR_ALL, ["/a", "/b", "/c"], ["/c", "/a"]),
        (Strategy.REST_FOR_ONE, ["/b", "/c"], ["/c"]),
    ],
)
async def test_strategy_decides_which_siblings_restart(events, strategy, restarted, stopped):
    root = supervisor(
        "root", [child(events, n) for n in "abc"], strategy=strategy, backoff=NO_BACKOFF
    )
    async with open_system(root, with_asyncio=False) as system:
        assert starts(events) == ["/a", "/b", "/c"]
        await crash(system, "/b")
        await events.wait_count("start", 3 + len(restarted))
        await trio.testing.wait_all_tasks_blocked()
        # The crashed child's siblings in the group are stopped last-started first, then the
        # whole group starts again in start order.
        assert starts(events)[3:] == restarted
        assert stops(events) == stopped
        assert [e[0] for e in events.of("failure")] == ["/b"]
        snap = system.snapshot()
        assert {c.path: c.restarts for c in snap.children} == {
            p: int(p in restarted) for p in ("/a", "/b", "/c")
        }
        assert all(c.state == State.RUNNING for c in snap.children)


@pytest.mark.parametrize(
    ("restart", "ending", "restarted"),
    [
        (Restart.PERMANENT, "crash", True),
        (Restart.PERMANENT, "normal", True),
        (Restart.TRANSIENT, "crash", True),
        (Restart.TRANSIENT, "normal", False),
        (Restart.TEMPORARY, "crash", False),
        (Restart.TEMPORARY, "normal", False),
    ],
)
async def test_restart_type_decides_whether_an_ended_child_comes_back(
    events, restart, ending, restarted
):
    root = supervisor("root", [child(events, "w", restart=restart)], backoff=NO_BACKOFF)
    async with open_system(root, with_asyncio=False) as system:
        ref = system.lookup("/w")
        if ending == "crash":
            await crash(system, "/w")
        else:
            await ref.ask(Stop())
        await trio.testing.wait_all_tasks_blocked()
        if restarted:
            assert starts(events) == ["/w", "/w"]
            assert system.lookup("/w") == ref and ref.alive
            assert system.snapshot("/w").restarts == 1
            assert await ref.ask(Note("still here")) == "still here"
        else:
            assert starts(events) == ["/w"]
            assert not ref.alive
            with pytest.raises(ActorNotFound):
                system.lookup("/w")
            assert system.snapshot().children == []


# -- restart intensity and escalation -----------------------------------------------------------


def nested(events: Any, mid_intensity: Intensity, root_intensity: Intensity) -> ChildSpec[Any]:
    mid = supervisor(
        "mid", [child(events, "w"), child(events, "v")], intensity=mid_intensity, backoff=NO_BACKOFF
    )
    return supervisor("root", [mid], intensity=root_intensity, backoff=NO_BACKOFF)


async def test_intensity_exceeded_escalates_to_the_parent(events, autojump_clock):
    spec = nested(events, Intensity(max_restarts=2, within_s=60), Intensity(10, 60))
    async with open_system(spec, with_asyncio=False) as system:
        ref = system.lookup("/mid/w")
        for _ in range(2):
            await crash(system, "/mid/w")
            await trio.testing.wait_all_tasks_blocked()
        assert system.snapshot("/mid").restarts == 0
        assert system.snapshot("/mid/w").restarts == 2
        await crash(system, "/mid/w")  # the third within the window: /mid gives up
        await trio.testing.wait_all_tasks_blocked()
        mid = system.snapshot("/mid")
        assert mid.restarts == 1
        assert mid.last_error is not None and "RestartIntensityExceeded" in mid.last_error
        assert mid.state == State.RUNNING
        # /mid stopped both children (last started first) and started them again.
        assert stops(events) == ["/mid/v"]
        assert starts(events)[-2:] == ["/mid/w", "/mid/v"]
        assert system.lookup("/mid/w") == ref
        assert await ref.ask(Note(1)) == 1
        assert paths(system.snapshot()) == {"/", "/mid", "/mid/w", "/mid/v"}


@pytest.mark.parametrize(("gap", "escalates"), [(4.0, True), (6.0, False)])
async def test_intensity_counts_restarts_within_a_sliding_window(
    events, autojump_clock, gap, escalates
):
    spec = nested(events, Intensity(max_restarts=1, within_s=5), Intensity(10, 60))
    async with open_system(spec, with_asyncio=False) as system:
        for _ in range(3):
            await crash(system, "/mid/w")
            await trio.testing.wait_all_tasks_blocked()
            await trio.sleep(gap)  # lets virtual time pass between crashes
        assert (system.snapshot("/mid").restarts > 0) is escalates


async def test_a_restarted_supervisor_starts_with_a_fresh_restart_history(events, autojump_clock):
    spec = nested(events, Intensity(max_restarts=1, within_s=60), Intensity(10, 60))
    async with open_system(spec, with_asyncio=False) as system:
        await crash(system, "/mid/w")
        await crash(system, "/mid/w")  # second within 60 s: /mid escalates, /root restarts it
        await trio.testing.wait_all_tasks_blocked()
        assert system.snapshot("/mid").restarts == 1
        # The new /mid incarnation has seen no restart yet, so one crash is within its limit.
        await crash(system, "/mid/w")
        await trio.testing.wait_all_tasks_blocked()
        assert system.snapshot("/mid").restarts == 1, (
            "/mid escalated on the first crash after its restart: its restart history "
            "survived the restart"
        )


async def test_intensity_exceeded_at_the_root_raises_system_failure(events, autojump_clock):
    spec = nested(events, Intensity(max_restarts=0, within_s=10), Intensity(0, 10))
    reached_end = False
    with trio.fail_after(60), pytest.raises(SystemFailure) as info:
        async with open_system(spec, with_asyncio=False) as system:
            await crash(system, "/mid/w")  # /mid gives up, then the root gives up
            await trio.sleep_forever()  # the block is cancelled when the root fails
            reached_end = True
    assert not reached_end
    assert isinstance(info.value.cause, RestartIntensityExceeded)
    assert info.value.cause.path == "/"
    # The tree was taken down: children stopped before the system ended.
    assert sorted(e[0] for e in events.of("stop")) == ["/mid/v"]
    assert [e[0] for e in events.of("failure")] == ["/mid/w"]


# -- backoff --------------------------------------------------------------------------------------


async def test_backoff_delays_grow_then_reset_after_a_quiet_period(events, autojump_clock):
    backoff = Backoff(min_s=1.0, max_s=4.0, jitter=0.0, reset_s=10.0)
    root = supervisor("root", [child(events, "w")], intensity=Intensity(100, 1000), backoff=backoff)
    async with open_system(root, with_asyncio=False) as system:
        delays = []
        for k in range(5):
            crashed_at = trio.current_time()
            await crash(system, "/w")
            await events.wait_count("start", k + 2)
            delays.append(events.of("start")[-1][2] - crashed_at)
        assert delays == pytest.approx([0.0, 1.0, 2.0, 4.0, 4.0])
        assert system.snapshot("/w").state == State.RUNNING
        await trio.sleep(10.5)  # quiet: more than reset_s since the last restart
        for expected in (0.0, 1.0):
            crashed_at = trio.current_time()
            await crash(system, "/w")
            await events.wait_count("start", len(starts(events)) + 1)
            assert events.of("start")[-1][2] - crashed_at == pytest.approx(expected)


async def test_a_child_waiting_for_its_backoff_is_restarting_and_keeps_its_mail(
    events, autojump_clock
):
    backoff = Backoff(min_s=3.0, max_s=3.0, jitter=0.0, reset_s=100.0)
    root = supervisor("root", [child(events, "w")], intensity=Intensity(10, 100), backoff=backoff)
    async with open_system(root, with_asyncio=False) as system:
        await crash(system, "/w")
        await crash(system, "/w")  # second one: waits 3 s
        await trio.testing.wait_all_tasks_blocked()
        snap = system.snapshot("/w")
        assert snap.state == State.RESTARTING
        t0 = trio.current_time()
        assert await system.lookup("/w").ask(Note("queued"), timeout=10) == "queued"
        assert trio.current_time() - t0 == pytest.approx(3.0)


# -- dynamic children -----------------------------------------------------------------------------


async def test_dynamic_children_start_and_stop(events):
    root = supervisor("root", [child(events, "static")])
    async with open_system(root, with_asyncio=False) as system:
        ref = await system.start_child("/", child(events, "dyn"))
        # on_start has run by the time start_child returns.
        assert starts(events) == ["/static", "/dyn"]
        assert system.lookup("/dyn") == ref
        more = await system.start_children("/", [child(events, "x"), child(events, "y")])
        assert [r.path for r in more] == ["/x", "/y"]
        assert [c.path for c in system.snapshot().children] == ["/static", "/dyn", "/x", "/y"]
        with pytest.raises(ValueError, match="already has a child"):
            await system.start_child("/", child(events, "dyn"))
        with pytest.raises(ActorNotFound):
            await system.start_child("/nowhere", child(events, "z"))

        # A dynamic child is supervised like a static one.
        await crash(system, "/dyn")
        assert await ref.ask(Note("back")) == "back"
        assert system.snapshot("/dyn").restarts == 1

        # stop_child drains the child's mailbox, runs on_stop, and forgets it.
        for i in range(3):
            await ref.tell(Note(i))
        await system.stop_child("/", "dyn")
        assert [e[3] for e in events.of("note") if e[0] == "/dyn"] == ["back", 0, 1, 2]
        assert stops(events) == ["/dyn"]
        assert not ref.alive
        with pytest.raises(ActorNotFound):
            system.lookup("/dyn")
        with pytest.raises(ActorNotFound):
            await system.stop_child("/", "dyn")
        assert [c.path for c in system.snapshot().children] == ["/static", "/x", "/y"]


class Spawner(Actor[Any]):
    """An ordinary actor that spawns one child per incarnation."""

    def __init__(self, events: Any) -> None:
        self.events = events

    async def on_start(self) -> None:
        ref = await self.context.spawn(child(self.events, "kid"))
        self.events.add("spawned", ref)

    async def receive(self, message: Any) -> Any:
        raise RuntimeError("spawner crash")


async def test_children_spawned_by_an_ordinary_actor_end_with_its_incarnation(events):
    root = supervisor("root", [ChildSpec(name="p", factory=lambda: Spawner(events))])
    async with open_system(root, with_asyncio=False) as system:
        first = events.of("spawned")[0][0]
        assert first.path == "/p/kid"
        await crash(system, "/p")
        await events.wait_count("spawned", 2)
        second = events.of("spawned")[1][0]
        assert not first.alive and second.alive and first != second
        assert stops(events) == ["/p/kid"]  # stopped with the crashed incarnation
        assert paths(system.snapshot()) == {"/", "/p", "/p/kid"}


# -- shutdown ------------------------------------------------------------------------------------


async def test_shutdown_stops_children_in_reverse_start_order(events):
    mid = ChildSpec(
        name="mid",
        factory=lambda: Child(events),
        children=(child(events, "x"), child(events, "y")),
    )
    root = supervisor("root", [child(events, "a"), mid, child(events, "c")])
    async with open_system(root, with_asyncio=False):
        assert starts(events) == ["/a", "/mid", "/mid/x", "/mid/y", "/c"]
    assert stops(events) == ["/c", "/mid/y", "/mid/x", "/mid", "/a"]


async def test_shutdown_cancels_a_child_that_hangs_after_its_shutdown_timeout(
    events, autojump_clock
):
    root = supervisor(
        "root",
        [
            child(events, "slow_stop", hang_on_stop=True, shutdown_timeout=2.0),
            child(events, "busy", shutdown_timeout=3.0),
            child(events, "plain"),
        ],
    )
    with trio.fail_after(100):
        async with open_system(root, with_asyncio=False) as system:
            await system.lookup("/busy").tell(Hang())
            await trio.testing.wait_all_tasks_blocked()
            t0 = trio.current_time()
    cancelled = {e[0]: e[2] - t0 for e in events.of("cancelled")}
    # /plain stops at once, /busy is cancelled after 3 s, then /slow_stop after 2 more.
    assert cancelled == pytest.approx({"/busy": 3.0, "/slow_stop": 5.0})
    assert stops(events) == ["/plain"]  # /slow_stop's on_stop never got past its hang
    assert [(e[0], e[3]) for e in events.of("failure")] == [("/busy", "ActorStopped")]


async def test_graceful_shutdown_drains_queued_messages(events):
    root = supervisor("root", [child(events, "a"), child(events, "b")])
    async with open_system(root, with_asyncio=False) as system:
        for i in range(5):
            await system.lookup("/a").tell(Note(i))
            await system.lookup("/b").tell(Note(i))
        assert system.snapshot("/a").mailbox_depth == 5  # nothing handled yet
    notes = [(e[0], e[3]) for e in events.of("note")]
    assert [v for p, v in notes if p == "/a"] == [0, 1, 2, 3, 4]
    assert [v for p, v in notes if p == "/b"] == [0, 1, 2, 3, 4]
    # Each actor handled its mail before its on_stop ran.
    order = [(e[0], e[1]) for e in events.entries if e[0] in {"note", "stop"}]
    for path in ("/a", "/b"):
        mine = [kind for kind, p in order if p == path]
        assert mine == ["note"] * 5 + ["stop"]


# -- watch ----------------------------------------------------------------------------------------


async def test_watch_delivers_terminated_when_the_watched_actor_stops_for_good(events):
    root = supervisor(
        "root",
        [
            child(events, "watcher"),
            child(events, "perm"),
            child(events, "trans", restart=Restart.TRANSIENT),
            child(events, "dyn", restart=Restart.TEMPORARY),
            child(events, "unwatched", restart=Restart.TRANSIENT),
        ],
        backoff=NO_BACKOFF,
    )
    async with open_system(root, with_asyncio=False) as system:
        watcher = system.lookup("/watcher")
        for name in ("perm", "trans", "dyn", "unwatched"):
            await watcher.ask(Watch(system.lookup("/" + name)))
        await watcher.ask(Unwatch(system.lookup("/unwatched")))

        await crash(system, "/perm")  # restarted: not terminated
        await crash(system, "/trans")  # restarted: not terminated
        await system.lookup("/unwatched").ask(Stop())
        await trio.testing.wait_all_tasks_blocked()
        assert events.of("terminated") == []

        await system.lookup("/trans").ask(Stop())
        await events.wait_count("terminated", 1)
        await system.stop_child("/", "dyn")
        await events.wait_count("terminated", 2)
        got = [e[3] for e in events.of("terminated")]
        assert got == [
            Terminated(path="/trans", reason="normal"),
            Terminated(path="/dyn", reason="stopped"),
        ]
        # Watching an actor that is already gone delivers at once.
        await watcher.ask(Watch(system.lookup("/perm")))
        dead = system.lookup("/perm")
        await system.stop_child("/", "perm")
        await events.wait_count("terminated", 3)
        await watcher.ask(Watch(dead))
        await events.wait_count("terminated", 4)
        assert events.of("terminated")[-1][3] == Terminated(path="/perm", reason="already stopped")


# -- timers ---------------------------------------------------------------------------------------


async def test_send_every_ticks_at_a_fixed_rate(events, autojump_clock):
    root = supervisor("root", [child(events, "t", tick_every=1.5)])
    async with open_system(root, with_asyncio=False):
        t0 = trio.current_time()
        await events.wait_count("tick", 4)
    assert [e[2] - t0 for e in events.of("tick")][:4] == pytest.approx([1.5, 3.0, 4.5, 6.0])


async def test_timers_die_with_their_incarnation(events, autojump_clock):
    root = supervisor("root", [child(events, "t", tick_every=1.0)], backoff=NO_BACKOFF)
    async with open_system(root, with_asyncio=False) as system:
        await events.wait_count("tick", 2)
        await trio.sleep(0.5)  # between two ticks: nothing queued when it crashes
        await crash(system, "/t")
        crashed_at = trio.current_time()
        await events.wait_count("tick", 7)
        ticks = events.of("tick")
        # The new incarnation gets only its own timer's ticks, on its own schedule.
        assert [e[3] for e in ticks] == [1, 1, 2, 2, 2, 2, 2]
        assert [e[2] - crashed_at for e in ticks[2:]] == pytest.approx([1, 2, 3, 4, 5])
        # Stopping the actor for good cancels its timer too.
        await system.stop_child("/", "t")
        await trio.sleep(10)
        assert len(events.of("tick")) == 7


class OneShot(Actor[Any]):
    def __init__(self, events: Any) -> None:
        self.events = events

    async def on_start(self) -> None:
        self.context.send_after(2.0, "kept")
        cancelled = self.context.send_after(1.0, "cancelled")
        cancelled.cancel()
        assert cancelled.cancelled

    async def receive(self, message: Any) -> Any:
        self.events.add("got", message, trio.current_time())


async def test_send_after_fires_once_and_cancel_prevents_it(events, autojump_clock):
    root = supervisor("root", [ChildSpec(name="o", factory=lambda: OneShot(events))])
    async with open_system(root, with_asyncio=False):
        t0 = trio.current_time()
        await events.wait_count("got", 1)
        await trio.sleep(10)
    assert [(m, t - t0) for m, t in events.of("got")] == [("kept", pytest.approx(2.0))]


# -- snapshot -------------------------------------------------------------------------------------


async def test_snapshot_after_a_restart(events, autojump_clock):
    root = supervisor(
        "root",
        [child(events, "w", mailbox_capacity=7), child(events, "other")],
        strategy=Strategy.REST_FOR_ONE,
        backoff=NO_BACKOFF,
    )
    async with open_system(root, with_asyncio=False) as system:
        ref = system.lookup("/w")
        for i in range(3):
            await ref.ask(Note(i))
        await crash(system, "/w")
        await ref.ask(Note("after"))
        await trio.testing.wait_all_tasks_blocked()
        snap = system.snapshot()
        assert snap.path == "/"
        assert snap.actor_class == "Supervisor"
        assert snap.strategy == "rest_for_one"
        assert snap.state == "running"
        w, other = snap.children
        assert w.path == "/w"
        assert w.actor_class == "Child"
        assert w.state == "running"
        assert w.restarts == 1
        assert w.last_error == "RuntimeError('boom in /w')"
        assert w.last_error_at is not None and w.last_error_at.endswith("Z")
        assert w.processed == 4  # the poison message is not counted
        assert w.mailbox_depth == 0
        assert w.mailbox_capacity == 7
        assert w.strategy is None
        assert w.children == []
        assert other.restarts == 1 and other.last_error is None  # restarted as a sibling
        # Mailbox depth counts what is queued.
        await ref.tell(Hang())
        await trio.testing.wait_all_tasks_blocked()
        await ref.tell(Note("queued"))
        assert system.snapshot("/w").mailbox_depth == 1
        assert system.snapshot("/w").state == "running"


async def test_supervision_of_an_actor_with_static_children(events):
    # An ordinary actor with static children supervises them with its own strategy.
    parent = ChildSpec(
        name="p",
        factory=lambda: Child(events),
        supervision=Supervision(strategy=Strategy.ONE_FOR_ALL, backoff=NO_BACKOFF),
        children=(child(events, "x"), child(events, "y")),
    )
    async with open_system(supervisor("root", [parent]), with_asyncio=False) as system:
        await crash(system, "/p/y")
        await trio.testing.wait_all_tasks_blocked()
        assert starts(events) == ["/p", "/p/x", "/p/y", "/p/x", "/p/y"]
        assert system.snapshot("/p").strategy == "one_for_all"
        assert system.snapshot("/p/x").restarts == 1
