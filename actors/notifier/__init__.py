"""Notifications (seed notification_client): ``Notifier``.

``Notifier`` turns campaign, update and alert events into notifications for the admin users,
stored per user and read over HTTP, shown live through the ``NotificationFeed`` (the console
subscribes to it), and POSTed to an optional webhook with retries and an idempotency key.
"""

from ._feed import NotificationFeed
from ._messages import (
    GetNotifierStats,
    ListNotifications,
    MarkAllNotificationsRead,
    MarkNotificationRead,
    Notification,
    NotificationPage,
    NotifierStats,
    Pruned,
    PruneNotifications,
    Severity,
    WebhookNotification,
)
from ._notifier import (
    NOTIFIED_EVENTS,
    NOTIFIER_MIGRATIONS,
    Notifier,
    NotifierMessage,
)

__all__ = [
    "NOTIFIED_EVENTS",
    "NOTIFIER_MIGRATIONS",
    "GetNotifierStats",
    "ListNotifications",
    "MarkAllNotificationsRead",
    "MarkNotificationRead",
    "Notification",
    "NotificationFeed",
    "NotificationPage",
    "Notifier",
    "NotifierMessage",
    "NotifierStats",
    "PruneNotifications",
    "Pruned",
    "Severity",
    "WebhookNotification",
]
