"""``/domain/notifier``: notifications for people and the webhook (being built)."""

from __future__ import annotations

from typing import Any

from supervision import Actor

NOTIFIER_PATH = "/domain/notifier"


class NotificationFeed:
    """In-process broadcast of new notifications (the console listens; being built)."""


class Notifier(Actor[Any]):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    async def receive(self, message: Any) -> Any:
        return None
