"""Messaging semantics of the runtime: tell, ask, errors, mailboxes, restarts, dead letters."""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
import trio
import trio.testing

import supervision
from supervision import (
    Actor,
    ActorCrashed,
    ActorNotFound,
    ActorStopped,
    AskTimeout,
    ChildSpec,
    DomainError,
    MailboxFull,
    Restart,
    open_system,
    supervisor,
)


class NotAllowed(DomainError):
    pass


@dataclass(frozen=True)
class Put:
    value: Any


@dataclass(frozen=True)
class Get:
    pass


@dataclass(frozen=True)
class Refuse:
    pass


@dataclass(frozen=True)
class Boom:
    tag: str = "boom"


@dataclass(frozen=True)
class Hold:
    """Handler waits on ``gate`` before it returns (or crashes when ``crash``)."""

    gate: trio.Event = field(compare=False)
    crash: bool = False


@dataclass(frozen=True)
class Stop:
    pass


class Worker(Actor[Any]):
    """Keeps a list of what it was given; logs every lifecycle step with its instance id."""

    instances = 0

    def __init__(self, events: Any) -> None:
        Worker.instances += 1
        self.instance = Worker.instances
        self.events = events
        self.items: list[Any] = []

    async def on_start(self) -> None:
        self.events.add("start", self.instance)

    async def receive(self, message: Any) -> Any:
        match message:
            case Put(value=value):
                self.items.append(value)
                self.events.add("put", self.instance, value)
                return len(self.items)
            case Get():
                return (self.instance, list(self.items))
            case Refuse():
                raise NotAllowed("refused")
            case Boom(tag=tag):
                raise RuntimeError(tag)
            case Hold(gate=gate, crash=crash):
                self.events.add("holding", self.instance)
                await gate.wait()
                if crash:
                    raise RuntimeError("crash after hold")
                return "held"
            case Stop():
                self.context.stop()
                return "stopping"
        raise TypeError(message)

    async def on_stop(self) -> None:
        self.events.add("stop", self.instance)


def tree(events: Any, **worker: Any) -> ChildSpec[Any]:
    spec: ChildSpec[Any] = ChildSpec(name="w", factory=lambda: Worker(events), **worker)
    return supervisor("root", [spec])


async def test_tell_delivers_and_ask_returns_the_handler_result(events):
    async with open_system(tree(events), with_asyncio=False) as system:
        ref = system.lookup("/w")
        await ref.tell(Put("a"))
        ref.tell_nowait(Put("b"))
        assert await ref.ask(Put("c")) == 3
        _, items = await ref.ask(Get())
        assert items == ["a", "b", "c"]
        assert system.snapshot("/w").processed == 4


async def test_ask_times_out_and_the_late_reply_is_dropped(events, autojump_clock):
    gate = trio.Event()
    async with open_system(tree(events), with_asyncio=False) as system:
        ref = system.lookup("/w")
        start = trio.current_time()
        with pytest.raises(AskTimeout) as info:
            await ref.ask(Hold(gate), timeout=2.5)
        assert trio.current_time() - start == pytest.approx(2.5)
        assert info.value.path == "/w"
        gate.set()
        # The actor finishes the held request (its reply is dropped) and goes on normally.
        assert await ref.ask(Put("after"), timeout=1) == 1
        assert system.snapshot("/w").restarts == 0


async def test_asks_given_up_while_queued_are_dropped_unhandled(events, autojump_clock):
    gate = trio.Event()
    async with open_system(tree(events), with_asyncio=False) as system:
        ref = system.lookup("/w")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(functools.partial(ref.ask, Hold(gate), timeout=None))
            await events.wait_count("holding", 1)
            # Queued behind the held request, these askers give up before their turn.
            for value in ("late", "later"):
                with pytest.raises(AskTimeout):
                    await ref.ask(Put(value), timeout=1)
            ref.tell_nowait(Put("told"))  # a tell has no asker to give up: it is handled
            gate.set()
        assert await ref.ask(Put("answered"), timeout=1) == 2
        _, items = await ref.ask(Get())
        assert items == ["told", "answered"]
        snapshot = system.snapshot("/w")
        assert snapshot.expired == 2 and snapshot.restarts == 0


