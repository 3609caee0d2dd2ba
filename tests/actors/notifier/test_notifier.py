"""The notifier in the whole hub: events told to the admins, read over HTTP, and POSTed to a
real webhook receiver on loopback.

Events are appended to the journal the way the OTA and telemetry actors append them: in a
transaction of the hub's store. A list request is answered after the notifier has handled
every event committed before it, so no test waits for the notifier by sleeping; webhook
deliveries are awaited on the hub's database (``Hub.until`` re-checks after each commit).
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from actors.accounts import ListUsers, UserSummary, create_user
from actors.events import (
    AlertAcknowledged,
    AlertResolved,
    AlertRuleCreated,
    AlertTriggered,
    Audit,
    CampaignCompleted,
    CampaignCreated,
    CampaignPaused,
    CampaignStarted,
    Event,
    RollbackInitiated,
    UpdateCancelled,
    UpdateCompleted,
    UpdateFailed,
    UpdateRolledBack,
    new_id,
    rfc3339,
)
from actors.notifier import GetNotifierStats, NotifierStats, PruneNotifications
from tests.harness.hub import Hub, User, running_hub
from tests.harness.replies import body_of, problem

NOTIFICATIONS = "/api/v1/notifications"
OTA = Audit.system("ota")
TELEMETRY = Audit.system("telemetry")


async def publish(hub: Hub, *events: Event) -> None:
    async with hub.store.transaction() as tx:
        for event in events:
            tx.publish(event)


async def notifications(hub: Hub, user: User, query: str = "") -> list[dict[str, Any]]:
    """Every notification of ``user`` (all pages), newest first."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params = f"?limit=200{query}" + (f"&cursor={cursor}" if cursor else "")
        page = body_of(await hub.client.get(NOTIFICATIONS + params, headers=user.auth), 200)
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def spring_campaign(device_ids: list[str]) -> CampaignCreated:
    return CampaignCreated(
        audit=Audit.user("someone"),
        campaign_id=new_id(),
        firmware_id=new_id(),
        device_ids=device_ids,
        name="Spring update",
        version="2.1.0",
    )


async def stats(hub: Hub) -> NotifierStats:
    reply: NotifierStats = await hub.refs.notifier.ask(GetNotifierStats())
    return reply


# -- a webhook receiver ------------------------------------------------------------------------


@dataclass
class Received:
    at: float
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class WebhookReceiver:
    """A plain HTTP server on loopback (in a thread): the first ``failures`` requests are
    answered ``fail_status``, the rest 200."""

    url: str = ""
    failures: int = 0
    fail_status: int = 500
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, received: Received) -> int:
        with self.lock:
            self.requests.append(received)
            return self.fail_status if len(self.requests) <= self.failures else 200

    def received(self) -> list[Received]:
        with self.lock:
            return list(self.requests)


@contextmanager
def webhook_receiver(failures: int = 0, fail_status: int = 500) -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(failures=failures, fail_status=fail_status)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length))
            headers = {key.lower(): value for key, value in self.headers.items()}
            status = receiver.answer(Received(time.monotonic(), headers, body))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/framehub"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02})
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def delivery(hub: Hub, event_id: str) -> tuple[str, int, str] | None:
    row = await hub.store.fetch_one(
        "SELECT state, attempts, last_error FROM webhook_deliveries WHERE event_id = ?",
        (event_id,),
    )
    return None if row is None else (str(row[0]), int(row[1]), str(row[2]))


async def until_delivery(hub: Hub, event_id: str, state: str, attempts: int = 1) -> None:
    async def reached() -> bool:
        found = await delivery(hub, event_id)
        return found is not None and found[0] == state and found[1] >= attempts

    await hub.until(reached)


# -- tests -------------------------------------------------------------------------------------


