"""The console's feed of new notifications, with the real notifier and accounts actors on a
SQLite file (the hub makes its feed inside ``serve``; here the test holds it).

Events are appended to the journal in a transaction as their producers append them; a
``ListNotifications`` request is answered once the notifier has handled them, so what the
feed got by then is what it will get.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from actors.accounts import Accounts, AccountsMessage, CreateUser, NewUser
from actors.events import Audit, CampaignStarted, Event, new_id
from actors.journal import Journal
from actors.notifier import (
    GetNotifierStats,
    ListNotifications,
    Notification,
    NotificationFeed,
    NotificationPage,
    Notifier,
    NotifierStats,
)
from actors.store import Store
from config import NotifierSettings
from supervision import (
    ActorRef,
    ActorSystem,
    ChildSpec,
    open_asyncio_bridge,
    open_system,
    supervisor,
)

OTA = Audit.system("ota")


@asynccontextmanager
async def open_notifier(path: Path, feed: NotificationFeed) -> AsyncIterator[Hubless]:
    async with open_asyncio_bridge() as bridge, Store.open(path, bridge) as store:
        journal = Journal(store)
        accounts: ActorRef[AccountsMessage] = ActorRef.declare()
        domain = [
            ChildSpec("accounts", lambda: Accounts(store), ref=accounts),
            ChildSpec(
                "notifier",
                lambda: Notifier(
                    store,
                    journal,
                    NotifierSettings(),
                    feed,
                    accounts=accounts,
                    registry=ActorRef.declare("devices"),  # none: frames keep no names here
                ),
            ),
        ]
        tree = supervisor("root", [supervisor("domain", domain)])
        async with open_system(tree, bridge=bridge) as system:
            yield Hubless(store, system)


class Hubless:
    """Accounts and the notifier, without the rest of the hub."""

    def __init__(self, store: Store, system: ActorSystem) -> None:
        self.store = store
        self.system = system

    async def admin(self, name: str) -> str:
        made: NewUser = await self.system.lookup("/domain/accounts").ask(
            CreateUser(name=name, admin=True)
        )
        return made.user_id

    async def publish(self, *events: Event) -> None:
        async with self.store.transaction() as tx:
            for event in events:
                tx.publish(event)

    async def stored(self, user_id: str) -> list[Notification]:
        """``user_id``'s notifications, oldest first, once every event so far is handled."""
        page: NotificationPage = await self.system.lookup("/domain/notifier").ask(
            ListNotifications(user_id=user_id, limit=500)
        )
        return list(reversed(page.items))

    async def stats(self) -> NotifierStats:
        stats: NotifierStats = await self.system.lookup("/domain/notifier").ask(GetNotifierStats())
        return stats


def drained(channel: trio.MemoryReceiveChannel[Notification]) -> list[Notification]:
    """What ``channel`` holds right now."""
    items: list[Notification] = []
    while True:
        try:
            items.append(channel.receive_nowait())
        except trio.WouldBlock:
            return items


async def test_the_feed_gets_each_stored_notification_and_can_follow_one_user(
    tmp_path: Path,
) -> None:
    feed = NotificationFeed()
    async with open_notifier(tmp_path / "hub.db", feed) as hub:
        alice, bob = await hub.admin("alice"), await hub.admin("bob")
        with feed.subscribe(buffer=10) as everyone, feed.subscribe(user_id=alice) as alices:
            assert feed.subscribers == 2
            event = CampaignStarted(audit=OTA, campaign_id=new_id())
            await hub.publish(event)
            stored = [*await hub.stored(alice), *await hub.stored(bob)]
            assert len(stored) == 2
            assert sorted(drained(everyone), key=lambda n: n.user_id) == sorted(
                stored, key=lambda n: n.user_id
            )
            (mine,) = drained(alices)
            assert mine.user_id == alice
            assert (mine.kind, mine.event_id) == ("campaign.started", event.event_id)
            assert mine.body == f"Campaign {event.campaign_id} started."
        assert feed.subscribers == 0
        # Nobody listens: publishing still goes on, nothing is kept for later.
        await hub.publish(CampaignStarted(audit=OTA, campaign_id=new_id()))
        assert len(await hub.stored(alice)) == 2
        with feed.subscribe() as late:
            assert drained(late) == []


async def test_a_subscriber_that_never_reads_is_cut_off_and_holds_up_nobody(
    tmp_path: Path,
) -> None:
    feed = NotificationFeed()
    async with open_notifier(tmp_path / "hub.db", feed) as hub:
        admin = await hub.admin("admin")
        with feed.subscribe(buffer=2) as stalled, feed.subscribe(buffer=100) as reading:
            events = [CampaignStarted(audit=OTA, campaign_id=new_id()) for _ in range(5)]
            await hub.publish(*events)
            stored = await hub.stored(admin)
            assert [n.event_id for n in stored] == [e.event_id for e in events]
            assert drained(reading) == stored
            with trio.fail_after(5):
                kept = [notification async for notification in stalled]
            assert kept == stored[:2]  # what it had buffered, then the end of its channel
            assert (feed.subscribers, feed.disconnects) == (1, 1)
            stats = await hub.stats()
            assert (stats.feed_subscribers, stats.feed_disconnects) == (1, 1)
            assert stats.feed_published == 5
            assert hub.system.snapshot("/domain/notifier").restarts == 0
        assert feed.subscribers == 0


def test_a_subscriber_that_left_is_forgotten_and_a_buffer_must_hold_something() -> None:
    feed = NotificationFeed()
    notification = Notification(
        notification_id="n1",
        user_id="u1",
        kind="campaign.started",
        title="t",
        body="b",
        severity="info",
        event_id="e1",
        correlation_id="c1",
        created_at="2026-01-01T00:00:00.000Z",
    )
    with feed.subscribe() as channel:
        channel.close()  # stopped listening without leaving the block yet
        feed.publish(notification)
        assert (feed.subscribers, feed.disconnects, feed.published) == (0, 0, 0)
    with pytest.raises(ValueError), feed.subscribe(buffer=0):
        pass
