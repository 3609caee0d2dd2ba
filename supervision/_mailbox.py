"""A bounded FIFO mailbox and the one-shot reply slot used by ``ask``.

Both park and wake Trio tasks directly (``wait_task_rescheduled`` / ``reschedule``) instead of
going through memory channels: a message that finds space costs a deque append and, at most,
one wake-up of the receiving task. That is what lets an actor drain its mailbox in batches.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import outcome
import trio
from trio.lowlevel import Abort, Task, current_task, reschedule, wait_task_rescheduled

from ._errors import ActorStopped, MailboxFull

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

    __slots__ = ("_closed", "_receiver", "_senders", "capacity", "items", "path")

    def __init__(self, path: str, capacity: int) -> None:
        self.path = path
        self.capacity = capacity
        self.items: deque[tuple[Any, Any]] = deque()
        self._receiver: Task | None = None
        self._senders: deque[Task] = deque()
        self._closed = False

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

    async def put(self, item: tuple[Any, Any]) -> None:
        """Append ``item``, waiting for space. A checkpoint only when it has to wait."""
        while True:
            if self._closed:
                raise ActorStopped(self.path)
            if len(self.items) < self.capacity:
                self.items.append(item)
                if self._receiver is not None:
                    self.wake_receiver()
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
        stopped = ActorStopped(self.path)
        while self.items:
            _, reply = self.items.popleft()
            if isinstance(reply, Reply):
                reply.fail(stopped)
        while self._senders:
            reschedule(self._senders.popleft(), outcome.Error(ActorStopped(self.path)))