async def test_accounts_list_users_from_the_table_and_only_admins_when_asked(
    tmp_path: Path,
) -> None:
    async with running_hub(tmp_path) as hub:
        admin = await hub.new_user("admin", admin=True)
        member = await hub.new_user("member")
        # As ``run.py users add`` makes one, next to the running hub: only the table knows.
        outside = await create_user(hub.store, "outside", admin=True)
        accounts = hub.refs.accounts
        everyone: list[UserSummary] = await accounts.ask(ListUsers())
        assert [(u.user_id, u.name, u.admin) for u in everyone] == [
            (admin.user_id, "admin", True),
            (member.user_id, "member", False),
            (outside.user_id, "outside", True),
        ]
        admins: list[UserSummary] = await accounts.ask(ListUsers(admins_only=True))
        assert [u.user_id for u in admins] == [admin.user_id, outside.user_id]


async def test_campaign_and_alert_events_notify_every_admin_and_nobody_else(
    tmp_path: Path,
) -> None:
    async with running_hub(tmp_path) as hub:
        alice = await hub.new_user("alice", admin=True)
        bob = await hub.new_user("bob", admin=True)
        member = await hub.new_user("member")
        hall = await hub.pair_frame(alice, "Hall")
        created = spring_campaign([hall.device_id, *(new_id() for _ in range(4))])
        campaign_id = created.campaign_id
        paused = CampaignPaused(
            audit=OTA,
            correlation_id=created.correlation_id,
            campaign_id=campaign_id,
            reason="2 of 5 updates failed (threshold 20%)",
            automatic=True,
        )
        rule = AlertRuleCreated(
            audit=Audit.user(alice.user_id),
            rule_id=new_id(),
            metric="temperature",
            comparison=">",
            threshold=70.0,
            severity="critical",
        )
        triggered = AlertTriggered(
            audit=TELEMETRY,
            alert_id=new_id(),
            rule_id=rule.rule_id,
            device_id=hall.device_id,
            metric="temperature",
            value=71.5,
            severity="critical",
        )
        await publish(hub, created, paused)
        await publish(hub, rule, triggered)

        expected = [
            (
                "alert.triggered",
                "critical",
                "Alert on frame Hall: temperature (critical)",
                "Alert: temperature 71.5 > 70 on frame Hall (critical).",
                None,
                hall.device_id,
                triggered.alert_id,
                triggered.event_id,
                triggered.correlation_id,
            ),
            (
                "campaign.paused",
                "warning",
                "Campaign 'Spring update' paused",
                "Campaign 'Spring update' paused: 2 of 5 updates failed (threshold 20%).",
                campaign_id,
                None,
                None,
                paused.event_id,
                created.correlation_id,
            ),
            (
                "campaign.created",
                "info",
                "Campaign 'Spring update' created",
                "Campaign 'Spring update' created: firmware 2.1.0 for 5 frames.",
                campaign_id,
                None,
                None,
                created.event_id,
                created.correlation_id,
            ),
        ]
        ids: set[str] = set()
        for admin in (alice, bob):
            items = await notifications(hub, admin)
            assert [
                (
                    n["kind"],
                    n["severity"],
                    n["title"],
                    n["body"],
                    n["campaign_id"],
                    n["device_id"],
                    n["alert_id"],
                    n["event_id"],
                    n["correlation_id"],
                )
                for n in items
            ] == expected
            assert {n["user_id"] for n in items} == {admin.user_id}
            assert all(n["read_at"] is None for n in items)
            assert items[0]["created_at"] == triggered.occurred_at
            ids |= {n["notification_id"] for n in items}
        assert len(ids) == 6
        assert await notifications(hub, member) == []

        # An admin made later is told from then on; the earlier admins keep being told.
        carol = await hub.new_user("carol", admin=True)
        started = CampaignStarted(audit=OTA, campaign_id=campaign_id, resumed=True)
        await publish(hub, started)
        told = [(n["kind"], n["body"]) for n in await notifications(hub, carol)]
        assert told == [("campaign.started", "Campaign 'Spring update' resumed.")]
        assert len(await notifications(hub, alice)) == 4
        assert await notifications(hub, member) == []
        assert (await stats(hub)).notifications == 3 + 3 + 3


