"""The actor system: the root of the tree, the registry, dead letters and introspection."""

from __future__ import annotations

import itertools
import logging
import random
import traceback
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec
import trio

from ._actor import DEFAULT_ASK_TIMEOUT, ActorRef, Supervisor
from ._asyncio_bridge import AsyncioBridge, open_asyncio_bridge
from ._cell import Cell, StartChildren, State, StopChild
from ._errors import ActorNotFound, SystemFailure, lone_error
from ._faults import FaultInjector
from ._mailbox import SYSTEM, AskDeadlines, Latch, Reply
from ._spec import ChildSpec

log = logging.getLogger("supervision")

M = TypeVar("M")


def _rfc3339(epoch: float) -> str:
    return (
        datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


class ActorSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """One actor as the console shows it, with its children."""

    path: str
    actor_class: str
    state: str
    restarts: int
    mailbox_depth: int
    mailbox_capacity: int
    processed: int
    expired: int = 0
    """Asks dropped unhandled because their asker had given up (timed out) before their turn."""
    last_error: str | None
    last_error_at: str | None
    strategy: str | None
    children: list[ActorSnapshot]


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """A message whose handler crashed its actor."""

    seq: int
    path: str
    message_type: str
    message: str
    error: str
    traceback: str
    at: str


class DeadLetters:
    """The most recent poison messages, newest last. Formatting waits until someone reads them."""

    def __init__(self, keep: int = 1000) -> None:
        self._entries: deque[tuple[int, str, Any, BaseException, float]] = deque(maxlen=keep)
        self._seq = itertools.count(1)
        self.listeners: list[Callable[[str, Any, BaseException], None]] = []
        self.total = 0

    def record(self, path: str, message: Any, error: BaseException) -> None:
        import time

        self.total += 1
        self._entries.append((next(self._seq), path, message, error, time.time()))
        for listener in self.listeners:
            listener(path, message, error)

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> list[DeadLetter]:
        return [
            DeadLetter(
                seq=seq,
                path=path,
                message_type=type(message).__name__,
                message=repr(message)[:500],
                error=repr(error),
                traceback="".join(traceback.format_exception(error)),
                at=_rfc3339(at),
            )
            for seq, path, message, error, at in self._entries
        ]


class ActorSystem:
    """One tree of actors on the current Trio run. Build it with ``open_system``."""

    def __init__(
        self,
        nursery: trio.Nursery,
        bridge: AsyncioBridge | None,
        *,
        batch_size: int,
        seed: int | None,
        ask_timeout: float | None = DEFAULT_ASK_TIMEOUT,
    ) -> None:
        self.nursery = nursery
        self._bridge = bridge
        self.batch_size = batch_size
        self.ask_timeout = ask_timeout
        self.ask_deadlines = AskDeadlines()
        self.rng = random.Random(seed)
        self.registry: dict[str, Cell] = {}
        self.faults = FaultInjector()
        self.dead_letters = DeadLetters()
        self.failure: BaseException | None = None
        self.stopped = trio.Event()
        self._root: Cell | None = None

    @property
    def asyncio(self) -> AsyncioBridge:
        """The bridge to asyncio libraries (present unless the system was opened without it)."""
        if self._bridge is None:
            raise RuntimeError("this actor system was opened without the asyncio bridge")
        return self._bridge

    @property
    def root(self) -> ActorRef[Any]:
        assert self._root is not None
        return self._root.ref

    async def start_root(self, spec: ChildSpec[Any]) -> None:
        root = Cell(self, None, spec)
        self.registry[root.path] = root
        self._root = root
        latch = Latch(1)
        root.start(latch)
        await latch.wait()

    def root_exited(self, error: BaseException | None, killed: bool) -> None:
        assert self._root is not None
        if error is not None:
            log.critical("the root of the actor tree failed: %r; stopping", error)
            self.failure = error
            self.nursery.cancel_scope.cancel()
        self._root.finalize("crashed" if error else "normal")
        self.stopped.set()

    def lookup(self, path: str) -> ActorRef[Any]:
        """The live actor at ``path`` (``/infra/journal``); raises ``ActorNotFound``."""
        cell = self.registry.get(path if path == "/" else path.rstrip("/"))
        if cell is None:
            raise ActorNotFound(path)
        return cell.ref

    def _cell(self, path: str) -> Cell:
        cell = self.registry.get(path)
        if cell is None:
            raise ActorNotFound(path)
        return cell

    async def start_child(self, parent: str, spec: ChildSpec[M]) -> ActorRef[M]:
        """Start ``spec`` as a new (dynamic) child of the actor at ``parent``.

        Returns once the child's ``on_start`` has run. Raises ``ValueError`` if the name is
        taken, ``ActorNotFound`` / ``ActorStopped`` if the parent is gone.
        """
        refs = await self.start_children(parent, [spec])
        return refs[0]

    async def start_children(self, parent: str, specs: list[ChildSpec[Any]]) -> list[ActorRef[Any]]:
        """Start many dynamic children of ``parent`` at once (all-or-nothing name check)."""
        reply = Reply()
        self._cell(parent).mailbox.put_unbounded((StartChildren(specs, reply), SYSTEM))
        refs: list[ActorRef[Any]] = await reply.wait()
        return refs

    async def stop_child(self, parent: str, name: str) -> None:
        """Stop a child for good (it drains its mailbox first) and forget it."""
        reply = Reply()
        self._cell(parent).mailbox.put_unbounded((StopChild(name, reply), SYSTEM))
        await reply.wait()

    async def shutdown(self) -> None:
        """Stop the whole tree gracefully: children before parents, last started first."""
        if self._root is not None:
            await self._root.stop(drain=True)
            if not self.stopped.is_set():
                self._root.finalize("shutdown")
                self.stopped.set()

    def snapshot(self, path: str = "/") -> ActorSnapshot:
        """The subtree at ``path``: state, restarts, mailbox, counters, last error."""
        return self._snapshot(self._cell(path))

    def _snapshot(self, cell: Cell) -> ActorSnapshot:
        actor = cell.actor
        children = cell._children.order if cell._children is not None else []
        has_children = bool(children) or bool(cell.spec.children) or cell.spec.factory is Supervisor
        return ActorSnapshot(
            path=cell.path,
            actor_class=type(actor).__name__ if actor is not None else _factory_name(cell),
            state=str(cell.state),
            restarts=cell.restarts,
            mailbox_depth=len(cell.mailbox),
            mailbox_capacity=cell.mailbox.capacity,
            processed=cell.processed,
            expired=cell.expired,
            last_error=cell.last_error,
            last_error_at=_rfc3339(cell.last_error_at) if cell.last_error_at else None,
            strategy=str(cell.spec.supervision.strategy) if has_children else None,
            children=[self._snapshot(child) for child in children],
        )


def _factory_name(cell: Cell) -> str:
    factory = cell.spec.factory
    return getattr(factory, "__name__", type(factory).__name__)


@asynccontextmanager
async def open_system(
    root: ChildSpec[Any],
    *,
    batch_size: int = 64,
    seed: int | None = None,
    with_asyncio: bool = True,
    bridge: AsyncioBridge | None = None,
    ask_timeout: float | None = DEFAULT_ASK_TIMEOUT,
) -> AsyncIterator[ActorSystem]:
    """Run an actor system for the duration of the block.

    The block is entered once the whole static tree has started (each child's ``on_start``
    done, in order, as OTP starts a supervision tree). Leaving the block normally shuts the
    tree down gracefully (each actor drains its mailbox; children stop before parents, in
    reverse start order). Pass ``bridge`` to share an asyncio bridge opened outside (resources
    such as the database are opened before the tree and closed after it).
    If the root itself fails (a supervisor's restart intensity escalated to the top) the block
    is cancelled and ``SystemFailure`` is raised. ``batch_size`` is how many messages an actor
    handles before it yields to other tasks.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    failure: BaseException | None = None
    async with AsyncExitStack() as stack:
        if bridge is None and with_asyncio:
            bridge = await stack.enter_async_context(open_asyncio_bridge())
        try:
            async with trio.open_nursery() as nursery:
                system = ActorSystem(
                    nursery, bridge, batch_size=batch_size, seed=seed, ask_timeout=ask_timeout
                )
                nursery.start_soon(system.ask_deadlines.run, name="ask deadlines")
                try:
                    await system.start_root(root)
                    yield system
                    await system.shutdown()
                finally:
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            error = lone_error(group)
            if error is None:
                raise
            raise error from None
        failure = system.failure
    if failure is not None:
        raise SystemFailure(failure)


__all__ = ["ActorSnapshot", "ActorSystem", "DeadLetter", "DeadLetters", "State", "open_system"]
