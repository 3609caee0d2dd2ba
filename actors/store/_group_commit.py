"""Write-behind batching for an actor: buffer items, commit them together, one batch at a time.

An actor that takes many small writes (samples, sightings, last-seen times) cannot afford a
transaction each. ``GroupCommit`` keeps them in memory and commits them as one transaction per
batch: after a short window from the first buffered item, or at once when the batch is big.
While one batch commits, the next one fills, so batches grow with the load; past a bound the
writer waits for the commit instead (backpressure).

It works from inside its owner actor, on the owner's task: the owner adds items, hands back the
two notes the helper sends to its mailbox (its window ended, a commit finished), and the helper
calls the owner's ``write`` on the owner's task to describe a batch. Only ``Store.commit`` runs
elsewhere, in a service of the owner's incarnation.

What callers may rely on:

* **Durability.** An added item is in memory only until the commit of its batch returns;
  a crash or kill loses the buffered and the in-flight batches (nothing half-written: each
  batch is one transaction). ``settle`` returns once everything added before it is committed;
  ``close`` (from ``on_stop``) commits what is left.
* **Order.** Batches commit in the order they were built, one at a time; a transaction the
  owner commits after ``settle`` comes after all of them.
* **Failure.** A full disk makes the commit wait for room (``wait_for_room``) rather than fail:
  the owner's memory is already ahead of the database. Any other failure is kept, and the next
  call of ``check``, ``flush`` or ``settle`` raises ``RuntimeError`` from it: the owner crashes
  and rebuilds from what is stored.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

import trio

from supervision import Actor, Timer

from ._store import Store, Transaction

T = TypeVar("T")
M = TypeVar("M")


def _never() -> bool:
    return False


def _nothing() -> None:
    pass


class _Flight:
    """One batch being committed by a service of the owner."""

    __slots__ = ("committed_at", "done", "error", "items")

    def __init__(self, items: int) -> None:
        self.items = items
        self.done = trio.Event()
        self.error: BaseException | None = None
        self.committed_at = 0.0

    def committed(self) -> None:
        """Its transaction's on-commit callback: done before anyone sees the commit."""
        self.committed_at = time.time()
        self.done.set()