async def test_domain_error_answers_the_asker_and_the_actor_keeps_its_state(events):
    async with open_system(tree(events), with_asyncio=False) as system:
        ref = system.lookup("/w")
        await ref.ask(Put("kept"))
        with pytest.raises(NotAllowed):
            await ref.ask(Refuse())
        await ref.tell(Refuse())  # told, not asked: logged, nothing else
        instance, items = await ref.ask(Get())
        assert instance == events.of("start")[0][0]
        assert items == ["kept"]
        snap = system.snapshot("/w")
        assert snap.restarts == 0
        assert snap.last_error is None
        assert system.dead_letters.total == 0


async def test_crash_raises_actor_crashed_and_restarts_a_fresh_instance(events):
    async with open_system(tree(events), with_asyncio=False) as system:
        ref = system.lookup("/w")
        await ref.ask(Put("lost with the instance"))
        first = events.of("start")[0][0]
        with pytest.raises(ActorCrashed) as info:
            await ref.ask(Boom("kaput"))
        assert isinstance(info.value.cause, RuntimeError)
        assert info.value.path == "/w"
        # The next request is handled by a new instance built by the factory: state is gone.
        instance, items = await ref.ask(Get())
        assert instance != first
        assert items == []
        assert [e[0] for e in events.of("start")] == [first, instance]
        assert system.snapshot("/w").restarts == 1


async def test_tell_nowait_raises_mailbox_full_at_capacity(events):
    gate = trio.Event()
    async with open_system(tree(events, mailbox_capacity=2), with_asyncio=False) as system:
        ref = system.lookup("/w")
        ref.tell_nowait(Hold(gate))
        await events.wait_count("holding", 1)  # the actor is busy; the mailbox is empty
        ref.tell_nowait(Put(1))
        ref.tell_nowait(Put(2))
        with pytest.raises(MailboxFull) as info:
            ref.tell_nowait(Put(3))
        assert info.value.capacity == 2
        assert system.snapshot("/w").mailbox_depth == 2
        gate.set()
        _, items = await ref.ask(Get())
        assert items == [1, 2]


async def test_tell_waits_for_mailbox_space(events):
    gate = trio.Event()
    async with open_system(tree(events, mailbox_capacity=1), with_asyncio=False) as system:
        ref = system.lookup("/w")
        await ref.tell(Hold(gate))
        await events.wait_count("holding", 1)
        await ref.tell(Put(1))  # fills the mailbox
        sent = trio.Event()

        async def blocked_sender() -> None:
            await ref.tell(Put(2))
            sent.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(blocked_sender)
            await trio.testing.wait_all_tasks_blocked()
            assert not sent.is_set(), "tell returned although the mailbox was full"
            assert system.snapshot("/w").mailbox_depth == 1
            gate.set()
            await sent.wait()
        _, items = await ref.ask(Get())
        assert items == [1, 2]


async def test_messages_from_one_sender_keep_their_order(events):
    async with open_system(
        tree(events, mailbox_capacity=4), batch_size=3, with_asyncio=False
    ) as system:
        ref = system.lookup("/w")

        async def sender(name: str) -> None:
            for i in range(200):
                if i % 7 == 0:
                    await trio.lowlevel.checkpoint()
                await ref.tell(Put((name, i)))

        async with trio.open_nursery() as nursery:
            for name in "abc":
                nursery.start_soon(sender, name)
        _, items = await ref.ask(Get())
        assert len(items) == 600
        for name in "abc":
            assert [i for n, i in items if n == name] == list(range(200))
        # The senders really interleaved (else the order test would be trivial).
        switches = sum(1 for (a, _), (b, _) in itertools.pairwise(items) if a != b)
        assert switches > 2


async def test_ref_and_queued_messages_survive_a_restart(events):
    gate = trio.Event()
    async with open_system(tree(events), with_asyncio=False) as system:
        ref = system.lookup("/w")
        await ref.tell(Hold(gate, crash=True))
        await events.wait_count("holding", 1)
        for i in range(3):
            await ref.tell(Put(i))
        reply_to_queued_ask: list[Any] = []

        async def asker() -> None:
            reply_to_queued_ask.append(await ref.ask(Get()))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(asker)
            await trio.testing.wait_all_tasks_blocked()
            assert system.snapshot("/w").mailbox_depth == 4
            gate.set()
        first, second = (e[0] for e in events.of("start"))
        assert first != second
        # Every queued message was handled, in order, by the new instance.
        assert events.of("put") == [(second, 0), (second, 1), (second, 2)]
        assert reply_to_queued_ask == [(second, [0, 1, 2])]
        assert system.lookup("/w") == ref
        assert ref.alive
        assert system.snapshot("/w").restarts == 1


