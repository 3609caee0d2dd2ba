"""Typed addresses: refs declared before their actors start, requests that declare their
reply type, the dynamic children of a supervisor by name, and an asker that gave up."""

from __future__ import annotations

import textwrap
from pathlib import Path

import msgspec
import pytest
import trio
import trio.testing
from mypy import api as mypy_api

from supervision import (
    Actor,
    ActorNotFound,
    ActorRef,
    AskTimeout,
    ChildDirectory,
    ChildSpec,
    Request,
    open_system,
    supervisor,
)


class GetName(Request[str], frozen=True, kw_only=True):
    pass


class Greet(Request[str], frozen=True, kw_only=True):
    greeting: str


class Crash(Request[None], frozen=True):
    pass


class Namer(Actor[GetName | Crash]):
    def __init__(self, name: str) -> None:
        self._name = name

    async def receive(self, message: GetName | Crash) -> str | None:
        match message:
            case GetName():
                return self._name
            case Crash():
                raise RuntimeError("asked to crash")


class Greeter(Actor[Greet]):
    """Knows the namer only by the ref it was given."""

    def __init__(self, namer: ActorRef[GetName | Crash]) -> None:
        self._namer = namer

    async def receive(self, message: Greet) -> str:
        return f"{message.greeting}, {await self._namer.ask(GetName())}"


async def test_a_declared_ref_reaches_its_actor_once_it_started_and_not_before() -> None:
    namer: ActorRef[GetName | Crash] = ActorRef.declare("namer")
    with pytest.raises(ActorNotFound):
        await namer.ask(GetName())
    assert not namer.alive
    tree = supervisor("root", [ChildSpec("namer", lambda: Namer("ada"), ref=namer)])
    async with open_system(tree, with_asyncio=False) as system:
        assert namer.alive
        assert namer.path == "/namer"
        assert system.lookup("/namer") is namer
        assert await namer.ask(GetName()) == "ada"


async def test_actors_started_earlier_reach_later_ones_through_the_refs_they_were_given() -> None:
    namer: ActorRef[GetName | Crash] = ActorRef.declare("namer")
    greeter: ActorRef[Greet] = ActorRef.declare("greeter")
    tree = supervisor(
        "root",
        [
            # The greeter starts first: the ref it holds is bound when the namer starts.
            ChildSpec("greeter", lambda: Greeter(namer), ref=greeter),
            ChildSpec("namer", lambda: Namer("grace"), ref=namer),
        ],
    )
    async with open_system(tree, with_asyncio=False):
        assert await greeter.ask(Greet(greeting="hello")) == "hello, grace"


async def test_a_declared_ref_outlives_a_restart_of_its_actor() -> None:
    namer: ActorRef[GetName | Crash] = ActorRef.declare("namer")
    tree = supervisor("root", [ChildSpec("namer", lambda: Namer("ada"), ref=namer)])
    async with open_system(tree, with_asyncio=False) as system:
        with pytest.raises(Exception, match="crash"):
            await namer.ask(Crash())
        assert await namer.ask(GetName()) == "ada"
        assert system.snapshot("/namer").restarts == 1


def test_a_request_encodes_and_decodes_as_the_struct_it_is() -> None:
    encoded = msgspec.json.encode(Greet(greeting="hi"))
    assert encoded == b'{"greeting":"hi"}'
    assert msgspec.json.decode(encoded, type=Greet) == Greet(greeting="hi")


async def test_a_child_directory_starts_finds_and_stops_children_by_name() -> None:
    frames: ActorRef[object] = ActorRef.declare("frames")
    tree = supervisor("root", [supervisor("frames", [], ref=frames)])
    async with open_system(tree, with_asyncio=False):
        children = ChildDirectory[GetName | Crash](frames)
        assert children.find("a") is None
        with pytest.raises(ActorNotFound):
            children.get("a")
        started = await children.start(
            [ChildSpec("a", lambda: Namer("first")), ChildSpec("b", lambda: Namer("second"))]
        )
        assert [ref.path for ref in started] == ["/frames/a", "/frames/b"]
        assert await children.get("b").ask(GetName()) == "second"
        await children.stop("a")
        assert children.find("a") is None
        assert children.find("b") is started[1]


class Slow(Request[str], frozen=True):
    pass


class Patient(Actor[Slow]):
    """Answers after ``gate``, noting whether the asker still waited."""

    def __init__(self, gate: trio.Event, seen: list[bool]) -> None:
        self._gate = gate
        self._seen = seen

    async def receive(self, message: Slow) -> str:
        await self._gate.wait()
        self._seen.append(self.context.asker_gone)
        return "done"


async def test_a_handler_can_tell_that_its_asker_gave_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gate = trio.Event()
    seen: list[bool] = []
    patient: ActorRef[Slow] = ActorRef.declare()
    tree = supervisor("root", [ChildSpec("patient", lambda: Patient(gate, seen), ref=patient)])
    async with open_system(tree, with_asyncio=False):
        with pytest.raises(AskTimeout):
            await patient.ask(Slow(), timeout=1.0)
        gate.set()
        assert await patient.ask(Slow()) == "done"  # handled after the first one
    assert seen == [True, False]


def test_mypy_checks_what_a_caller_does_with_a_reply(tmp_path: Path) -> None:
    caller = tmp_path / "caller.py"
    caller.write_text(
        textwrap.dedent(
            """
            from supervision import ActorRef, Request

            class GetName(Request[str], frozen=True):
                pass

            async def use(ref: ActorRef[GetName]) -> None:
                name = await ref.ask(GetName())
                reveal_type(name)
                count: int = await ref.ask(GetName())
            """
        )
    )
    out, _, status = mypy_api.run(
        [
            "--strict",
            "--no-incremental",
            "--python-version",
            "3.11",
            "--follow-imports",
            "silent",
            str(caller),
        ]
    )
    assert status == 1, out
    assert 'Revealed type is "str"' in out
    assert 'incompatible type "GetName"; expected "Request[int]"' in out
