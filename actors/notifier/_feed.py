"""The console's live view of new notifications: an in-process fan-out that never waits."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import trio

from ._messages import Notification

DEFAULT_BUFFER = 100
"""Notifications a subscriber may fall behind by before it is cut off."""


class _Subscriber:
    __slots__ = ("send", "user_id")

    def __init__(self, send: trio.MemorySendChannel[Notification], user_id: str | None) -> None:
        self.send = send
        self.user_id = user_id


class NotificationFeed:
    """Every new notification, as the notifier stores it, to whoever listens right now.

    The notifier publishes each notification once its transaction has committed: one message
    per recipient (each carries its ``user_id`` and ``notification_id``, so a console can show
    its own user's and mark them read). A subscriber may ask for one user's only.

    Publishing never blocks and never fails: a subscriber whose buffer is full is cut off (its
    channel is closed, so after what is buffered its loop ends with ``EndOfChannel``) and
    counted in ``disconnects``; it may subscribe again and re-read the list over HTTP. Nothing
    is replayed: the feed is a live view, the table is the record.

    One feed outlives the notifier's restarts (the hub makes it before the tree).
    """

    def __init__(self) -> None:
        self._subscribers: set[_Subscriber] = set()
        self.disconnects = 0
        """Subscribers cut off because their buffer was full."""
        self.published = 0
        """Notifications handed to at least one subscriber."""

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    @contextmanager
    def subscribe(
        self, buffer: int = DEFAULT_BUFFER, *, user_id: str | None = None
    ) -> Iterator[trio.MemoryReceiveChannel[Notification]]:
        """``with feed.subscribe() as notifications: async for n in notifications: ...``

        ``buffer`` (at least 1) is how far the subscriber may fall behind before it is cut
        off; ``user_id`` keeps only that user's notifications. Leaving the block unsubscribes.
        """
        if buffer < 1:
            raise ValueError(f"buffer must be at least 1, got {buffer}")
        send, receive = trio.open_memory_channel[Notification](buffer)
        subscriber = _Subscriber(send, user_id)
        self._subscribers.add(subscriber)
        try:
            with receive:
                yield receive
        finally:
            self._subscribers.discard(subscriber)
            send.close()

    def publish(self, notification: Notification) -> None:
        """Hand ``notification`` to every interested subscriber without waiting."""
        delivered = False
        for subscriber in list(self._subscribers):
            if subscriber.user_id is not None and subscriber.user_id != notification.user_id:
                continue
            try:
                subscriber.send.send_nowait(notification)
            except trio.WouldBlock:
                self._subscribers.discard(subscriber)
                subscriber.send.close()
                self.disconnects += 1
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._subscribers.discard(subscriber)  # it left without unsubscribing
            else:
                delivered = True
        if delivered:
            self.published += 1