async def test_actor_stopped_for_good_refuses_messages(events):
    async with open_system(tree(events, restart=Restart.TRANSIENT), with_asyncio=False) as system:
        ref = system.lookup("/w")
        assert await ref.ask(Stop()) == "stopping"
        await events.wait_count("stop", 1)
        await trio.testing.wait_all_tasks_blocked()
        assert not ref.alive
        with pytest.raises(ActorStopped):
            await ref.tell(Put(1))
        with pytest.raises(ActorStopped):
            ref.tell_nowait(Put(1))
        with pytest.raises(ActorStopped):
            await ref.ask(Get())
        with pytest.raises(ActorNotFound):
            system.lookup("/w")


async def test_queued_asks_fail_with_actor_stopped_when_a_temporary_actor_crashes(events):
    gate = trio.Event()
    async with open_system(tree(events, restart=Restart.TEMPORARY), with_asyncio=False) as system:
        ref = system.lookup("/w")
        await ref.tell(Hold(gate, crash=True))
        await events.wait_count("holding", 1)
        outcomes: list[str] = []

        async def asker() -> None:
            try:
                await ref.ask(Get())
            except ActorStopped:
                outcomes.append("stopped")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(asker)
            await trio.testing.wait_all_tasks_blocked()
            gate.set()
        assert outcomes == ["stopped"]
        assert len(events.of("start")) == 1  # never restarted


async def test_poison_messages_go_to_dead_letters(events):
    async with open_system(tree(events), with_asyncio=False) as system:
        ref = system.lookup("/w")
        with pytest.raises(ActorCrashed):
            await ref.ask(Boom("first"))
        await ref.tell(Boom("second"))
        with pytest.raises(NotAllowed):
            await ref.ask(Refuse())  # a domain error is not a dead letter
        await ref.ask(Get())
        letters = system.dead_letters.entries()
        assert system.dead_letters.total == 2
        assert [(d.path, d.message_type) for d in letters] == [("/w", "Boom"), ("/w", "Boom")]
        assert "first" in letters[0].message and "second" in letters[1].message
        assert "RuntimeError('first')" in letters[0].error
        assert "RuntimeError: first" in letters[0].traceback
        assert letters[0].seq < letters[1].seq
        assert system.snapshot("/w").restarts == 2


# -- services ------------------------------------------------------------------------------


class Served(msgspec.Struct, frozen=True):
    pass


class ServiceOwner(supervision.Actor[Served]):
    """Starts a service that reports a value, then fails when the test says so."""

    def __init__(
        self, log: list[str], fail: trio.Event, cancelled: list[int], again: trio.Event
    ) -> None:
        self._log = log
        self._fail = fail
        self._cancelled = cancelled
        self._again = again

    async def on_start(self) -> None:
        value = await self.context.start_service(self._service, "port-1")
        self._log.append(f"started {value}")
        if len(self._log) == 2:
            self._again.set()

    async def _service(self, name: str, *, task_status: trio.TaskStatus[str]) -> None:
        first_incarnation = not self._log
        task_status.started(name)
        try:
            if first_incarnation:
                await self._fail.wait()
                raise RuntimeError("service broke")
            await trio.sleep_forever()
        except trio.Cancelled:
            self._cancelled.append(1)
            raise

    async def receive(self, message: Served) -> str:
        return "ok"


async def test_a_failing_service_crashes_its_actor_and_is_restarted_with_it() -> None:
    log: list[str] = []
    cancelled: list[int] = []
    fail, again = trio.Event(), trio.Event()
    spec = supervision.ChildSpec("owner", lambda: ServiceOwner(log, fail, cancelled, again))
    async with supervision.open_system(
        supervision.supervisor("root", [spec]), with_asyncio=False
    ) as system:
        assert log == ["started port-1"]
        fail.set()
        with trio.fail_after(5):
            await again.wait()
        snapshot = system.snapshot("/owner")
        assert snapshot.restarts == 1
        assert "service broke" in (snapshot.last_error or "")
        # The new incarnation started the service again; the failed one left nothing behind.
        assert log == ["started port-1", "started port-1"]
    # Shutting down cancels the running service of the current incarnation.
    assert cancelled == [1]


