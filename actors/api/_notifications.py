"""Notification routes (any signed-in user, only their own): list newest first, optionally
only the unread ones; mark one or all read."""

from __future__ import annotations

import msgspec

from actors.http import ApiRoute, Page, PageQuery, RequestContext, api_route
from actors.notifier import (
    ListNotifications,
    MarkAllNotificationsRead,
    MarkNotificationRead,
    Notification,
    NotificationPage,
    NotifierMessage,
)
from supervision import ActorRef


class NotificationQuery(PageQuery, frozen=True, kw_only=True):
    """``?unread=true`` keeps only the notifications not yet read."""

    unread: bool = False


class ReadAll(msgspec.Struct, frozen=True, kw_only=True):
    """How many notifications were marked read."""

    count: int


class NotificationRoutes:
    """The signed-in user's notifications."""

    def __init__(self, notifier: ActorRef[NotifierMessage]) -> None:
        self._notifier = notifier

    async def list_notifications(self, context: RequestContext, _: None) -> Page[Notification]:
        query = context.query(NotificationQuery)
        reply: NotificationPage = await self._notifier.ask(
            ListNotifications(
                user_id=context.user_id,
                unread_only=query.unread,
                limit=query.limit,
                cursor=query.cursor,
            ),
        )
        return Page(items=reply.items, next_cursor=reply.next_cursor)

    async def read_notification(self, context: RequestContext, _: None) -> Notification:
        return await self._notifier.ask(
            MarkNotificationRead(
                user_id=context.user_id, notification_id=context.path_params["notification_id"]
            ),
        )

    async def read_all_notifications(self, context: RequestContext, _: None) -> ReadAll:
        count: int = await self._notifier.ask(MarkAllNotificationsRead(user_id=context.user_id))
        return ReadAll(count=count)

    def routes(self) -> tuple[ApiRoute, ...]:
        return (
            api_route(
                "GET",
                "/api/v1/notifications",
                self.list_notifications,
                query=NotificationQuery,
                response=Page[Notification],
                tags=("notifications",),
                summary="the caller's notifications, newest first (?unread=true: unread only)",
            ),
            api_route(
                "POST",
                "/api/v1/notifications/read-all",
                self.read_all_notifications,
                response=ReadAll,
                tags=("notifications",),
                summary="mark every unread notification of the caller read; answers how many",
            ),
            api_route(
                "POST",
                "/api/v1/notifications/{notification_id}/read",
                self.read_notification,
                response=Notification,
                errors=(404,),
                tags=("notifications",),
                summary="mark one of the caller's notifications read",
            ),
        )
