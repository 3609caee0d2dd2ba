"""The notifier (seed notification_client): campaign, update and alert events told to
people — stored per user, shown live on the console, and optionally POSTed to a webhook.

Journal consumer ``notifier`` on ``campaign.created``, ``campaign.started``,
``campaign.paused``, ``campaign.completed``, ``update.failed``, ``update.cancelled``,
``rollback.initiated``, ``alert.triggered``, ``alert.acknowledged`` and ``alert.resolved``.
Each becomes one ``Notification`` per admin user (asked of the accounts actor once per drain
of the journal, so a new admin is told from the next events on). ``update.completed`` and
``update.rolled_back`` are not followed: a 200-frame campaign or rollback would make 200
notifications; ``campaign.completed`` sums each up. ``alert.rule.created`` is followed only to
remember each rule's metric, comparison and threshold, as ``campaign.created`` gives each
campaign's name and version: the words of later notifications (``_phrasing``). Frame names
are asked of the registry; an unknown frame is named by its id.

Exactly once: the consumer's cursor advances in the transaction that stores the
notifications (and ``UNIQUE (user_id, event_id)`` backs it up). In the same transaction a
``webhook_deliveries`` row is added per event when a webhook is configured (``_webhook``).
Once committed, each notification goes to the ``NotificationFeed`` (the console).

The notifier never changes domain state: it publishes no events, and asks other actors only
questions. What it owns: ``notifications`` (read and marked read per user, newest first;
pruned after ``retention_days``), ``webhook_deliveries`` and the two small tables of
remembered facts, ``notifier_campaigns`` and ``notifier_alert_rules``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import msgspec

from actors.accounts import AccountsMessage, ListUsers
from actors.devices import DeviceMessage, GetDevice
from actors.errors import NotFound
from actors.events import AlertRuleCreated, CampaignCreated, Event, new_id, rfc3339, utc_now
from actors.journal import Consumer, Journal, JournalNudge
from actors.store import Entry, Keyset, Rows, Store, Transaction, check_limit
from config import NotifierSettings
from supervision import Actor, ActorRef

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
    WebhookNotification,
)
from ._phrasing import CampaignFacts, RuleFacts, describe, subject_device
from ._webhook import WebhookSender

log = logging.getLogger("framehub.notifier")


NOTIFIED_EVENTS = (
    "campaign.created",
    "campaign.started",
    "campaign.paused",
    "campaign.completed",
    "update.failed",
    "update.cancelled",
    "rollback.initiated",
    "alert.triggered",
    "alert.acknowledged",
    "alert.resolved",
)
"""The events people are told about."""

PRUNE_EVERY_S = 3600.0
"""How often notifications past their retention are deleted."""

NOTIFIER_MIGRATIONS = (
    """
    CREATE TABLE notifications (
        notification_id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        title TEXT NOT NULL,
        body TEXT NOT NULL,
        severity TEXT NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
        campaign_id TEXT,
        device_id TEXT,
        alert_id TEXT,
        event_id TEXT NOT NULL,
        correlation_id TEXT NOT NULL,
        created_at TEXT NOT NULL,
        read_at TEXT,
        seq INTEGER NOT NULL,
        UNIQUE (user_id, event_id)
    );
    CREATE INDEX notifications_by_user ON notifications (user_id, seq);
    CREATE INDEX notifications_created ON notifications (created_at);
    CREATE TABLE webhook_deliveries (
        delivery_id INTEGER PRIMARY KEY,
        event_id TEXT NOT NULL UNIQUE,
        payload BLOB NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'abandoned')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        last_error TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        finished_at REAL
    );
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);
    CREATE TABLE notifier_campaigns (
        campaign_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        version TEXT NOT NULL,
        targets INTEGER NOT NULL
    );
    CREATE TABLE notifier_alert_rules (
        rule_id TEXT PRIMARY KEY,
        metric TEXT NOT NULL,
        comparison TEXT NOT NULL,
        threshold REAL NOT NULL
    );
    """,
)
"""The ``notifier`` schema. ``created_at`` of a notification is its event's time (RFC 3339),
``seq`` its event's place in the journal (the order lists follow: events published in the same
millisecond keep theirs); the deliveries' times are Unix times."""

