"""What actor code sees: the ``Actor`` base class, ``ActorRef`` and the ``ActorContext``."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic, NoReturn, TypeVar, cast

import msgspec
import trio

from ._errors import ActorNotFound, ActorStopped, AskTimeout
from ._mailbox import Reply, trim
from ._spec import Backoff, ChildSpec, Intensity, Restart, Strategy, Supervision

if TYPE_CHECKING:
    from ._cell import Cell
    from ._system import ActorSystem

M = TypeVar("M")
N = TypeVar("N")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)

DEFAULT_ASK_TIMEOUT = 5.0
"""Seconds ``ask`` waits for a reply unless the system or the call says otherwise
(gen_server:call's default)."""


class Default(enum.Enum):
    """Marks "use the actor system's configured value"."""

    DEFAULT = "default"


DEFAULT = Default.DEFAULT


class Terminated(msgspec.Struct, frozen=True, kw_only=True):
    """Delivered to a watcher when the watched actor has stopped for good."""

    path: str
    reason: str


class Request(msgspec.Struct, Generic[R_co], frozen=True, kw_only=True):
    """A message that is answered, and ``R_co`` is the type of its answer.

    The request declares its reply (Akka Typed's ``replyTo``): ``class GetAlbum(Request[Album])``
    makes ``await ref.ask(GetAlbum(...))`` an ``Album`` for mypy, so every caller's use of a
    reply is checked. It adds no fields: a request encodes as the Struct it is.
    """


class _NotStarted:
    """Stands in for the cell of a declared ref until its actor starts: using it in any way
    raises ``ActorNotFound`` (so the hot paths need no check of their own)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __getattr__(self, attribute: str) -> NoReturn:
        raise ActorNotFound(f"<{self.name or 'actor'}: not started>")

    def __repr__(self) -> str:
        return f"{self.name or 'actor'} (not started)"


class ActorRef(Generic[M]):
    """The address of an actor. It stays valid across restarts: the mailbox belongs to it.

    ``M`` is the type of message the actor accepts, so that mypy refuses a wrong message.

    A ref can be declared before its actor starts (``ActorRef.declare()``, passed to the
    actor's ``ChildSpec(ref=...)``), so that whoever assembles a tree can hand every actor the
    refs of the others through its constructor. Until the actor is started, using it raises
    ``ActorNotFound``, as looking up a path that is not there does.
    """

    __slots__ = ("_cell",)

    def __init__(self, cell: Cell) -> None:
        self._cell = cell

    @classmethod
    def declare(cls, name: str = "") -> ActorRef[M]:
        """A ref to an actor not started yet; ``name`` only serves messages until then."""
        return cls(cast("Cell", _NotStarted(name)))

    @property
    def path(self) -> str:
        return self._cell.path

    @property
    def alive(self) -> bool:
        """False once the actor has stopped for good (or before it started)."""
        return (
            not isinstance(cast(object, self._cell), _NotStarted) and not self._cell.mailbox.closed
        )

    def __repr__(self) -> str:
        cell = self._cell
        where = repr(cell) if isinstance(cast(object, cell), _NotStarted) else cell.path
        return f"<ActorRef {where}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorRef) and other._cell is self._cell

    def __hash__(self) -> int:
        return id(self)

    async def tell(self, message: M) -> None:
        """Queue ``message``; waits while the mailbox is full (backpressure).

        Raises ``ActorStopped`` if the actor has stopped for good. It is a checkpoint only
        when it has to wait for space.
        """
        await self._cell.mailbox.put((message, None))

    def tell_nowait(self, message: M) -> None:
        """Queue ``message`` or raise ``MailboxFull`` at once."""
        self._cell.mailbox.put_nowait((message, None))

    def nudge(self, message: M) -> None:
        """Queue a wake-up note even when the mailbox is full.

        Only for notices a sender coalesces (at most one outstanding, e.g. "new events are
        waiting"), so the overflow is bounded by the number of such senders. Data goes
        through ``tell``. Raises ``ActorStopped`` once the actor has stopped for good.
        """
        cell = self._cell
        mailbox = cell.mailbox
        if mailbox.closed:
            raise ActorStopped(cell.path)
        mailbox.put_unbounded((message, None))

    async def ask(self, message: Request[R], *, timeout: float | Default | None = DEFAULT) -> R:
        """Send ``message`` and return what its handler returns: the ``R`` it declares.

        Only a ``Request`` is asked, so mypy checks what every caller does with the reply
        (``tell`` checks that the actor takes the message; for an ask that is the handler's
        ``match``, which answers anything else as a bug).

        Raises the handler's ``DomainError``; ``ActorCrashed`` if the handler crashed the
        actor; ``ActorStopped`` if the actor stopped before handling it; ``AskTimeout`` if no
        reply came within ``timeout`` seconds (waiting for mailbox space included; by default
        the system's ``ask_timeout``, 5 s unless configured; None waits forever). A request
        the actor had already taken when the asker gave up is finished and its reply dropped;
        one still queued is dropped unhandled when its turn comes (counted as ``expired``).
        """
        cell = self._cell
        if timeout is DEFAULT:
            timeout = cell.system.ask_timeout
        reply = Reply()
        mailbox = cell.mailbox
        answer: R
        if timeout is None:
            await mailbox.put((message, reply))
            answer = await reply.wait()
            return answer
        if len(mailbox.items) < mailbox.capacity:
            mailbox.put_nowait((message, reply))
            deadlines = cell.system.ask_deadlines.track(reply, timeout, cell.path)
            try:
                answer = await reply.wait()
                return answer
            finally:
                trim(deadlines)
        with trio.move_on_after(timeout):
            await mailbox.put((message, reply))
            answer = await reply.wait()
            return answer
        raise AskTimeout(cell.path, timeout)


class DeferredReply(Generic[R]):
    """The answer to an ask, given later (``gen_server:reply`` / Akka's ``sender``).

    A handler that cannot answer yet calls ``context.defer_reply()`` and keeps this; the
    runtime then sends nothing when the handler returns, and whoever holds it answers with
    ``set`` or ``fail`` (a ``DomainError``). The asker's timeout still applies. If the
    incarnation ends first, the asker gets ``ActorCrashed`` (or ``ActorStopped``).
    """

    __slots__ = ("_reply",)

    def __init__(self, reply: Reply) -> None:
        self._reply = reply

    def set(self, value: R) -> None:
        self._reply.set(value)

    def fail(self, error: BaseException) -> None:
        self._reply.fail(error)


class Timer:
    """A pending timer message; ``cancel`` stops it. Timers die with the actor incarnation."""

    __slots__ = ("_scope",)

    def __init__(self, scope: trio.CancelScope) -> None:
        self._scope = scope

    def cancel(self) -> None:
        self._scope.cancel()

    @property
    def cancelled(self) -> bool:
        return self._scope.cancel_called


class ActorContext(Generic[M]):
    """The runtime as one incarnation of an actor sees it."""

    __slots__ = ("_cell",)

    def __init__(self, cell: Cell) -> None:
        self._cell = cell

    @property
    def ref(self) -> ActorRef[M]:
        return self._cell.ref

    @property
    def path(self) -> str:
        return self._cell.path

    @property
    def system(self) -> ActorSystem:
        return self._cell.system

    def lookup(self, path: str) -> ActorRef[Any]:
        """The live actor at ``path``; raises ``ActorNotFound``."""
        return self._cell.system.lookup(path)

    async def spawn(self, spec: ChildSpec[N]) -> ActorRef[N]:
        """Start a child under this actor (path ``<mine>/<spec.name>``), supervised by it.

        Children of an ordinary actor are stopped when its incarnation ends; children of a
        supervisor stay registered with it and are restarted with it.
        """
        return await self._cell.children.start_child(spec)

    async def spawn_many(self, specs: list[ChildSpec[Any]]) -> list[ActorRef[Any]]:
        """Start several children at once; cheaper than one ``spawn`` each."""
        return await self._cell.children.start_children(specs)

    async def stop_child(self, name: str) -> None:
        """Stop a child for good, letting it drain its mailbox first."""
        await self._cell.children.stop_child(name)

    def defer_reply(self, request: Request[R]) -> DeferredReply[R]:
        """Take over the answer to ``request``, the ask being handled, to give it later.

        Raises ``RuntimeError`` when the current message is not an ask (or was deferred).
        """
        cell = self._cell
        reply = cell._reply
        if reply is None:
            raise RuntimeError(f"{cell.path}: no ask to defer")
        cell._reply = None
        cell._deferred = [kept for kept in cell._deferred if not kept.settled]
        cell._deferred.append(reply)
        return DeferredReply(reply)

    @property
    def asker_gone(self) -> bool:
        """True when the asker of the request being handled has given up (timed out or was
        cancelled), so that its answer would be dropped: a handler that made something only
        that answer can hand over (a secret shown once) undoes it instead."""
        reply = self._cell._reply
        return reply is not None and reply.settled

    def stop(self) -> None:
        """Stop myself once the queued messages are handled (a normal exit, not a crash)."""
        self._cell.request_stop()

    def send_after(self, delay: float, message: M) -> Timer:
        """Deliver ``message`` to myself once, ``delay`` seconds from now."""
        return self._cell.start_timer(delay, message, repeat=False)

    def send_every(self, interval: float, message: M) -> Timer:
        """Deliver ``message`` to myself every ``interval`` seconds (fixed rate, no drift)."""
        return self._cell.start_timer(interval, message, repeat=True)

    async def start_service(self, service: Callable[..., Awaitable[None]], *args: Any) -> Any:
        """Run ``service(*args, task_status=...)`` for as long as this incarnation lives.

        For work that is a long-running loop rather than a message handler: a server that
        accepts connections, a client that reads a socket. It follows Trio's ``nursery.start``
        protocol: this returns the value the service passes to ``task_status.started()``. The
        service is cancelled when the incarnation ends; if it raises, the actor crashes (and
        its supervisor restarts it, service and all).
        """
        return await self._cell.start_service(service, args)

    def watch(self, ref: ActorRef[Any], on_terminated: Callable[[Terminated], M]) -> None:
        """When ``ref`` stops for good, deliver ``on_terminated(Terminated(...))`` to me."""
        self._cell.watch(ref._cell, on_terminated)

    def unwatch(self, ref: ActorRef[Any]) -> None:
        ref._cell.watchers.pop(self._cell, None)


class Actor(Generic[M]):
    """Base class of every actor. Override ``receive``; optionally the lifecycle hooks.

    One instance lives for one incarnation: after a crash the supervisor builds a new instance
    through the child spec's factory, and ``on_start`` rebuilds state from durable storage.
    Handlers run one message at a time. A handler's return value is the reply to an ``ask``;
    raising a ``DomainError`` answers the asker and keeps the actor running; any other exception
    crashes it.
    """

    keeps_children: bool = False
    """Supervisors keep their children registered across their own restarts."""

    _context: ActorContext[M]

    @property
    def context(self) -> ActorContext[M]:
        return self._context

    async def on_start(self) -> None:
        """Called before the first message of each incarnation."""

    async def receive(self, message: M) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not handle {message!r}")

    async def on_stop(self) -> None:
        """Called after a requested stop, once the mailbox is drained (or abandoned)."""

    async def on_failure(self, error: BaseException) -> None:
        """Called after the incarnation crashed, before the supervisor restarts it."""


class Supervisor(Actor[NoReturn]):
    """An actor whose only work is supervising its children."""

    keeps_children = True

    async def receive(self, message: NoReturn) -> NoReturn:
        raise TypeError(f"supervisor {self.context.path} takes no messages, got {message!r}")


def supervisor(
    name: str,
    children: list[ChildSpec[Any]] | tuple[ChildSpec[Any], ...] = (),
    *,
    strategy: Strategy = Strategy.ONE_FOR_ONE,
    intensity: Intensity | None = None,
    backoff: Backoff | None = None,
    restart: Restart = Restart.PERMANENT,
    shutdown_timeout: float = 30.0,
    ref: ActorRef[Any] | None = None,
) -> ChildSpec[Any]:
    """A child spec for a pure supervisor with the given children and policy."""
    return ChildSpec(
        name=name,
        factory=Supervisor,
        restart=restart,
        shutdown_timeout=shutdown_timeout,
        supervision=Supervision(
            strategy=strategy,
            intensity=intensity if intensity is not None else Intensity(),
            backoff=backoff if backoff is not None else Backoff(),
        ),
        children=tuple(children),
        ref=ref,
    )