async def test_update_completed_alone_notifies_nobody_and_the_campaign_sums_up(
    tmp_path: Path,
) -> None:
    async with running_hub(tmp_path) as hub:
        admin = await hub.new_user("admin", admin=True)
        devices = [new_id() for _ in range(4)]
        created = spring_campaign(devices)
        campaign_id = created.campaign_id
        await publish(hub, created)
        completed = [
            UpdateCompleted(
                audit=OTA, campaign_id=campaign_id, device_id=d, firmware_version="2.1.0"
            )
            for d in devices[:3]
        ]
        rolled_back = UpdateRolledBack(
            audit=OTA, campaign_id=campaign_id, device_id=devices[0], firmware_version="2.0.0"
        )
        await publish(hub, *completed, rolled_back)
        assert [n["kind"] for n in await notifications(hub, admin)] == ["campaign.created"]

        failed = UpdateFailed(
            audit=OTA,
            campaign_id=campaign_id,
            device_id=devices[3],
            error="checksum mismatch.",
            rolled_back=True,
            firmware_version="2.0.0",
        )
        summary = CampaignCompleted(
            audit=OTA, campaign_id=campaign_id, completed=3, failed=1, cancelled=0
        )
        await publish(hub, failed, summary)
        items = await notifications(hub, admin)
        assert [(n["kind"], n["severity"], n["body"]) for n in items] == [
            (
                "campaign.completed",
                "warning",
                "Campaign 'Spring update' finished: 3 completed, 1 failed (of 4 frames).",
            ),
            (
                "update.failed",
                "warning",
                f"Update to 2.1.0 failed on frame {devices[3]} (campaign 'Spring update'): "
                "checksum mismatch; the frame rolled back and still runs 2.0.0.",
            ),
            (
                "campaign.created",
                "info",
                "Campaign 'Spring update' created: firmware 2.1.0 for 4 frames.",
            ),
        ]
        assert items[1]["device_id"] == devices[3]


