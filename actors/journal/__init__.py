"""The durable event journal: a transactional outbox on SQLite with exactly-once consumers."""

from ._bus import Bus, Subscription
from ._consumer import NUDGE, Consumer, Handler, JournalNudge, Settle
from ._journal import (
    AuditLog,
    CheckReplays,
    Journal,
    JournalKeeper,
    KeeperMessage,
    ListDeadLetters,
    ParkedEvent,
    PruneJournal,
    ReplayDeadLetter,
    UnknownDeadLetter,
)

__all__ = [
    "NUDGE",
    "AuditLog",
    "Bus",
    "CheckReplays",
    "Consumer",
    "Handler",
    "Journal",
    "JournalKeeper",
    "JournalNudge",
    "KeeperMessage",
    "ListDeadLetters",
    "ParkedEvent",
    "PruneJournal",
    "ReplayDeadLetter",
    "Settle",
    "Subscription",
    "UnknownDeadLetter",
]
