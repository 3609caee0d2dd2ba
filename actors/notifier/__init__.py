"""Notifications (seed notification_client): ``/domain/notifier``."""

from ._notifier import NOTIFIER_PATH, NotificationFeed, Notifier

__all__ = ["NOTIFIER_PATH", "NotificationFeed", "Notifier"]
