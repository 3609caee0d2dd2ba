"""The journal as the hub uses it: consumers, dead letters, retention, the audit log."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import msgspec

from actors.events import AnyEvent, Event, rfc3339
from actors.store import Entry, Rows, Store, Transaction
from supervision import Actor, ActorContext, DomainError, Request

from ._bus import Bus
from ._consumer import Consumer, Handler, JournalNudge, Settle

_decode_event = msgspec.json.Decoder(AnyEvent).decode

log = logging.getLogger("framehub.journal")
audit_log = logging.getLogger("framehub.audit")


class ParkedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A dead letter: an event one subscriber could not handle after every attempt."""

    id: int
    subscriber: str
    seq: int
    event: str
    error: str
    attempts: int
    parked_at: str
    replay_requested: bool


_PARKED = Rows(ParkedEvent, renames={"event": "name"}, omit={"parked_at"})
"""A ``journal_dead_letters`` row; ``parked_at`` is stored as Unix time."""


class UnknownDeadLetter(DomainError):
    pass


class Journal:
    """Store + bus + delivery policy, shared by every subscriber actor."""

    def __init__(
        self,
        store: Store,
        *,
        max_attempts: int = 5,
        batch_max: int = 256,
        buffer_capacity: int = 65_536,
        retry_base_s: float = 0.5,
    ) -> None:
        self.store = store
        self.bus = Bus(store, buffer_capacity=buffer_capacity)
        self.max_attempts = max_attempts
        self.batch_max = batch_max
        self.retry_base_s = retry_base_s

    async def consume(
        self,
        name: str,
        patterns: Sequence[str],
        context: ActorContext[Any],
        handler: Handler,
        *,
        settle: Settle | None = None,
    ) -> Consumer:
        """Subscribe an actor; its ``receive`` calls ``consumer.drain()`` on ``JournalNudge``.

        ``settle``, if given, is awaited after each batch's handlers and before its commit:
        a subscriber whose effects leave the process (the MQTT bridge) waits there for them
        to be acknowledged; if it raises, nothing of the batch commits and it is redelivered.
        """
        return await Consumer.open(
            self.bus,
            name,
            patterns,
            context,
            handler,
            settle=settle,
            max_attempts=self.max_attempts,
            batch_max=self.batch_max,
            retry_base_s=self.retry_base_s,
        )

    async def dead_letters(self, subscriber: str | None = None) -> list[ParkedEvent]:
        rows = await self.store.fetch_all(
            f"SELECT {_PARKED.columns}, parked_at FROM journal_dead_letters "
            "WHERE (? IS NULL OR subscriber = ?) ORDER BY id",
            (subscriber, subscriber),
        )
        return [_PARKED.of_with(row, parked_at=rfc3339(row[-1])) for row in rows]

    async def request_replay(self, letter_id: int) -> ParkedEvent:
        """Mark a dead letter for replay; its subscriber, if running, is woken at once."""
        row = await self.store.fetch_one(
            "SELECT subscriber FROM journal_dead_letters WHERE id = ?", (letter_id,)
        )
        if row is None:
            raise UnknownDeadLetter(f"no dead letter {letter_id}")
        tx = Transaction()
        tx.execute(
            "UPDATE journal_dead_letters SET replay_requested = 1 WHERE id = ?", (letter_id,)
        )
        await self.store.commit(tx)
        self.wake_replays([str(row[0])])
        (letter,) = [d for d in await self.dead_letters(str(row[0])) if d.id == letter_id]
        return letter

    def wake_replays(self, subscribers: Sequence[str]) -> None:
        for name in subscribers:
            subscription = self.bus.subscriptions.get(name)
            if subscription is not None:
                subscription.redeliveries = True
                subscription.wake()

    async def pending_replays(self) -> list[str]:
        rows = await self.store.fetch_all(
            "SELECT DISTINCT subscriber FROM journal_dead_letters WHERE replay_requested = 1"
        )
        return [str(row[0]) for row in rows]

    async def published_since(self, name: str, since: float) -> list[Event]:
        """The events called ``name`` published after the Unix time ``since``, oldest first
        (for a subscriber that must act on recent ones again, e.g. after a reconnect)."""
        rows = await self.store.fetch_all(
            "SELECT payload FROM events WHERE name = ? AND published_at > ? ORDER BY seq",
            (name, since),
        )
        return [_decode_event(payload) for (payload,) in rows]

    async def prune(self, older_than_s: float) -> int:
        """Delete events every subscriber has handled and that are older than the limit.

        An event some subscriber (running or not) has not yet handled is never deleted. A
        running subscriber with nothing left to do has seen every event so far, matching or
        not, so its cursor first moves to the end of the journal: a subscriber to rare events
        does not hold back retention.
        """
        advance = Transaction()
        last = self.store.last_seq
        for subscription in self.bus.subscriptions.values():
            if subscription.caught_up():
                advance.advance_cursor(subscription.name, last)
        await self.store.commit(advance)
        cutoff = time.time() - older_than_s
        where = "seq <= (SELECT min(seq) FROM journal_cursors) AND published_at < ?"
        row = await self.store.fetch_one(f"SELECT count(*) FROM events WHERE {where}", (cutoff,))
        count = int(row[0]) if row else 0
        if count:
            delete = Transaction()
            delete.execute(f"DELETE FROM events WHERE {where}", (cutoff,))
            await self.store.commit(delete)
        return count


