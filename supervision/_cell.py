"""The runtime side of one actor: its incarnations, receive loop, children and timers.

A ``Cell`` outlives the actor instances it runs. Its mailbox, its ``ActorRef`` and its path
stay the same across restarts; only the instance (built by the child spec's factory) is
replaced. Every incarnation is one task in the actor system's nursery; the supervision tree
is kept by the cells themselves: a parent stops its children before it finishes.
"""

from __future__ import annotations

import enum
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from ._actor import Actor, ActorContext, ActorRef, Terminated, Timer
from ._errors import (
    ActorCrashed,
    ActorNotFound,
    ActorStopped,
    DomainError,
    InjectedFault,
    RestartIntensityExceeded,
)
from ._faults import FaultAction
from ._mailbox import SYSTEM, Latch, Mailbox, Reply
from ._spec import ChildSpec, Restart, Strategy

if TYPE_CHECKING:
    from ._system import ActorSystem

log = logging.getLogger("supervision")


class State(enum.StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    STOPPING = "stopping"
    STOPPED = "stopped"


_KEEP_GOING, _DRAIN, _STOP_NOW = 0, 1, 2


class ChildExited:
    """Runtime message to a parent: one incarnation of a child has ended."""

    __slots__ = ("cell", "error", "expected", "incarnation", "killed")

    def __init__(
        self,
        cell: Cell,
        incarnation: int,
        error: BaseException | None,
        killed: bool,
        expected: bool,
    ) -> None:
        self.cell = cell
        self.incarnation = incarnation
        self.error = error
        self.killed = killed
        self.expected = expected


class StartChildren:
    __slots__ = ("reply", "specs")

    def __init__(self, specs: list[ChildSpec[Any]], reply: Reply) -> None:
        self.specs = specs
        self.reply = reply


class StopChild:
    __slots__ = ("name", "reply")

    def __init__(self, name: str, reply: Reply) -> None:
        self.name = name
        self.reply = reply


class _Status:
    """Passes ``started`` on, remembering whether it was called."""

    __slots__ = ("_inner", "started_called")

    def __init__(self, inner: trio.TaskStatus[Any]) -> None:
        self._inner = inner
        self.started_called = False

    def started(self, value: Any = None) -> None:
        self.started_called = True
        self._inner.started(value)


class ServiceFailed:
    """Runtime message to an actor: a service it started raised; the actor crashes with it."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


class RestartDue:
    """Runtime message to a parent: a backoff delay is over, start these children again."""

    __slots__ = ("cells", "token")

    def __init__(self, cells: list[Cell], token: object) -> None:
        self.cells = cells
        self.token = token


def _describe(error: BaseException | None, killed: bool) -> str:
    if error is not None:
        return f"crashed: {error!r}"
    return "killed" if killed else "normal"


class Cell:
    __slots__ = (
        "_alive",
        "_children",
        "_deferred",
        "_exit_event",
        "_expected",
        "_hooks",
        "_pending_restart",
        "_reply",
        "_scope",
        "_stop",
        "_timers",
        "actor",
        "consecutive_restarts",
        "expired",
        "incarnation",
        "last_error",
        "last_error_at",
        "last_restart_at",
        "mailbox",
        "parent",
        "path",
        "processed",
        "ref",
        "restarts",
        "spec",
        "state",
        "system",
        "watchers",
    )

    def __init__(self, system: ActorSystem, parent: Cell | None, spec: ChildSpec[Any]) -> None:
        self.system = system
        self.parent = parent
        self.spec = spec
        if parent is None:
            self.path = "/"
        elif parent.path == "/":
            self.path = "/" + spec.name
        else:
            self.path = f"{parent.path}/{spec.name}"
        self.mailbox = Mailbox(self.path, spec.mailbox_capacity)
        self.ref: ActorRef[Any] = spec.ref if spec.ref is not None else ActorRef(self)
        self.ref._cell = self
        self.state = State.STARTING
        self.incarnation = 0
        self.restarts = 0
        self.processed = 0
        self.expired = 0
        self.consecutive_restarts = 0
        self.last_restart_at = -math.inf
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.watchers: dict[Cell, Callable[[Terminated], Any]] = {}
        self.actor: Actor[Any] | None = None
        self._children: Children | None = None
        self._scope: trio.CancelScope | None = None
        self._hooks: trio.CancelScope | None = None
        self._alive = False
        self._exit_event: trio.Event | None = None
        self._stop = _KEEP_GOING
        self._expected = False
        self._timers: set[trio.CancelScope] = set()
        self._pending_restart: object | None = None
        self._reply: Reply | None = None
        self._deferred: list[Reply] = []
        """Replies this incarnation took over with ``defer_reply`` and may not have given."""
        """The reply slot of the ask being handled, until the handler defers it."""

    @property
    def children(self) -> Children:
        if self._children is None:
            self._children = Children(self)
        return self._children

    @property
    def running(self) -> bool:
        """An incarnation is alive (starting, running or stopping)."""
        return self._alive

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, started: Latch) -> None:
        """Start a new incarnation; ``started`` counts down once it runs (or failed to start).

        The mailbox, with what is queued in it, carries over from the previous incarnation.
        """
        self.incarnation += 1
        self._stop = _KEEP_GOING
        self._expected = False
        self._pending_restart = None
        self._scope = trio.CancelScope()
        self._alive = True
        self._exit_event = None
        self.state = State.STARTING
        try:
            actor = self.spec.factory()
        except Exception as error:
            self._record_error(error)
            self._spawn(started, None, error)
            return
        actor._context = ActorContext(self)
        self.actor = actor
        if (
            type(actor).on_start is Actor.on_start
            and not self.spec.children
            and not (self._children and self._children.order)
        ):
            # Nothing to do until a message arrives: the actor stays dormant, without a task,
            # and its mailbox spawns one on the first message (Erlang and Akka schedule idle
            # actors the same way). An idle actor costs a few objects, not a task.
            self.state = State.RUNNING
            started.count_down()
            if self.mailbox.items or self._stop:
                self._spawn(None, actor, None)
            else:
                self.mailbox.dormant = self._awaken
        else:
            self._spawn(started, actor, None)

    def _spawn(
        self, started: Latch | None, actor: Actor[Any] | None, error: Exception | None
    ) -> None:
        assert self._scope is not None
        self.system.nursery.start_soon(
            self._run, self._scope, started, actor, error, name=self.path
        )

    def _awaken(self) -> None:
        self.mailbox.dormant = None
        self._spawn(None, self.actor, None)

    def request_stop(self) -> None:
        """Finish the current message and the queued ones, then stop (used by ``context.stop``)."""
        self._stop = _DRAIN
        self.mailbox.wake_receiver()

    async def stop(self, drain: bool) -> None:
        """Stop the running incarnation and wait for it.

        With ``drain`` the actor first handles what is queued; without it, it stops after the
        current message and the queue is kept for a later incarnation. Past the spec's shutdown
        timeout the incarnation is cancelled. A pending (backed-off) restart is called off.
        """
        self._pending_restart = None
        if not self._alive:
            return
        if self._exit_event is None:
            self._exit_event = trio.Event()
        exited = self._exit_event
        self._expected = True
        self._stop = _DRAIN if drain else _STOP_NOW
        self.state = State.STOPPING
        self.mailbox.wake_receiver()
        if self.mailbox.dormant is not None:
            self._awaken()
        with trio.move_on_after(self.spec.shutdown_timeout):
            await exited.wait()
        if not exited.is_set():
            log.warning(
                "%s did not stop within %g s; cancelling it", self.path, self.spec.shutdown_timeout
            )
            assert self._scope is not None
            self._scope.cancel()
            if self._hooks is not None:
                self._hooks.cancel()
            await exited.wait()

    def finalize(self, reason: str) -> None:
        """The cell stops for good: refuse messages, unregister, tell the watchers."""
        if self._children is not None:
            self._children.forget_all(reason="parent stopped")
        self._pending_restart = None
        self.state = State.STOPPED
        self.mailbox.close()
        if self.system.registry.get(self.path) is self:
            del self.system.registry[self.path]
        watchers, self.watchers = self.watchers, {}
        for watcher, on_terminated in watchers.items():
            if not watcher.mailbox.closed:
                message = on_terminated(Terminated(path=self.path, reason=reason))
                watcher.mailbox.put_unbounded((message, None))

    def watch(self, target: Cell, on_terminated: Callable[[Terminated], Any]) -> None:
        if target.mailbox.closed:
            message = on_terminated(Terminated(path=target.path, reason="already stopped"))
            self.mailbox.put_unbounded((message, None))
        else:
            target.watchers[self] = on_terminated

    async def _run(
        self,
        scope: trio.CancelScope,
        started: Latch | None,
        actor: Actor[Any] | None,
        error: BaseException | None,
    ) -> None:
        try:
            if actor is not None:
                try:
                    with scope:
                        if started is not None:
                            await actor.on_start()
                            if self.spec.children or self._children is not None:
                                await self.children.start_all()
                            self._running()
                            started.count_down()
                            started = None
                        await self._loop(actor)
                except Exception as exc:
                    error = exc
                    self._record_error(exc)
            await self._teardown(actor, error, scope.cancelled_caught)
        finally:
            if started is not None:
                started.count_down()
            self._alive = False
            if self._exit_event is not None:
                self._exit_event.set()

    def _running(self) -> None:
        if self.state is State.STARTING:
            self.state = State.RUNNING

    async def _teardown(
        self, actor: Actor[Any] | None, error: BaseException | None, killed: bool
    ) -> None:
        graceful = error is None and not killed
        self.state = State.STOPPING
        deferred, self._deferred = self._deferred, []
        for reply in deferred:
            reply.fail(ActorCrashed(self.path, error) if error else ActorStopped(self.path))
        for timer in list(self._timers):
            timer.cancel()
        self._timers.clear()
        if self._children is not None:
            keep = actor is not None and actor.keeps_children
            await self._children.stop_all(drain=graceful and self._stop == _DRAIN, keep=keep)
        hook = None
        if actor is not None:
            kind = type(actor)
            if graceful and kind.on_stop is not Actor.on_stop:
                hook = actor.on_stop()
            elif not graceful and kind.on_failure is not Actor.on_failure:
                hook = actor.on_failure(error if error is not None else ActorStopped(self.path))
        if hook is not None:
            # The hooks run outside the incarnation's scope: give ``stop`` its own handle on them,
            # and run them already cancelled if ``stop`` has given up waiting before they began.
            self._hooks = hooks = trio.CancelScope()
            if self._scope is not None and self._scope.cancel_called:
                hooks.cancel()
            with hooks:
                try:
                    await hook
                except Exception as exc:
                    log.warning("%s: lifecycle hook failed: %r", self.path, exc)
            self._hooks = None
        self.actor = None
        self.state = State.STOPPED if self._expected else State.RESTARTING
        if self.parent is None:
            self.system.root_exited(error, killed)
        else:
            exit_note = ChildExited(self, self.incarnation, error, killed, self._expected)
            self.parent.mailbox.put_unbounded((exit_note, SYSTEM))

    def _record_error(self, error: BaseException) -> None:
        self.last_error = repr(error)
        self.last_error_at = time.time()
        if log.isEnabledFor(logging.ERROR):
            log.error("%s crashed: %r", self.path, error, exc_info=error)

    # -- the receive loop --------------------------------------------------------------------

    async def _loop(self, actor: Actor[Any]) -> None:
        mailbox = self.mailbox
        items = mailbox.items
        receive = actor.receive
        faults = self.system.faults
        batch = self.system.batch_size
        budget = batch
        while True:
            if self._stop and (self._stop == _STOP_NOW or not items):
                return
            if not items:
                await mailbox.wait_nonempty()
                budget = batch
                continue
            message, reply = mailbox.popleft()
            if reply is SYSTEM:
                await self._handle_runtime_message(message)
                continue
            if reply is not None and reply.settled:
                # Its asker gave up (timed out or cancelled) before the actor got to it: an
                # overloaded actor spends no time on answers nobody waits for, and callers
                # that retry do not pile their repeats on top of the abandoned originals.
                self.expired += 1
                await trio.lowlevel.checkpoint()
                continue
            self._reply = reply
            try:
                if faults.rules:
                    rule = faults.match(self.path, message)
                    if rule is not None:
                        if rule.action is FaultAction.DROP:
                            await trio.lowlevel.checkpoint()  # a flood of drops still yields
                            continue
                        if rule.action is FaultAction.CRASH:
                            raise InjectedFault(f"injected crash on {type(message).__name__}")
                        await trio.sleep(rule.delay_s)
                result = await receive(message)
            except DomainError as exc:
                if self._reply is not None:
                    self._reply.fail(exc)
                elif reply is None:
                    log.warning("%s refused %s: %s", self.path, type(message).__name__, exc)
            except Exception as exc:
                if self._reply is not None:
                    self._reply.fail(ActorCrashed(self.path, exc))
                self.system.dead_letters.record(self.path, message, exc)
                raise
            except BaseException:
                if self._reply is not None:
                    self._reply.fail(ActorStopped(self.path))
                raise
            else:
                if self._reply is not None:
                    self._reply.set(result)
            self.processed += 1
            budget -= 1
            if not budget:
                budget = batch
                await trio.lowlevel.checkpoint()

    async def _handle_runtime_message(self, message: Any) -> None:
        match message:
            case ChildExited():
                await self.children.on_exit(message)
            case StartChildren(specs=specs, reply=reply):
                try:
                    reply.set(await self.children.start_children(specs))
                except (ValueError, ActorStopped) as exc:
                    reply.fail(exc)
            case StopChild(name=name, reply=reply):
                try:
                    await self.children.stop_child(name)
                    reply.set(None)
                except ActorNotFound as exc:
                    reply.fail(exc)
            case ServiceFailed(error=error):
                raise error
            case RestartDue(cells=cells, token=token):
                due = [c for c in cells if c._pending_restart is token and c.parent is self]
                await _start_again(due)

    # -- timers ------------------------------------------------------------------------------

    async def start_service(
        self, service: Callable[..., Awaitable[None]], args: tuple[Any, ...]
    ) -> Any:
        scope = trio.CancelScope()
        self._timers.add(scope)
        return await self.system.nursery.start(self._serve, scope, service, args)

    async def _serve(
        self,
        scope: trio.CancelScope,
        service: Callable[..., Awaitable[None]],
        args: tuple[Any, ...],
        task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        status = _Status(task_status)
        try:
            with scope:
                await service(*args, task_status=status)
        except Exception as error:
            if not status.started_called:
                raise  # still inside start_service: the caller gets the error itself
            if not self.mailbox.closed:
                self.mailbox.put_unbounded((ServiceFailed(error), SYSTEM))
            else:
                log.warning("%s: service failed after the actor stopped: %r", self.path, error)
        finally:
            self._timers.discard(scope)

    def start_timer(self, delay: float, message: Any, *, repeat: bool) -> Timer:
        return Timer(self._schedule(delay, (message, None), repeat=repeat, urgent=False))

    def _schedule(
        self, delay: float, item: tuple[Any, Any], *, repeat: bool, urgent: bool
    ) -> trio.CancelScope:
        scope = trio.CancelScope()
        self._timers.add(scope)
        self.system.nursery.start_soon(self._fire, scope, delay, item, repeat, urgent)
        return scope

    async def _fire(
        self,
        scope: trio.CancelScope,
        delay: float,
        item: tuple[Any, Any],
        repeat: bool,
        urgent: bool,
    ) -> None:
        try:
            with scope:
                deadline = trio.current_time() + delay
                while True:
                    await trio.sleep_until(deadline)
                    if urgent:
                        self.mailbox.put_unbounded(item)
                    else:
                        await self.mailbox.put(item)
                    if not repeat:
                        return
                    deadline += delay
        except ActorStopped:
            pass
        finally:
            self._timers.discard(scope)


async def _start_again(cells: list[Cell]) -> None:
    """Restart ``cells``. Restarted together (rest_for_one, one_for_all), they start in order,
    each once the one before runs. A child restarted alone is not waited for: its ``on_start``
    may ask a sibling whose own restart is queued behind it in this supervisor's mailbox, and
    waiting would stall every restart of the subtree until that ask timed out."""
    if len(cells) == 1:
        cells[0].start(Latch(1))
        return
    for cell in cells:
        latch = Latch(1)
        cell.start(latch)
        await latch.wait()


class Children:
    """The children of one cell and the supervision policy applied to them."""

    __slots__ = ("by_name", "order", "owner", "restart_times")

    def __init__(self, owner: Cell) -> None:
        self.owner = owner
        self.order: list[Cell] = []
        self.by_name: dict[str, Cell] = {}
        self.restart_times: deque[float] = deque()

    def _add(self, spec: ChildSpec[Any]) -> Cell:
        if spec.name in self.by_name:
            raise ValueError(f"{self.owner.path} already has a child named {spec.name!r}")
        cell = Cell(self.owner.system, self.owner, spec)
        self.order.append(cell)
        self.by_name[spec.name] = cell
        self.owner.system.registry[cell.path] = cell
        return cell

    async def start_all(self) -> None:
        """Start the static children, then any kept from before, one after the other in order."""
        self.restart_times.clear()  # a new incarnation of the supervisor: a fresh history (OTP)
        for spec in self.owner.spec.children:
            if spec.name not in self.by_name:
                self._add(spec)
        for cell in list(self.order):
            if not cell.running and self.by_name.get(cell.spec.name) is cell:
                latch = Latch(1)
                cell.start(latch)
                await latch.wait()

    async def start_child(self, spec: ChildSpec[Any]) -> ActorRef[Any]:
        """Add and start a child; returns once its ``on_start`` has run."""
        return (await self.start_children([spec]))[0]

    async def start_children(self, specs: list[ChildSpec[Any]]) -> list[ActorRef[Any]]:
        """Add and start several children at once; returns when all of them have started."""
        if self.owner.mailbox.closed:
            raise ActorStopped(self.owner.path)
        names = [spec.name for spec in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate child names in {names}")
        for name in names:
            if name in self.by_name:
                raise ValueError(f"{self.owner.path} already has a child named {name!r}")
        cells = [self._add(spec) for spec in specs]
        latch = Latch(len(cells))
        for cell in cells:
            cell.start(latch)
        await latch.wait()
        return [cell.ref for cell in cells]

    async def stop_child(self, name: str) -> None:
        cell = self.by_name.get(name)
        if cell is None:
            raise ActorNotFound(f"{self.owner.path}/{name}".replace("//", "/"))
        await cell.stop(drain=True)
        self._forget(cell, "stopped")

    def _forget(self, cell: Cell, reason: str) -> None:
        self.order.remove(cell)
        del self.by_name[cell.spec.name]
        cell.finalize(reason)

    def forget_all(self, reason: str) -> None:
        for cell in reversed(list(self.order)):
            self._forget(cell, reason)

    async def stop_all(self, *, drain: bool, keep: bool) -> None:
        """Stop every child, last started first; ``keep`` leaves them registered for a restart."""
        for cell in reversed(list(self.order)):
            await cell.stop(drain=drain)
        for cell in reversed(list(self.order)):
            if not keep or cell.spec.restart is Restart.TEMPORARY:
                self._forget(cell, "parent stopped")
            else:
                cell.state = State.RESTARTING

    async def on_exit(self, note: ChildExited) -> None:
        cell = note.cell
        if (
            note.expected
            or self.by_name.get(cell.spec.name) is not cell
            or note.incarnation != cell.incarnation
        ):
            return
        abnormal = note.error is not None or note.killed
        restart = cell.spec.restart
        if restart is Restart.TEMPORARY or (restart is Restart.TRANSIENT and not abnormal):
            self._forget(cell, _describe(note.error, note.killed))
            return
        supervision = self.owner.spec.supervision
        now = trio.current_time()
        times = self.restart_times
        times.append(now)
        while times and times[0] < now - supervision.intensity.within_s:
            times.popleft()
        if len(times) > supervision.intensity.max_restarts:
            raise RestartIntensityExceeded(
                self.owner.path, supervision.intensity.max_restarts, supervision.intensity.within_s
            )
        strategy = supervision.strategy
        if strategy is Strategy.ONE_FOR_ONE:
            group = [cell]
        elif strategy is Strategy.ONE_FOR_ALL:
            group = list(self.order)
        else:
            group = self.order[self.order.index(cell) :]
        for other in reversed(group):
            if other is not cell:
                await other.stop(drain=False)
        for other in group:
            if other is not cell and other.spec.restart is Restart.TEMPORARY:
                self._forget(other, "sibling restart")
        group = [c for c in group if self.by_name.get(c.spec.name) is c]

        backoff = supervision.backoff
        if now - cell.last_restart_at > backoff.reset_s:
            cell.consecutive_restarts = 0
        delay = backoff.delay(cell.consecutive_restarts, self.owner.system.rng.random())
        cell.consecutive_restarts += 1
        cell.last_restart_at = now
        token = object()
        for member in group:
            member.restarts += 1
            member.state = State.RESTARTING
            member._pending_restart = token
        if delay <= 0:
            await _start_again(group)
        else:
            self.owner._schedule(
                delay, (RestartDue(group, token), SYSTEM), repeat=False, urgent=True
            )
