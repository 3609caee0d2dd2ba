"""A bounded FIFO mailbox and the one-shot reply slot used by ``ask``.

Both park and wake Trio tasks directly (``wait_task_rescheduled`` / ``reschedule``) instead of
going through memory channels: a message that finds space costs a deque append and, at most,
one wake-up of the receiving task. That is what lets an actor drain its mailbox in batches.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import Any

import outcome
import trio
from trio.lowlevel import Abort, Task, current_task, reschedule, wait_task_rescheduled

from ._errors import ActorStopped, AskTimeout, MailboxFull

SYSTEM: Any = object()
"""Marker in the reply slot of a runtime-internal message (child exits, control requests)."""


class Reply:
    """A one-shot slot the actor fills with its handler's result (or error)."""

    __slots__ = ("_abandoned", "_outcome", "_task")

    def __init__(self) -> None:
        self._task: Task | None = None
        self._outcome: outcome.Outcome[Any] | None = None
        self._abandoned = False

    @property
    def abandoned(self) -> bool:
        return self._abandoned

    @property
    def settled(self) -> bool:
        """Answered, failed, or given up by the asker: nothing more will happen to it."""
        return self._outcome is not None or self._abandoned

    def set(self, value: Any) -> None:
        self._resolve(outcome.Value(value))

    def fail(self, error: BaseException) -> None:
        self._resolve(outcome.Error(error))

    def _resolve(self, result: outcome.Outcome[Any]) -> None:
        if self._outcome is not None or self._abandoned:
            return
        self._outcome = result
        task = self._task
        if task is not None:
            self._task = None
            reschedule(task, result)

    async def wait(self) -> Any:
        """Wait for the result. Cancelling the wait abandons the slot; a late result is dropped."""
        if self._outcome is not None:
            await trio.lowlevel.checkpoint()
            return self._outcome.unwrap()
        self._task = current_task()

        def abort(_: Any) -> Abort:
            self._task = None
            self._abandoned = True
            return Abort.SUCCEEDED

        return await wait_task_rescheduled(abort)


class Mailbox:
    """Bounded FIFO of ``(message, reply)`` pairs with one receiving task.

    Messages from one sender keep their order. A sender that finds the box full waits for space
    (``put``) or gets ``MailboxFull`` (``put_nowait``); waiting senders are woken one at a time
    as space frees. Runtime messages (``put_unbounded``) ignore the capacity so that a child's
    exit or a watch notice can never be lost to backpressure.
    """

    __slots__ = ("_closed", "_receiver", "_senders", "capacity", "dormant", "items", "path")

    def __init__(self, path: str, capacity: int) -> None:
        self.path = path
        self.capacity = capacity
        self.items: deque[tuple[Any, Any]] = deque()
        self._receiver: Task | None = None
        self._senders: deque[Task] = deque()
        self._closed = False
        self.dormant: Callable[[], None] | None = None
        """Called (once) by the next message when the receiving actor has no task yet."""

    def __len__(self) -> int:
        return len(self.items)

    @property
    def closed(self) -> bool:
        return self._closed

    def put_nowait(self, item: tuple[Any, Any]) -> None:
        if self._closed:
            raise ActorStopped(self.path)
        if len(self.items) >= self.capacity:
            raise MailboxFull(self.path, self.capacity)
        self.items.append(item)
        if self._receiver is not None:
            self.wake_receiver()
        elif self.dormant is not None:
            self.dormant()

    async def put(self, item: tuple[Any, Any]) -> None:
        """Append ``item``, waiting for space. A checkpoint only when it has to wait."""
        while True:
            if self._closed:
                raise ActorStopped(self.path)
            if len(self.items) < self.capacity:
                self.items.append(item)
                if self._receiver is not None:
                    self.wake_receiver()
                elif self.dormant is not None:
                    self.dormant()
                return
            await self._wait_for_space()

    async def _wait_for_space(self) -> None:
        task = current_task()
        self._senders.append(task)

        def abort(_: Any) -> Abort:
            self._senders.remove(task)
            return Abort.SUCCEEDED

        await wait_task_rescheduled(abort)

    def put_unbounded(self, item: tuple[Any, Any]) -> None:
        self.items.append(item)
        if self._receiver is not None:
            self.wake_receiver()
        elif self.dormant is not None:
            self.dormant()

    def popleft(self) -> tuple[Any, Any]:
        item = self.items.popleft()
        if self._senders:
            self._wake_sender()
        return item

    def _wake_sender(self) -> None:
        reschedule(self._senders.popleft())

    def wake_receiver(self) -> None:
        task = self._receiver
        if task is not None:
            self._receiver = None
            reschedule(task)

    async def wait_nonempty(self) -> None:
        """Park the receiving task until something arrives or ``wake_receiver`` is called."""
        self._receiver = current_task()

        def abort(_: Any) -> Abort:
            self._receiver = None
            return Abort.SUCCEEDED

        await wait_task_rescheduled(abort)

    def close(self) -> None:
        """Refuse further messages; fail pending asks and waiting senders with ``ActorStopped``."""
        self._closed = True
        self.dormant = None
        stopped = ActorStopped(self.path)
        while self.items:
            _, reply = self.items.popleft()
            if isinstance(reply, Reply):
                reply.fail(stopped)
        while self._senders:
            reschedule(self._senders.popleft(), outcome.Error(ActorStopped(self.path)))