class GroupCommit(Generic[T, M]):
    """Batches of ``T`` committed by ``owner``, an actor whose messages include the notes.

    ``write(tx, items)`` adds a batch (maybe empty) and whatever goes with it to ``tx``; it runs
    on the owner's task when a batch is due, so it may read and reset the owner's state. An
    empty transaction is not committed. ``overdue()`` says the owner has writes of its own that
    must not wait for the window (they go with the next batch, as soon as no commit is in
    flight); ``after_flush()`` runs after each batch was built (not by ``close``): the place to
    arm the owner's own timers.

    The owner routes ``window_ended`` to ``window_ended()`` and ``committed`` to
    ``commit_finished()``, or hands every message to ``took()``, which does both. Counters:
    ``committed_items``, ``flushes``, ``last_commit_at``.
    """

    def __init__(
        self,
        owner: Actor[M],
        store: Store,
        write: Callable[[Transaction, list[T]], None],
        *,
        window_s: float,
        batch_size: int,
        max_buffered: int,
        window_ended: M,
        committed: M,
        overdue: Callable[[], bool] = _never,
        after_flush: Callable[[], None] = _nothing,
    ) -> None:
        self._owner = owner
        self._store = store
        self._write = write
        self._window_s = window_s
        self._batch_size = batch_size
        self._max_buffered = max_buffered
        self._window_note = window_ended
        self._committed_note = committed
        self._overdue = overdue
        self._after_flush = after_flush
        self._items: list[T] = []
        self._flight: _Flight | None = None
        self._timer: Timer | None = None
        self._due = False
        self._failed: BaseException | None = None
        self.committed_items = 0
        self.flushes = 0
        self.last_commit_at: float | None = None
        """Unix time of the last committed batch."""

    @property
    def buffered(self) -> int:
        """Items added and not committed yet (the batch filling and the one in flight)."""
        flight = self._flight
        return len(self._items) + (flight.items if flight is not None else 0)

    def add(self, item: T) -> None:
        self._items.append(item)

    def extend(self, items: Iterable[T]) -> None:
        self._items.extend(items)

    async def added(self) -> None:
        """Call after adding: starts a batch if it is big enough (waiting for the commit in
        flight past ``max_buffered``), otherwise opens the window if none is open."""
        buffered = len(self._items)
        if buffered >= self._batch_size:
            self._due = True
            await self.flush(wait=buffered >= self._max_buffered)
        elif self._timer is None and not self._due and buffered:
            self._timer = self._owner.context.send_after(self._window_s, self._window_note)

    async def took(self, message: M) -> bool:
        """Handle ``message`` if it is one of the two notes (True), else leave it (False)."""
        if message == self._window_note:
            await self.window_ended()
        elif message == self._committed_note:
            await self.commit_finished()
        else:
            return False
        return True

    async def window_ended(self) -> None:
        """The ``window_ended`` note arrived."""
        self._timer = None
        await self.flush_now()

    async def commit_finished(self) -> None:
        """The ``committed`` note arrived: the next batch goes if it is due."""
        await self.flush()

    async def flush_now(self) -> None:
        """Start a batch of what is buffered now, or as soon as the commit in flight is done."""
        self._due = True
        await self.flush()

    async def flush(self, *, wait: bool = False) -> None:
        """Start the due batch, unless one is still committing: then the buffer keeps growing
        and the batch starts when that commit finishes (``wait`` waits for it instead)."""
        flight = self._flight
        if flight is not None:
            if not flight.done.is_set():
                if not wait:
                    return
                await flight.done.wait()
            self.check()
        if not self._due and not self._overdue():
            return
        tx, items = self._build()
        self._due = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if tx:
            self._flight = flight = _Flight(items)
            tx.on_commit(flight.committed)
            await self._owner.context.start_service(self._commit, tx, flight)
        self._after_flush()

    async def settle(self) -> None:
        """Commit everything buffered and wait until it is: what the owner does next (a query,
        a transaction of its own) sees it and comes after it."""
        while True:
            flight = self._flight
            if flight is not None:
                await flight.done.wait()
                self.check()
            if not self._items and not self._overdue():
                return
            await self.flush_now()

    def check(self) -> None:
        """Count the commit that finished; raise ``RuntimeError`` if a commit failed."""
        flight = self._flight
        if flight is not None and flight.done.is_set():
            self._flight = None
            if flight.error is not None:
                self._failed = flight.error
            else:
                self.committed_items += flight.items
                self.flushes += 1
                self.last_commit_at = flight.committed_at
        if self._failed is not None:
            raise RuntimeError("a group commit failed") from self._failed

    async def close(self) -> None:
        """From the owner's ``on_stop``: commit what is buffered, after the batch in flight
        (already in the store's queue). Nothing if a commit failed."""
        if self._failed is not None:
            return
        tx, items = self._build()
        if tx:
            await self._store.commit(tx)
            self.committed_items += items

    def _build(self) -> tuple[Transaction, int]:
        items, self._items = self._items, []
        tx = Transaction()
        self._write(tx, items)
        return tx, len(items)

    async def _commit(
        self,
        tx: Transaction,
        flight: _Flight,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        task_status.started()
        try:
            # On a full disk the batch waits for room rather than failing: the owner's memory
            # is already ahead of the database, so a failure means a restart, and restarts on
            # a disk that stays full would crash-loop the owner until its supervisor gave up.
            # Meanwhile the buffer fills to max_buffered, then the writer waits.
            await self._store.commit(tx, wait_for_room=True)
        except Exception as error:
            flight.error = error
        finally:
            flight.done.set()
            ref = self._owner.context.ref
            if ref.alive:
                ref.nudge(self._committed_note)
