"""The event bus: after each commit, new journal entries are pushed to matching subscribers.

Each subscription keeps a bounded in-memory buffer of entries it has not handled yet and wakes
its actor with one coalesced nudge. A subscriber that falls too far behind stops buffering (it
is marked lagging): it finishes what it buffered and reads the rest from the journal table. So
a slow subscriber never holds back a publisher or another subscriber, and memory stays bounded.
"""

from __future__ import annotations

import fnmatch
import re
from collections import deque
from collections.abc import Callable, Sequence

from actors.store import Entry, Store


class Subscription:
    """The bus's side of one subscriber: what it wants and what is waiting for it."""

    __slots__ = (
        "_matches",
        "_pattern",
        "buffer",
        "buffered_from",
        "capacity",
        "caught_up",
        "lagging",
        "name",
        "nudge",
        "nudged",
        "patterns",
        "redeliveries",
    )

    def __init__(
        self, name: str, patterns: Sequence[str], nudge: Callable[[], None], capacity: int
    ) -> None:
        self.name = name
        self.patterns = tuple(patterns)
        self._pattern = re.compile("|".join(fnmatch.translate(p) for p in self.patterns))
        self._matches: dict[str, bool] = {}
        self.nudge = nudge
        self.capacity = capacity
        self.buffer: deque[Entry] = deque()
        self.buffered_from = 0
        self.lagging = False
        self.nudged = False
        self.redeliveries = False
        self.caught_up: Callable[[], bool] = lambda: False

    def matches(self, event_name: str) -> bool:
        known = self._matches.get(event_name)
        if known is None:
            known = self._matches[event_name] = self._pattern.match(event_name) is not None
        return known

    def restart_buffer(self, from_seq: int) -> None:
        """Buffer entries after ``from_seq`` from now on; older ones come from the table."""
        self.buffer.clear()
        self.buffered_from = from_seq
        self.lagging = False

    def offer(self, entries: list[Entry], names: list[str]) -> None:
        """Take the entries this subscriber wants; past capacity, stop buffering (lagging).

        A lagging subscription keeps what it has buffered; the rest is read from the table.
        """
        matches = self._matches
        wanted = [
            entry
            for entry, name in zip(entries, names, strict=True)
            if matches.get(name) or (name not in matches and self.matches(name))
        ]
        if not wanted:
            return
        if not self.lagging:
            room = self.capacity - len(self.buffer)
            if len(wanted) <= room:
                self.buffer.extend(wanted)
            else:
                self.buffer.extend(wanted[:room])
                self.lagging = True
        self.wake()

    def wake(self) -> None:
        if not self.nudged:
            self.nudged = True
            self.nudge()


class Bus:
    """Subscriptions by name, fed by the store's commit listener."""

    def __init__(self, store: Store, *, buffer_capacity: int = 65_536) -> None:
        self.store = store
        self.buffer_capacity = buffer_capacity
        self.subscriptions: dict[str, Subscription] = {}
        store.commit_listeners.append(self._fan_out)

    def subscribe(
        self, name: str, patterns: Sequence[str], nudge: Callable[[], None]
    ) -> Subscription:
        """Register (or re-register after a restart) the subscriber ``name``."""
        subscription = Subscription(name, patterns, nudge, self.buffer_capacity)
        subscription.restart_buffer(self.store.last_seq)
        self.subscriptions[name] = subscription
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        if self.subscriptions.get(subscription.name) is subscription:
            del self.subscriptions[subscription.name]

    def _fan_out(self, entries: list[Entry]) -> None:
        names = [entry.event.event_name for entry in entries]
        for subscription in list(self.subscriptions.values()):
            subscription.offer(entries, names)