async def test_users_read_only_their_own_notifications_page_by_page(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        alice = await hub.new_user("alice", admin=True)
        bob = await hub.new_user("bob", admin=True)
        member = await hub.new_user("member")
        hall = await hub.pair_frame(alice, "Hall")
        created = spring_campaign([hall.device_id])
        events: list[Event] = [
            created,
            CampaignStarted(audit=OTA, campaign_id=created.campaign_id),
            UpdateCancelled(audit=OTA, campaign_id=created.campaign_id, device_id=hall.device_id),
            RollbackInitiated(
                audit=OTA, campaign_id=created.campaign_id, device_ids=[hall.device_id]
            ),
            CampaignPaused(audit=OTA, campaign_id=created.campaign_id, reason=""),
        ]
        for event in events:
            await publish(hub, event)  # one transaction each: one journal position each
        newest_first = [e.event_name for e in reversed(events)]

        pages: list[list[dict[str, Any]]] = []
        cursor: str | None = None
        while True:
            query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
            page = body_of(await hub.client.get(NOTIFICATIONS + query, headers=alice.auth), 200)
            pages.append(page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert [len(p) for p in pages] == [2, 2, 1]
        mine = [n for p in pages for n in p]
        assert [n["kind"] for n in mine] == newest_first
        assert [n["body"] for n in mine[:3]] == [
            "Campaign 'Spring update' paused: by an operator.",
            "Campaign 'Spring update' is rolling back 1 frame to their firmware before the update.",
            "The update of frame Hall was cancelled (campaign 'Spring update').",
        ]
        theirs = await notifications(hub, bob)
        assert [n["kind"] for n in theirs] == newest_first

        # Reading one: its read_at is set once; the unread list leaves it out.
        first = mine[2]["notification_id"]
        read = body_of(
            await hub.client.post(f"{NOTIFICATIONS}/{first}/read", headers=alice.auth), 200
        )
        assert read["notification_id"] == first and read["read_at"] is not None
        again = body_of(
            await hub.client.post(f"{NOTIFICATIONS}/{first}/read", headers=alice.auth), 200
        )
        assert again["read_at"] == read["read_at"]
        unread = await notifications(hub, alice, "&unread=true")
        assert [n["notification_id"] for n in unread] == [
            n["notification_id"] for n in mine if n["notification_id"] != first
        ]
        assert all(n["read_at"] is None for n in await notifications(hub, bob))

        # Somebody else's, or unknown: 404 either way; nothing changes.
        problem(await hub.client.post(f"{NOTIFICATIONS}/{first}/read", headers=bob.auth), 404)
        problem(
            await hub.client.post(
                f"{NOTIFICATIONS}/{theirs[0]['notification_id']}/read", headers=member.auth
            ),
            404,
        )
        problem(await hub.client.post(f"{NOTIFICATIONS}/no-such-id/read", headers=alice.auth), 404)
        assert all(n["read_at"] is None for n in await notifications(hub, bob))

        # Read all: the count of what was unread; then nothing is unread.
        done = body_of(await hub.client.post(f"{NOTIFICATIONS}/read-all", headers=alice.auth), 200)
        assert done == {"count": 4}
        assert await notifications(hub, alice, "&unread=true") == []
        assert all(n["read_at"] for n in await notifications(hub, alice))
        again_all = body_of(
            await hub.client.post(f"{NOTIFICATIONS}/read-all", headers=alice.auth), 200
        )
        assert again_all == {"count": 0}
        assert len(await notifications(hub, bob, "&unread=true")) == 5
        assert body_of(
            await hub.client.post(f"{NOTIFICATIONS}/read-all", headers=member.auth), 200
        ) == {"count": 0}
        stats_now = await stats(hub)
        assert (stats_now.notifications, stats_now.unread) == (10, 5)

        # Signed-in users only; bad paging parameters are the caller's mistake.
        problem(await hub.client.get(NOTIFICATIONS), 401)
        problem(await hub.client.get(NOTIFICATIONS, headers=hall.auth), 403)
        for cursor in ("yesterday", "%C2%B2", "9" * 40, "-1"):
            problem(
                await hub.client.get(f"{NOTIFICATIONS}?cursor={cursor}", headers=alice.auth), 400
            )
        problem(await hub.client.get(NOTIFICATIONS + "?limit=0", headers=alice.auth), 400)
        problem(await hub.client.get(NOTIFICATIONS + "?unread=maybe", headers=alice.auth), 400)


async def test_notifications_past_their_retention_are_pruned(tmp_path: Path) -> None:
    async with running_hub(tmp_path, NOTIFIER__RETENTION_DAYS="30") as hub:
        admin = await hub.new_user("admin", admin=True)
        old = CampaignStarted(
            audit=OTA, campaign_id=new_id(), occurred_at=rfc3339(time.time() - 31 * 86400)
        )
        recent = CampaignStarted(
            audit=OTA, campaign_id=new_id(), occurred_at=rfc3339(time.time() - 29 * 86400)
        )
        await publish(hub, old, recent)
        assert [n["event_id"] for n in await notifications(hub, admin)] == [
            recent.event_id,
            old.event_id,
        ]
        pruned = await hub.refs.notifier.ask(PruneNotifications())
        assert (pruned.notifications, pruned.deliveries) == (1, 0)
        assert [n["event_id"] for n in await notifications(hub, admin)] == [recent.event_id]


async def test_odd_events_are_told_with_ids_and_never_crash_the_notifier(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        admin = await hub.new_user("admin", admin=True)
        unknown_campaign, unknown_frame = new_id(), new_id()
        long_error = "line one\nline two " + "x" * 5000
        odd: list[Event] = [
            CampaignPaused(audit=OTA, campaign_id=unknown_campaign, reason=""),
            CampaignStarted(audit=OTA, campaign_id=unknown_campaign),
            UpdateFailed(
                audit=OTA, campaign_id=unknown_campaign, device_id=unknown_frame, error=long_error
            ),
            UpdateCancelled(audit=OTA, campaign_id=unknown_campaign),
            RollbackInitiated(audit=OTA, campaign_id=unknown_campaign, device_ids=[]),
            CampaignCompleted(
                audit=OTA, campaign_id=unknown_campaign, completed=0, failed=0, cancelled=0
            ),
            AlertTriggered(
                audit=TELEMETRY,
                alert_id="a-1",
                rule_id="no-such-rule",
                device_id=unknown_frame,
                metric="humidity",
                value=1e-7,
                severity="FATAL",
            ),
            AlertAcknowledged(
                audit=TELEMETRY, alert_id="a-1", rule_id="no-such-rule", device_id=unknown_frame
            ),
            AlertResolved(
                audit=TELEMETRY,
                alert_id="a-1",
                rule_id="no-such-rule",
                device_id=unknown_frame,
                note="  fan\nreplaced  ",
            ),
        ]
        await publish(hub, *odd)
        items = list(reversed(await notifications(hub, admin)))
        assert [n["kind"] for n in items] == [e.event_name for e in odd]
        bodies = [n["body"] for n in items]
        label = f"Campaign {unknown_campaign}"
        assert bodies[0] == f"{label} paused: by an operator."
        assert (items[0]["severity"], bodies[1]) == ("info", f"{label} started.")
        assert bodies[2].startswith(
            f"Update failed on frame {unknown_frame} (campaign {unknown_campaign}): "
            "line one line two xxx"
        )
        assert len(bodies[2]) < 700
        assert bodies[3] == f"{label} cancelled: frames not yet updated keep their firmware."
        assert bodies[5] == f"{label} finished: no frames (of 0 frames)."
        assert bodies[6] == f"Alert: humidity 1e-07 on frame {unknown_frame} (warning)."
        assert items[6]["severity"] == "warning"
        assert bodies[7] == f"Alert acknowledged: the alert on frame {unknown_frame}."
        assert bodies[8] == (
            f"Alert resolved: the alert on frame {unknown_frame} (by hand: fan replaced)."
        )
        assert hub.system.snapshot("/domain/notifier").restarts == 0
        parked = await hub.store.fetch_all(
            "SELECT name FROM journal_dead_letters WHERE subscriber = 'notifier'"
        )
        assert parked == []


async def test_events_without_any_admin_are_still_posted_to_the_webhook(tmp_path: Path) -> None:
    with webhook_receiver() as receiver:
        async with running_hub(tmp_path, NOTIFIER__WEBHOOK_URL=receiver.url) as hub:
            member = await hub.new_user("member")
            event = CampaignStarted(audit=OTA, campaign_id=new_id())
            await publish(hub, event)
            await until_delivery(hub, event.event_id, "delivered")
            assert await notifications(hub, member) == []
            (request,) = receiver.received()
            assert request.body["event_id"] == event.event_id


async def test_webhook_is_retried_with_growing_backoff_until_it_answers_2xx(
    tmp_path: Path,
) -> None:
    with webhook_receiver(failures=3) as receiver:
        async with running_hub(
            tmp_path,
            NOTIFIER__WEBHOOK_URL=receiver.url,
            NOTIFIER__WEBHOOK_BACKOFF_MIN_S="0.05",
            NOTIFIER__WEBHOOK_BACKOFF_MAX_S="5",
            NOTIFIER__WEBHOOK_MAX_ATTEMPTS="6",
        ) as hub:
            alice = await hub.new_user("alice", admin=True)
            await hub.new_user("bob", admin=True)
            created = spring_campaign([new_id(), new_id()])
            await publish(hub, created)
            await until_delivery(hub, created.event_id, "delivered")
            assert await delivery(hub, created.event_id) == ("delivered", 4, "")

            requests = receiver.received()
            assert len(requests) == 4  # once per event, not per admin; until the first 200
            for request in requests:
                assert request.headers["idempotency-key"] == created.event_id
                assert request.headers["content-type"] == "application/json"
                assert request.body == requests[0].body
            body = requests[0].body
            assert (body["event_id"], body["kind"], body["severity"]) == (
                created.event_id,
                "campaign.created",
                "info",
            )
            assert body["title"] == "Campaign 'Spring update' created"
            assert body["campaign_id"] == created.campaign_id
            assert body["correlation_id"] == created.correlation_id
            gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(requests)]
            # Nominal waits 0.05, 0.1, 0.2 s, each jittered down to no less than half.
            assert gaps[0] >= 0.02 and gaps[2] >= 0.09, gaps
            assert gaps[2] > gaps[0], gaps

            counts = await stats(hub)
            assert counts.webhook_enabled
            assert (counts.webhook_pending, counts.webhook_delivered) == (0, 1)
            assert counts.webhook_abandoned == 0
            metrics = await hub.client.get("/metrics", headers=alice.auth)
            assert metrics.status_code == 200
            assert 'framehub_webhook_deliveries{state="delivered"} 1\n' in metrics.text
            assert "framehub_notifications 2\n" in metrics.text


async def test_webhook_gives_up_after_the_last_attempt_and_records_why(tmp_path: Path) -> None:
    with webhook_receiver(failures=3, fail_status=503) as receiver:
        async with running_hub(
            tmp_path,
            NOTIFIER__WEBHOOK_URL=receiver.url,
            NOTIFIER__WEBHOOK_BACKOFF_MIN_S="0.02",
            NOTIFIER__WEBHOOK_MAX_ATTEMPTS="3",
        ) as hub:
            await hub.new_user("admin", admin=True)
            first = CampaignStarted(audit=OTA, campaign_id=new_id())
            await publish(hub, first)
            await until_delivery(hub, first.event_id, "abandoned")
            assert await delivery(hub, first.event_id) == ("abandoned", 3, "HTTP 503")
            assert len(receiver.received()) == 3

            # The receiver is back: the next event is delivered, the abandoned one stays so.
            second = CampaignStarted(audit=OTA, campaign_id=new_id())
            await publish(hub, second)
            await until_delivery(hub, second.event_id, "delivered")
            keys = [r.headers["idempotency-key"] for r in receiver.received()]
            assert keys == [first.event_id] * 3 + [second.event_id]
            assert await delivery(hub, first.event_id) == ("abandoned", 3, "HTTP 503")
            counts = await stats(hub)
            assert (counts.webhook_pending, counts.webhook_delivered) == (0, 1)
            assert counts.webhook_abandoned == 1


async def test_pending_webhook_deliveries_resume_after_a_hub_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "hub"
    unreachable = f"http://127.0.0.1:{closed_port()}/hooks/framehub"
    backoff = {"NOTIFIER__WEBHOOK_BACKOFF_MIN_S": "0.02", "NOTIFIER__WEBHOOK_BACKOFF_MAX_S": "0.1"}
    async with running_hub(data_dir, NOTIFIER__WEBHOOK_URL=unreachable, **backoff) as hub:
        admin = await hub.new_user("admin", admin=True)
        event = AlertTriggered(
            audit=TELEMETRY,
            alert_id=new_id(),
            rule_id=new_id(),
            device_id=new_id(),
            metric="temperature",
            value=80.0,
            severity="critical",
        )
        await publish(hub, event)
        await until_delivery(hub, event.event_id, "pending", attempts=2)
        found = await delivery(hub, event.event_id)
        assert found is not None and "ConnectError" in found[2], found
        assert (await stats(hub)).webhook_pending == 1

    with webhook_receiver() as receiver:
        async with running_hub(data_dir, NOTIFIER__WEBHOOK_URL=receiver.url, **backoff) as hub:
            await until_delivery(hub, event.event_id, "delivered")
            (request,) = receiver.received()
            assert request.headers["idempotency-key"] == event.event_id
            assert request.body["kind"] == "alert.triggered"
            assert request.body["severity"] == "critical"
            # The event was handled once: one notification, one delivery.
            assert [n["event_id"] for n in await notifications(hub, admin)] == [event.event_id]
            counts = await stats(hub)
            assert (counts.webhook_pending, counts.webhook_delivered) == (0, 1)