async def test_a_service_failing_before_it_started_fails_start_service() -> None:
    class Broken(supervision.Actor[Served]):
        async def on_start(self) -> None:
            await self.context.start_service(self._service)

        async def _service(self, *, task_status: trio.TaskStatus[None]) -> None:
            raise OSError("address in use")

    spec = supervision.ChildSpec("broken", Broken, restart=supervision.Restart.TEMPORARY)
    async with supervision.open_system(
        supervision.supervisor("root", [spec]), with_asyncio=False
    ) as system:
        # A temporary child that failed in on_start is gone, and the error is on record.
        with pytest.raises(supervision.ActorNotFound):
            system.lookup("/broken")


# -- deferred replies ------------------------------------------------------------------------


class Wait(supervision.Request[str], frozen=True):
    pass


class Release(msgspec.Struct, frozen=True):
    value: str


class Gate(supervision.Actor[Wait | Release]):
    """Answers every ``Wait`` only when a ``Release`` arrives (gen_server:reply style)."""

    def __init__(self) -> None:
        self._waiting: list[supervision.DeferredReply] = []

    async def receive(self, message: Wait | Release) -> object:
        match message:
            case Wait():
                self._waiting.append(self.context.defer_reply(message))
                return None
            case Release(value=value):
                waiting, self._waiting = self._waiting, []
                for deferred in waiting:
                    deferred.set(value)
                return len(waiting)


async def test_a_deferred_reply_answers_the_asker_later_while_other_messages_are_handled() -> None:
    spec = supervision.ChildSpec("gate", Gate)
    async with supervision.open_system(
        supervision.supervisor("root", [spec]), with_asyncio=False
    ) as system:
        gate = system.lookup("/gate")
        answers: list[str] = []

        async def wait_at_gate() -> None:
            answers.append(await gate.ask(Wait()))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait_at_gate)
            nursery.start_soon(wait_at_gate)
            await trio.testing.wait_all_tasks_blocked()
            assert answers == []  # both asks are parked, the gate keeps handling messages
            assert await gate.ask(Release(value="open")) == 2
        assert answers == ["open", "open"]


class Deferrer(supervision.Actor[Wait]):
    async def receive(self, message: Wait) -> None:
        self.context.defer_reply(message)


async def test_deferring_a_tell_is_a_bug_that_crashes_the_actor() -> None:
    spec = supervision.ChildSpec("deferrer", Deferrer, restart=supervision.Restart.TEMPORARY)
    async with supervision.open_system(
        supervision.supervisor("root", [spec]), with_asyncio=False
    ) as system:
        system.lookup("/deferrer").tell_nowait(Wait())
        await trio.testing.wait_all_tasks_blocked()
        (letter,) = system.dead_letters.entries()
        assert "no ask to defer" in letter.error
        with pytest.raises(supervision.ActorNotFound):
            system.lookup("/deferrer")


class Crash(msgspec.Struct, frozen=True):
    pass


class CrashingGate(Gate):
    async def receive(self, message: Wait | Release | Crash) -> object:  # type: ignore[override]
        if isinstance(message, Crash):
            raise RuntimeError("gate broke")
        return await super().receive(message)


async def test_deferred_replies_of_a_crashed_incarnation_fail_instead_of_hanging() -> None:
    spec = supervision.ChildSpec("gate", CrashingGate)
    async with supervision.open_system(
        supervision.supervisor("root", [spec]), with_asyncio=False
    ) as system:
        gate = system.lookup("/gate")
        outcome: list[BaseException] = []

        async def wait_at_gate() -> None:
            try:
                await gate.ask(Wait())
            except supervision.ActorCrashed as error:
                outcome.append(error)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait_at_gate)
            await trio.testing.wait_all_tasks_blocked()
            gate.tell_nowait(Crash())
        assert len(outcome) == 1 and "gate broke" in str(outcome[0])