NOTIFICATIONS = Rows(Notification)
_NEWEST_NOTIFICATIONS = Keyset("seq", key_type=tuple[int], newest_first=True)

_encode = msgspec.json.Encoder().encode

NotifierMessage = (
    JournalNudge
    | ListNotifications
    | MarkNotificationRead
    | MarkAllNotificationsRead
    | PruneNotifications
    | GetNotifierStats
)


class Notifier(Actor[NotifierMessage]):
    """The notifier: owns ``notifications``, ``webhook_deliveries``,
    ``notifier_campaigns`` and ``notifier_alert_rules``; publishes no events."""

    def __init__(
        self,
        store: Store,
        journal: Journal,
        settings: NotifierSettings,
        feed: NotificationFeed,
        *,
        accounts: ActorRef[AccountsMessage],
        registry: ActorRef[DeviceMessage],
    ) -> None:
        self._accounts = accounts
        self._registry = registry
        self._store = store
        self._journal = journal
        self._settings = settings
        self._feed = feed
        self._consumer: Consumer | None = None
        self._webhook = WebhookSender(store, settings) if settings.webhook_url else None
        self._campaigns: dict[str, CampaignFacts] = {}
        self._rules: dict[str, RuleFacts] = {}
        self._admins: list[str] | None = None
        """The admin users' ids, asked of the accounts actor once per drain (None: not yet)."""
        self._frame_names: dict[str, str] = {}

    async def on_start(self) -> None:
        await self._store.migrate("notifier", NOTIFIER_MIGRATIONS)
        for campaign_id, name, version, targets in await self._store.fetch_all(
            "SELECT campaign_id, name, version, targets FROM notifier_campaigns"
        ):
            self._campaigns[campaign_id] = CampaignFacts(
                campaign_id=campaign_id, name=name, version=version, targets=targets
            )
        for rule_id, metric, comparison, threshold in await self._store.fetch_all(
            "SELECT rule_id, metric, comparison, threshold FROM notifier_alert_rules"
        ):
            self._rules[rule_id] = RuleFacts(
                rule_id=rule_id, metric=metric, comparison=comparison, threshold=threshold
            )
        self._consumer = await self._journal.consume(
            "notifier",
            [*NOTIFIED_EVENTS, "alert.rule.created"],
            self.context,
            self._on_event,
        )
        if self._webhook is not None:
            await self.context.start_service(self._webhook.run)
        await self._prune()
        self.context.send_every(PRUNE_EVERY_S, PruneNotifications())

    async def on_stop(self) -> None:
        if self._consumer is not None:
            self._consumer.close()

    async def receive(self, message: NotifierMessage) -> Any:
        assert self._consumer is not None
        self._admins = None
        await self._consumer.drain()
        match message:
            case JournalNudge():
                return None
            case ListNotifications():
                return await self._list(message)
            case MarkNotificationRead(user_id=user_id, notification_id=notification_id):
                return await self._mark_read(user_id, notification_id)
            case MarkAllNotificationsRead(user_id=user_id):
                return await self._mark_all_read(user_id)
            case PruneNotifications():
                return await self._prune()
            case GetNotifierStats():
                return await self._stats()

    # -- requests ------------------------------------------------------------------------------

    async def _list(self, message: ListNotifications) -> NotificationPage:
        check_limit(message.limit)
        items, next_cursor = await _NEWEST_NOTIFICATIONS.page(
            self._store,
            NOTIFICATIONS.columns,
            "notifications",
            "user_id = ? AND read_at IS NULL" if message.unread_only else "user_id = ?",
            (message.user_id,),
            NOTIFICATIONS.of,
            message.limit,
            message.cursor,
        )
        return NotificationPage(items=items, next_cursor=next_cursor)

    async def _mark_read(self, user_id: str, notification_id: str) -> Notification:
        where = "WHERE notification_id = ? AND user_id = ?"
        row = await self._store.fetch_one(
            f"SELECT {NOTIFICATIONS.columns} FROM notifications {where}",
            (notification_id, user_id),
        )
        if row is None:
            raise NotFound(f"no notification {notification_id}")
        notification = NOTIFICATIONS.of(row)
        if notification.read_at is not None:
            return notification
        read_at = utc_now()
        async with self._store.transaction() as tx:
            tx.execute(f"UPDATE notifications SET read_at = ? {where}", (read_at, *row[:2]))
        return msgspec.structs.replace(notification, read_at=read_at)

    async def _mark_all_read(self, user_id: str) -> int:
        row = await self._store.fetch_one(
            "SELECT count(*) FROM notifications WHERE user_id = ? AND read_at IS NULL", (user_id,)
        )
        count = int(row[0]) if row else 0
        if count:
            # Nothing else writes these rows meanwhile: the actor handles one message at a time.
            async with self._store.transaction() as tx:
                tx.execute(
                    "UPDATE notifications SET read_at = ? WHERE user_id = ? AND read_at IS NULL",
                    (utc_now(), user_id),
                )
        return count

    async def _prune(self) -> Pruned:
        retention_s = self._settings.retention_days * 86400.0
        now = time.time()
        cutoff = rfc3339(now - retention_s)
        notifications = await self._store.fetch_one(
            "SELECT count(*) FROM notifications WHERE created_at < ?", (cutoff,)
        )
        deliveries = await self._store.fetch_one(
            "SELECT count(*) FROM webhook_deliveries WHERE state != 'pending' AND finished_at < ?",
            (now - retention_s,),
        )
        pruned = Pruned(
            notifications=int(notifications[0]) if notifications else 0,
            deliveries=int(deliveries[0]) if deliveries else 0,
        )
        if pruned.notifications or pruned.deliveries:
            async with self._store.transaction() as tx:
                tx.execute("DELETE FROM notifications WHERE created_at < ?", (cutoff,))
                tx.execute(
                    "DELETE FROM webhook_deliveries WHERE state != 'pending' AND finished_at < ?",
                    (now - retention_s,),
                )
            log.info(
                "pruned %d notifications and %d webhook deliveries",
                pruned.notifications,
                pruned.deliveries,
            )
        return pruned

    async def _stats(self) -> NotifierStats:
        row = await self._store.fetch_one(
            "SELECT count(*), coalesce(sum(read_at IS NULL), 0) FROM notifications"
        )
        total, unread = (int(row[0]), int(row[1])) if row else (0, 0)
        states = dict(
            await self._store.fetch_all(
                "SELECT state, count(*) FROM webhook_deliveries GROUP BY state"
            )
        )
        return NotifierStats(
            notifications=total,
            unread=unread,
            webhook_enabled=self._webhook is not None,
            webhook_pending=int(states.get("pending", 0)),
            webhook_delivered=int(states.get("delivered", 0)),
            webhook_abandoned=int(states.get("abandoned", 0)),
            feed_subscribers=self._feed.subscribers,
            feed_disconnects=self._feed.disconnects,
            feed_published=self._feed.published,
        )

    # -- journal handler -----------------------------------------------------------------------

    async def _on_event(self, entry: Entry, tx: Transaction) -> None:
        event = entry.event
        # The remembered facts are updated before the commit: a later event of the same
        # batch needs them, and a redelivered event writes the same facts again.
        match event:
            case CampaignCreated():
                facts = CampaignFacts(
                    campaign_id=event.campaign_id,
                    name=event.name,
                    version=event.version,
                    targets=len(event.device_ids),
                )
                tx.execute(
                    "INSERT INTO notifier_campaigns (campaign_id, name, version, targets) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (campaign_id) DO UPDATE SET "
                    "name = excluded.name, version = excluded.version, targets = excluded.targets",
                    (facts.campaign_id, facts.name, facts.version, facts.targets),
                )
                self._campaigns[facts.campaign_id] = facts
            case AlertRuleCreated():
                rule = RuleFacts(
                    rule_id=event.rule_id,
                    metric=event.metric,
                    comparison=event.comparison,
                    threshold=event.threshold,
                )
                tx.execute(
                    "INSERT INTO notifier_alert_rules (rule_id, metric, comparison, threshold) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (rule_id) DO UPDATE SET "
                    "metric = excluded.metric, comparison = excluded.comparison, "
                    "threshold = excluded.threshold",
                    (rule.rule_id, rule.metric, rule.comparison, rule.threshold),
                )
                self._rules[rule.rule_id] = rule
                return
        await self._notify(event, entry.seq, tx)

    async def _notify(self, event: Event, seq: int, tx: Transaction) -> None:
        device_id = subject_device(event)
        campaign_id = getattr(event, "campaign_id", None)
        rule_id = getattr(event, "rule_id", None)
        described = describe(
            event,
            campaign=self._campaigns.get(campaign_id) if isinstance(campaign_id, str) else None,
            rule=self._rules.get(rule_id) if isinstance(rule_id, str) else None,
            frame=await self._frame_name(device_id) if device_id else "",
        )
        if described is None:
            return
        kind = event.event_name
        notifications = [
            Notification(
                notification_id=new_id(),
                user_id=user_id,
                kind=kind,
                title=described.title,
                body=described.body,
                severity=described.severity,
                campaign_id=described.campaign_id,
                device_id=described.device_id,
                alert_id=described.alert_id,
                event_id=event.event_id,
                correlation_id=event.correlation_id,
                created_at=event.occurred_at,
            )
            for user_id in await self._admin_ids()
        ]
        tx.executemany(
            f"INSERT INTO notifications ({NOTIFICATIONS.columns}, seq) VALUES "
            f"({NOTIFICATIONS.placeholders}, ?) ON CONFLICT (user_id, event_id) DO NOTHING",
            [(*NOTIFICATIONS.values(n), seq) for n in notifications],
        )
        feed = self._feed

        def broadcast() -> None:
            for notification in notifications:
                feed.publish(notification)

        tx.on_commit(broadcast)
        if self._webhook is not None:
            payload = WebhookNotification(
                event_id=event.event_id,
                kind=kind,
                title=described.title,
                body=described.body,
                severity=described.severity,
                campaign_id=described.campaign_id,
                device_id=described.device_id,
                alert_id=described.alert_id,
                correlation_id=event.correlation_id,
                created_at=event.occurred_at,
            )
            now = time.time()
            tx.execute(
                "INSERT INTO webhook_deliveries (event_id, payload, state, attempts, "
                "next_attempt_at, created_at) VALUES (?, ?, 'pending', 0, ?, ?) "
                "ON CONFLICT (event_id) DO NOTHING",
                (event.event_id, _encode(payload), now, now),
            )
            tx.on_commit(self._webhook.wake)

    async def _admin_ids(self) -> list[str]:
        if self._admins is None:
            users = await self._accounts.ask(ListUsers(admins_only=True))
            self._admins = [user.user_id for user in users]
        return self._admins

    async def _frame_name(self, device_id: str) -> str:
        """The frame's name, or "" when the registry does not know it (or cannot say now:
        a name is worth no retry)."""
        name = self._frame_names.get(device_id)
        if name is not None:
            return name
        try:
            device = await self._registry.ask(GetDevice(device_id=device_id))
        except Exception as error:
            log.debug("no name for frame %s: %r", device_id, error)
            return ""
        self._frame_names[device_id] = device.name
        return device.name
