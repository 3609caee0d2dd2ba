"""A subscriber's side of the journal: exactly-once handling with a durable cursor.

The consumer hands events to its actor's handler, which describes the effects in a
``Transaction``; the cursor advance is added to that same transaction, so the effects and the
progress commit together. A crash at any point redelivers from the last committed cursor and
nothing is applied twice. A handler that raises has its partial effects undone, the attempt
is recorded, and the event is retried with backoff; after ``max_attempts`` it is parked as a
dead letter and the stream goes on.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec
import trio

from actors.events import AnyEvent, Event
from actors.store import Entry, Store, Transaction
from supervision import ActorContext

from ._bus import Bus, Subscription

log = logging.getLogger("framehub.journal")

Handler = Callable[[Entry, Transaction], Awaitable[None]]
Settle = Callable[[], Awaitable[None]]

_decode_event = msgspec.json.Decoder(AnyEvent).decode


class JournalNudge(msgspec.Struct, frozen=True):
    """Sent to a subscriber actor when events wait for it; its ``receive`` calls ``drain``."""


NUDGE = JournalNudge()


class Consumer:
    """Feeds one subscriber actor from the journal. Create it in ``on_start`` with ``open``."""

    def __init__(
        self,
        bus: Bus,
        subscription: Subscription,
        context: ActorContext[Any],
        handler: Handler,
        *,
        settle: Settle | None = None,
        cursor: int,
        max_attempts: int,
        batch_max: int,
        retry_base_s: float,
    ) -> None:
        self._bus = bus
        self._store: Store = bus.store
        self._subscription = subscription
        self._context = context
        self._handler = handler
        self._settle = settle
        self.name = subscription.name
        self.cursor = cursor
        self._scanned = cursor
        self._max_attempts = max_attempts
        self._batch_max = batch_max
        self._retry_base_s = retry_base_s
        self._retry_at = 0.0
        self._attempts: dict[int, int] = {}
        self.handled = 0

    @classmethod
    async def open(
        cls,
        bus: Bus,
        name: str,
        patterns: Sequence[str],
        context: ActorContext[Any],
        handler: Handler,
        *,
        settle: Settle | None = None,
        max_attempts: int = 5,
        batch_max: int = 256,
        retry_base_s: float = 0.5,
    ) -> Consumer:
        """Subscribe ``name`` and queue a first nudge to catch up from the durable cursor.

        A subscriber seen for the first time starts at the end of the journal: it handles
        what is published from now on, not the past.
        """
        store = bus.store
        row = await store.fetch_one("SELECT seq FROM journal_cursors WHERE subscriber = ?", (name,))
        if row is None:
            cursor = store.last_seq
            tx = Transaction()
            tx.advance_cursor(name, cursor)
            await store.commit(tx)
        else:
            cursor = int(row[0])
        # Failed attempts of a previous incarnation: a later success must clear their rows.
        attempts = await store.fetch_all(
            "SELECT seq, attempts FROM journal_attempts WHERE subscriber = ?", (name,)
        )
        ref = context.ref

        def nudge() -> None:
            if ref.alive:
                ref.nudge(NUDGE)

        subscription = bus.subscribe(name, patterns, nudge)
        subscription.redeliveries = True
        consumer = cls(
            bus,
            subscription,
            context,
            handler,
            settle=settle,
            cursor=cursor,
            max_attempts=max_attempts,
            batch_max=batch_max,
            retry_base_s=retry_base_s,
        )
        consumer._attempts.update((int(seq), int(count)) for seq, count in attempts)
        subscription.caught_up = lambda: consumer.caught_up
        subscription.wake()
        return consumer

    def close(self) -> None:
        self._bus.unsubscribe(self._subscription)

    @property
    def caught_up(self) -> bool:
        sub = self._subscription
        return not sub.buffer and not sub.lagging and self._scanned >= sub.buffered_from

    async def drain(self) -> None:
        """Handle everything that is waiting, batch by batch, then return."""
        sub = self._subscription
        sub.nudged = False
        if self._retry_at and trio.current_time() < self._retry_at:
            return
        self._retry_at = 0.0
        if sub.redeliveries:
            sub.redeliveries = False
            await self._replay_requested()
        while True:
            entries = await self._next_batch()
            if not entries:
                return
            if not await self._handle(entries):
                return

    async def _next_batch(self) -> list[Entry]:
        """The next events to handle, in sequence order: table catch-up first, then buffer.

        When the buffer overflowed, what it holds is still handed out; once it is empty the
        rest comes from the table and buffering starts again at the journal's end.
        """
        sub = self._subscription
        buffer = sub.buffer
        while buffer and buffer[0].seq <= self._scanned:
            buffer.popleft()
        if sub.lagging and not buffer and self._scanned >= sub.buffered_from:
            sub.restart_buffer(self._store.last_seq)
        limit = self._batch_max
        while self._scanned < sub.buffered_from:
            rows = await self._store.fetch_all(
                "SELECT seq, name, payload FROM events WHERE seq > ? AND seq <= ? "
                "ORDER BY seq LIMIT ?",
                (self._scanned, sub.buffered_from, limit),
            )
            if not rows:
                self._scanned = sub.buffered_from
                break
            entries = [
                Entry(seq, _decode_event(payload))
                for seq, name, payload in rows
                if sub.matches(name)
            ]
            if entries:
                return entries
            self._scanned = rows[-1][0]
        while buffer and buffer[0].seq <= self._scanned:
            buffer.popleft()
        if not buffer and sub.lagging:
            sub.restart_buffer(self._store.last_seq)
            if self._scanned < sub.buffered_from:
                return await self._next_batch()
        if len(buffer) <= limit:
            return list(buffer)
        return [buffer[i] for i in range(limit)]

    def _consumed(self, upto: int) -> None:
        self.cursor = max(self.cursor, upto)
        self._scanned = max(self._scanned, upto)
        buffer = self._subscription.buffer
        while buffer and buffer[0].seq <= upto:
            buffer.popleft()

    async def _handle(self, entries: list[Entry]) -> bool:
        """Handle one batch in one transaction; False when it stopped at a failing event."""
        tx = Transaction()
        last_ok: int | None = None
        failure: tuple[Entry, Exception] | None = None
        retried = self._attempts
        for entry in entries:
            mark = tx.mark()
            try:
                await self._handler(entry, tx)
            except Exception as handler_error:
                tx.rollback_to(mark)
                failure = (entry, handler_error)
                break
            if retried and entry.seq in retried:
                tx.execute(
                    "DELETE FROM journal_attempts WHERE subscriber = ? AND seq = ?",
                    (self.name, entry.seq),
                )
            last_ok = entry.seq
        upto = last_ok
        retry_in: float | None = None
        if failure is not None:
            entry, error = failure
            attempts = await self._attempts_of(entry.seq) + 1
            self._attempts[entry.seq] = attempts
            if attempts >= self._max_attempts:
                self._park(tx, entry, error, attempts)
                upto = entry.seq
                log.error(
                    "%s parked %s #%d after %d attempts: %r",
                    self.name,
                    entry.event.event_name,
                    entry.seq,
                    attempts,
                    error,
                )
            else:
                tx.execute(
                    "INSERT INTO journal_attempts (subscriber, seq, attempts, last_error) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (subscriber, seq) DO UPDATE SET "
                    "attempts = excluded.attempts, last_error = excluded.last_error",
                    (self.name, entry.seq, attempts, repr(error)),
                )
                retry_in = self._retry_base_s * 2 ** (attempts - 1)
                log.warning(
                    "%s failed on %s #%d (attempt %d of %d), retrying in %.2fs: %r",
                    self.name,
                    entry.event.event_name,
                    entry.seq,
                    attempts,
                    self._max_attempts,
                    retry_in,
                    error,
                )
        if self._settle is not None and last_ok is not None:
            await self._settle()
        if upto is not None:
            tx.advance_cursor(self.name, upto)
        await self._store.commit(tx)
        if upto is not None:
            self._consumed(upto)
            self.handled += (
                len(entries) if upto == entries[-1].seq else sum(e.seq <= upto for e in entries)
            )
        if retry_in is not None:
            self._retry_at = trio.current_time() + retry_in
            self._context.send_after(retry_in, NUDGE)
            return False
        return True

    async def _attempts_of(self, seq: int) -> int:
        known = self._attempts.get(seq)
        if known is not None:
            return known
        row = await self._store.fetch_one(
            "SELECT attempts FROM journal_attempts WHERE subscriber = ? AND seq = ?",
            (self.name, seq),
        )
        return int(row[0]) if row else 0

    def _park(self, tx: Transaction, entry: Entry, error: Exception, attempts: int) -> None:
        tx.execute(
            "INSERT INTO journal_dead_letters (subscriber, seq, name, payload, error, "
            "traceback, attempts, parked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                self.name,
                entry.seq,
                entry.event.event_name,
                msgspec.json.encode(entry.event),
                repr(error),
                "".join(traceback.format_exception(error)),
                attempts,
                time.time(),
            ),
        )
        tx.execute(
            "DELETE FROM journal_attempts WHERE subscriber = ? AND seq = ?", (self.name, entry.seq)
        )

    async def _replay_requested(self) -> None:
        """Hand parked events whose replay was requested to the handler once more."""
        rows = await self._store.fetch_all(
            "SELECT id, seq, payload, attempts FROM journal_dead_letters "
            "WHERE subscriber = ? AND replay_requested = 1 ORDER BY seq",
            (self.name,),
        )
        for letter_id, seq, payload, attempts in rows:
            event: Event = _decode_event(payload)
            tx = Transaction()
            try:
                await self._handler(Entry(seq, event), tx)
            except Exception as error:
                tx = Transaction()
                tx.execute(
                    "UPDATE journal_dead_letters SET replay_requested = 0, attempts = ?, "
                    "error = ?, traceback = ? WHERE id = ?",
                    (
                        attempts + 1,
                        repr(error),
                        "".join(traceback.format_exception(error)),
                        letter_id,
                    ),
                )
                log.error(
                    "%s: replay of dead letter %d failed again: %r", self.name, letter_id, error
                )
            else:
                tx.execute("DELETE FROM journal_dead_letters WHERE id = ?", (letter_id,))
                log.info("%s: dead letter %d replayed", self.name, letter_id)
            await self._store.commit(tx)
