"""What the notifier answers and accepts: notifications, their pages, and its statistics."""

from __future__ import annotations

from typing import Literal

import msgspec

from actors.store import DEFAULT_PAGE
from supervision import Request

Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "critical")


class Notification(msgspec.Struct, frozen=True, kw_only=True):
    """One thing a person is told about, made from one journal event (``kind`` is its name).

    ``created_at`` is when the event happened; ``read_at`` is null until the user reads it.
    The subject ids name what it is about, when the event has them.
    """

    notification_id: str
    user_id: str
    kind: str
    title: str
    body: str
    severity: Severity
    campaign_id: str | None = None
    device_id: str | None = None
    alert_id: str | None = None
    event_id: str
    correlation_id: str
    created_at: str
    read_at: str | None = None


class WebhookNotification(msgspec.Struct, frozen=True, kw_only=True):
    """The JSON body POSTed to the webhook: one per event, whoever it was for. The same
    ``event_id`` is in the ``Idempotency-Key`` header of every attempt."""

    event_id: str
    kind: str
    title: str
    body: str
    severity: Severity
    campaign_id: str | None = None
    device_id: str | None = None
    alert_id: str | None = None
    correlation_id: str
    created_at: str


# -- messages ----------------------------------------------------------------------------------


class ListNotifications(Request["NotificationPage"], frozen=True, kw_only=True):
    """``user_id``'s notifications, newest first (only unread ones with ``unread_only``);
    answers ``NotificationPage`` (``BadRequest`` for a bad limit or cursor)."""

    user_id: str
    unread_only: bool = False
    limit: int = DEFAULT_PAGE
    cursor: str | None = None


class NotificationPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[Notification]
    next_cursor: str | None = None


class MarkNotificationRead(Request["Notification"], frozen=True, kw_only=True):
    """Mark one of ``user_id``'s notifications read; answers the ``Notification`` (``NotFound``
    for an unknown id or someone else's). Reading it again keeps the first ``read_at``."""

    user_id: str
    notification_id: str


class MarkAllNotificationsRead(Request["int"], frozen=True, kw_only=True):
    """Mark every unread notification of ``user_id`` read; answers how many (an ``int``)."""

    user_id: str


class PruneNotifications(Request["Pruned"], frozen=True, kw_only=True):
    """Delete notifications older than the retention, and finished webhook deliveries as
    old; answers ``Pruned``. The notifier sends it to itself periodically."""


class Pruned(msgspec.Struct, frozen=True, kw_only=True):
    notifications: int
    deliveries: int


class GetNotifierStats(Request["NotifierStats"], frozen=True, kw_only=True):
    """Answers ``NotifierStats``."""


class NotifierStats(msgspec.Struct, frozen=True, kw_only=True):
    """Counts for operators: stored notifications, webhook deliveries by state, and the
    console feed (current subscribers, those cut off for not keeping up, messages sent)."""

    notifications: int
    unread: int
    webhook_enabled: bool
    webhook_pending: int
    webhook_delivered: int
    webhook_abandoned: int
    feed_subscribers: int
    feed_disconnects: int
    feed_published: int