class Latch:
    """Counts down to zero; one task may wait for that. Cheaper than an Event per child."""

    __slots__ = ("_task", "count")

    def __init__(self, count: int) -> None:
        self.count = count
        self._task: Task | None = None

    def count_down(self) -> None:
        self.count -= 1
        if self.count <= 0 and self._task is not None:
            task, self._task = self._task, None
            reschedule(task)

    async def wait(self) -> None:
        """Return once the count is zero (at once, without a checkpoint, if it already is)."""
        if self.count <= 0:
            return
        self._task = current_task()

        def abort(_: Any) -> Abort:
            self._task = None
            return Abort.SUCCEEDED

        await wait_task_rescheduled(abort)


class AskDeadlines:
    """Times out pending asks without a cancel scope per ask.

    Asks with the same timeout expire in the order they were made, so each timeout value
    keeps a FIFO of (deadline, reply); one task sleeps until the earliest deadline and fails
    the replies whose time is up with ``AskTimeout``. Answered asks are trimmed from the head
    by their askers, so the queues hold about as many entries as there are asks in flight.
    """

    def __init__(self) -> None:
        self._queues: dict[float, deque[tuple[float, Reply, str]]] = {}
        self._next = math.inf
        self._sleeping: trio.CancelScope | None = None

    def track(self, reply: Reply, timeout: float, path: str) -> deque[tuple[float, Reply, str]]:
        queue = self._queues.get(timeout)
        if queue is None:
            queue = self._queues[timeout] = deque()
        deadline = trio.current_time() + timeout
        queue.append((deadline, reply, path))
        if deadline < self._next:
            self._next = deadline
            if self._sleeping is not None:
                self._sleeping.deadline = deadline
        return queue

    async def run(self) -> None:
        while True:
            with trio.CancelScope(deadline=self._next) as sleeping:
                self._sleeping = sleeping
                await trio.sleep_forever()
            self._sleeping = None
            now = trio.current_time()
            upcoming = math.inf
            for timeout, queue in self._queues.items():
                while queue and (queue[0][1].settled or queue[0][0] <= now):
                    _, reply, path = queue.popleft()
                    if not reply.settled:
                        reply.fail(AskTimeout(path, timeout))
                if queue:
                    upcoming = min(upcoming, queue[0][0])
            self._next = upcoming


def trim(queue: deque[tuple[float, Reply, str]]) -> None:
    """Drop answered asks from the head of a deadline queue."""
    while queue and queue[0][1].settled:
        queue.popleft()