# -- the journal keeper actor ------------------------------------------------------------------


class ListDeadLetters(Request["list[ParkedEvent]"], frozen=True):
    subscriber: str | None = None


class ReplayDeadLetter(Request["ParkedEvent"], frozen=True):
    letter_id: int


class PruneJournal(Request["int"], frozen=True):
    pass


class CheckReplays(Request[None], frozen=True):
    pass


KeeperMessage = ListDeadLetters | ReplayDeadLetter | PruneJournal | CheckReplays


class JournalKeeper(Actor[KeeperMessage]):
    """The journal keeper: retention, dead-letter listing and replay requests.

    Replays asked for from outside the process (``run.py deadletters replay``) are picked up
    by a check every ``replay_check_s`` seconds.
    """

    def __init__(
        self,
        journal: Journal,
        *,
        retention_s: float,
        prune_every_s: float = 3600.0,
        replay_check_s: float = 5.0,
    ) -> None:
        self._journal = journal
        self._retention_s = retention_s
        self._prune_every_s = prune_every_s
        self._replay_check_s = replay_check_s

    async def on_start(self) -> None:
        self.context.send_every(self._prune_every_s, PruneJournal())
        self.context.send_every(self._replay_check_s, CheckReplays())

    async def receive(self, message: KeeperMessage) -> Any:
        match message:
            case ListDeadLetters(subscriber=subscriber):
                return await self._journal.dead_letters(subscriber)
            case ReplayDeadLetter(letter_id=letter_id):
                return await self._journal.request_replay(letter_id)
            case PruneJournal():
                pruned = await self._journal.prune(self._retention_s)
                if pruned:
                    log.info("pruned %d handled journal events", pruned)
                return pruned
            case CheckReplays():
                self._journal.wake_replays(await self._journal.pending_replays())
                return None


# -- the audit log -----------------------------------------------------------------------------


class AuditLog(Actor[JournalNudge]):
    """The audit log: one structured log line per event (who, what, correlation id).

    A side-effect listener in the seeds' "signals" sense: it only logs, never changes state.
    """

    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        self._consumer: Consumer | None = None

    async def on_start(self) -> None:
        self._consumer = await self._journal.consume("audit", ["*"], self.context, self._log)

    async def on_stop(self) -> None:
        if self._consumer is not None:
            self._consumer.close()

    async def receive(self, message: JournalNudge) -> None:
        assert self._consumer is not None
        await self._consumer.drain()

    async def _log(self, entry: Entry, tx: Transaction) -> None:
        event = entry.event
        if audit_log.isEnabledFor(logging.INFO):
            audit_log.info(
                "%s",
                msgspec.json.encode(
                    {
                        "seq": entry.seq,
                        "event": event.event_name,
                        "who": f"{event.audit.kind}:{event.audit.id}",
                        "correlation_id": event.correlation_id,
                        "at": event.occurred_at,
                    }
                ).decode(),
            )
