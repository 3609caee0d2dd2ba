"""The operator console's WebSocket protocol, over real sockets, against the whole hub.

Each test starts the hub with ``running_hub`` (the production tree, the console on a port the
OS picks) and talks to ``/edge/console`` with ``trio_websocket`` as a browser would.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    open_websocket_url,
)

from actors.album import ListAlbums
from actors.console import (
    CLOSE_BAD_REQUEST,
    CLOSE_FORBIDDEN,
    CLOSE_TOO_SLOW,
    CLOSE_UNAUTHORIZED,
    ConsoleStats,
    GetConsoleStats,
)
from actors.events import Audit, MediaCacheReady
from actors.frames import GetTwin, Twin
from supervision import ActorCrashed, ActorSnapshot
from tests.harness import ota
from tests.harness.console import (
    TIMEOUT,
    command,
    console,
    console_url,
    receive,
    receive_until,
    send,
    stalled_console,
    stats_until,
)
from tests.harness.hub import DEVICES, Hub, running_hub
from tests.harness.photos import jpeg
from tests.harness.replies import body_of
from tests.harness.telemetry import as_frame
from tests.harness.telemetry import send as send_telemetry


async def close_code(ws: WebSocketConnection) -> tuple[int, str | None]:
    """Read until the server closes; its close code and reason."""
    with trio.fail_after(TIMEOUT):
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await ws.get_message()
    return closed.value.reason.code, closed.value.reason.reason


def find(node: dict[str, Any], path: str) -> dict[str, Any] | None:
    if node["path"] == path:
        return node
    for child in node["children"]:
        found = find(child, path)
        if found is not None:
            return found
    return None


async def test_only_admin_tokens_open_the_console(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        admin = await hub.new_user("root", admin=True)
        member = await hub.new_user("member")
        url = console_url(hub)

        async with open_websocket_url(url) as ws:
            await send(ws, {"type": "hello", "version": 1, "token": "not-a-token"})
            assert await close_code(ws) == (CLOSE_UNAUTHORIZED, "invalid token")
        async with open_websocket_url(url) as ws:
            await send(ws, {"type": "hello", "version": 1, "token": member.token})
            assert await close_code(ws) == (CLOSE_FORBIDDEN, "the console is for admins only")
        async with open_websocket_url(url) as ws:
            await send(ws, {"type": "subscribe", "streams": ["tree"]})
            code, reason = await close_code(ws)
            assert (code, reason) == (CLOSE_BAD_REQUEST, "the first message must be hello")
        async with open_websocket_url(url) as ws:
            await send(ws, {"type": "hello", "version": 2, "token": admin.token})
            code, reason = await close_code(ws)
            assert code == CLOSE_BAD_REQUEST and reason is not None and "version 2" in reason

        async with console(hub, admin) as ws:
            reply = await command(ws, action="fault.remove", rule_id=12345)
            assert reply == {"type": "reply", "id": reply["id"], "ok": False,
                             "error": "no fault rule 12345", "result": None}  # fmt: skip
        stats: ConsoleStats = await hub.refs.console.ask(GetConsoleStats())
        assert stats.refused == 4


async def test_a_silent_client_is_closed_with_4408(tmp_path: Path) -> None:
    async with running_hub(tmp_path, CONSOLE__HELLO_TIMEOUT_S="0.3") as hub:
        async with open_websocket_url(console_url(hub)) as ws:
            code, reason = await close_code(ws)
        assert code == 4408 and reason == "no hello within 0.3 s"
        stats: ConsoleStats = await hub.refs.console.ask(GetConsoleStats())
        assert (stats.refused, stats.connections) == (1, 0)


async def test_subscribed_events_include_an_upload_and_honour_the_filter(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        admin = await hub.new_user("root", admin=True)
        async with console(hub, admin) as ws:
            await send(
                ws,
                {"type": "subscribe", "streams": ["events"],
                 "event_filter": {"name_prefix": "file.uploaded"}},
            )  # fmt: skip
            # A command round trip: the subscription is in place once it is answered.
            assert (await command(ws, action="fault.remove", rule_id=1))["ok"] is False
            response = await hub.upload(admin, jpeg(64, 48))
            file_id = body_of(response, 201)["file_id"]
            message = await receive_until(ws, lambda m: m["type"] == "event")
            assert message["name"] == "file.uploaded"
            assert message["event"]["event"] == "file.uploaded"
            assert message["event"]["file_id"] == file_id
            [stored] = await hub.events("file.uploaded")
            assert message["seq"] > 0 and message["event"]["event_id"] == stored.event_id
            # Only names with the prefix: the next event is the analysed upload.
            message = await receive_until(ws, lambda m: m["type"] == "event")
            assert message["name"] == "file.uploaded.with_ai"
            assert message["event"]["file_id"] == file_id


async def test_the_tree_shows_a_restart_caused_by_an_injected_crash(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        admin = await hub.new_user("root", admin=True)
        async with console(hub, admin) as ws:
            await send(ws, {"type": "subscribe", "streams": ["tree"]})
            first = await receive_until(ws, lambda m: m["type"] == "tree")
            album = find(first["root"], "/domain/album")
            assert album is not None and album["state"] == "running"
            assert album["restarts"] == 0
            reply = await command(
                ws,
                action="fault.inject",
                fault={"action": "crash", "path": "/domain/album",
                       "message_type": "ListAlbums", "times": 1},
            )  # fmt: skip
            assert reply["ok"] is True, reply
            rule_id = reply["result"]["rule_id"]
            with pytest.raises(ActorCrashed):
                await hub.system.lookup("/domain/album").ask(ListAlbums(user_id=""))

            def restarted(message: dict[str, Any]) -> bool:
                if message["type"] != "tree":
                    return False
                node = find(message["root"], "/domain/album")
                return node is not None and node["restarts"] == 1 and node["state"] == "running"

            album = find((await receive_until(ws, restarted))["root"], "/domain/album")
            assert album is not None and "InjectedFault" in (album["last_error"] or "")
            snapshot: ActorSnapshot = hub.system.snapshot("/domain/album")
            assert snapshot.restarts == 1
            removed = await command(ws, action="fault.remove", rule_id=rule_id)
            assert removed["ok"] is True and removed["result"] == {"rule_id": rule_id}
            assert hub.system.faults.installed() == []


async def test_frame_and_campaign_commands_go_through_the_domain_actors(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        admin = await hub.new_user("root", admin=True)
        frame = await hub.pair_frame(admin)
        async with console(hub, admin) as ws:
            reply = await command(ws, action="frame.sync", frame_id=frame.device_id)
            assert reply["ok"] is True, reply
            view = reply["result"]
            assert view["frame_id"] == frame.device_id and view["command"] == "sync"
            response = await hub.client.get(
                f"{DEVICES}/{frame.device_id}/commands/{view['command_id']}", headers=admin.auth
            )
            assert body_of(response, 200)["command_id"] == view["command_id"]
            [issued] = await hub.events("frame.command_issued")
            assert issued.command_id == view["command_id"]
            assert issued.audit == Audit.user(admin.user_id)

            restart = await command(ws, action="frame.restart", frame_id=frame.device_id)
            assert restart["ok"] is True and restart["result"]["command"] == "restart"
            show = await command(ws, action="frame.show", frame_id=frame.device_id, file_id="x")
            assert show["ok"] is False and "not in this frame's albums" in show["error"]
            issued_names = [e.command for e in await hub.events("frame.command_issued")]
            assert issued_names == ["sync", "restart"]

            unknown = await command(ws, action="frame.next", frame_id="no-such-frame")
            assert unknown["ok"] is False and unknown["error"]
            missing = await command(ws, action="frame.next")
            assert missing == {"type": "reply", "id": missing["id"], "ok": False,
                               "error": "this action needs frame_id", "result": None}  # fmt: skip
            campaign = await command(ws, action="campaign.pause", campaign_id="nope")
            assert campaign["ok"] is False and campaign["error"]
            alert = await command(ws, action="alert.acknowledge", alert_id="nope")
            assert alert["ok"] is False and alert["error"]
            letter = await command(ws, action="dead-letter.replay", letter_id=999)
            assert letter["ok"] is False and letter["error"]


async def test_malformed_messages_get_errors_and_the_connection_keeps_working(
    tmp_path: Path,
) -> None:
    async with running_hub(tmp_path) as hub:
        admin = await hub.new_user("root", admin=True)
        async with console(hub, admin) as ws:
            for bad in ["{not json", '{"type": "launch"}', '{"type": "command", "id": "x"}',
                        '{"type": "command", "id": "x", "action": "fault.inject", '
                        '"fault": {"action": "crash", "nth": 0}}', "[]"]:  # fmt: skip
                await ws.send_message(bad)
                with trio.fail_after(TIMEOUT):
                    error = await receive(ws)
                assert error["type"] == "error" and error["message"], (bad, error)
            assert hub.system.faults.installed() == []
            # A crash rule must end: one without ``times`` would stop the whole hub.
            for fault in ({"action": "crash", "path": "*"},
                          {"action": "crash", "path": "/domain/*", "times": 101}):  # fmt: skip
                reply = await command(ws, action="fault.inject", fault=fault)
                assert reply["ok"] is False and "needs times" in reply["error"], reply
            assert hub.system.faults.installed() == []
            reply = await command(ws, action="fault.remove", rule_id=7)
            assert reply["ok"] is False and reply["error"] == "no fault rule 7"
        # Not even WebSocket: that connection is dropped, the server goes on.
        port = json.loads((hub.data_dir / "ports.json").read_text())["console"]
        raw = await trio.open_tcp_stream("127.0.0.1", port)
        async with raw:
            await raw.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00\xff garbage")
            with trio.fail_after(TIMEOUT):
                answer = b""
                while chunk := await raw.receive_some():
                    answer += chunk
            assert answer.startswith(b"HTTP/1.1 4"), answer
        async with console(hub, admin) as ws:
            assert (await command(ws, action="fault.remove", rule_id=8))["ok"] is False
        console_node: ActorSnapshot = hub.system.snapshot("/edge/console")
        assert (console_node.state, console_node.restarts) == ("running", 0)


async def _flood_until_too_slow(
    hub: Hub, stalled: WebSocketConnection, reading: WebSocketConnection
) -> tuple[int, ConsoleStats]:
    """Publish bulky events until the console finds ``stalled`` too slow, while ``reading``
    reads along; check that ``reading`` got every one of them. The number published and
    the stats at that moment."""
    bulk = "x" * 16_384
    console_ref = hub.refs.console
    for ws in (stalled, reading):
        await send(ws, {"type": "subscribe", "streams": ["events"],
                        "event_filter": {"name_prefix": "media.cache_ready"}})  # fmt: skip
        assert (await command(ws, action="fault.remove", rule_id=1))["ok"] is False
    received = 0
    published = 0
    target: int | None = None
    caught_up = trio.Event()

    async def read() -> None:
        nonlocal received
        while True:
            message = await receive(reading)
            if message["type"] == "event":
                assert message["event"]["file_id"] == f"f{received}"
                received += 1
            if target is not None and received >= target:
                caught_up.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read)
        with trio.fail_after(TIMEOUT * 2):
            while True:
                async with hub.store.transaction() as tx:
                    tx.publish(
                        MediaCacheReady(
                            audit=Audit(kind="system", id="test"),
                            file_id=f"f{published}",
                            sizes=[bulk],
                        )
                    )
                published += 1
                stats: ConsoleStats = await console_ref.ask(GetConsoleStats())
                if stats.slow_disconnects:
                    break
        target = published
        if received >= target:
            caught_up.set()
        with trio.fail_after(TIMEOUT):
            await caught_up.wait()
        nursery.cancel_scope.cancel()
    assert received == published
    return published, stats


async def test_a_slow_console_that_reads_again_gets_its_4008_close(tmp_path: Path) -> None:
    async with running_hub(tmp_path, CONSOLE__SEND_QUEUE="16") as hub:
        admin = await hub.new_user("root", admin=True)
        async with stalled_console(hub, admin) as stalled, console(hub, admin) as reading:
            published, stats = await _flood_until_too_slow(hub, stalled, reading)
            assert stats.slow_disconnects == 1 and stats.resets == 0
            # The stalled client reads again: what was on its way, whole, then the close.
            events = 0
            with trio.fail_after(TIMEOUT):
                with pytest.raises(ConnectionClosed) as closed:
                    while True:
                        message = await receive(stalled)
                        if message["type"] == "event":
                            assert message["event"]["file_id"] == f"f{events}"
                            events += 1
            reason = closed.value.reason
            assert (reason.code, reason.reason) == (
                CLOSE_TOO_SLOW,
                "too slow: more than 16 messages unsent",
            )
            assert 0 < events < published
            stats = await stats_until(hub, lambda stats: stats.connections == 1)
            assert (stats.slow_disconnects, stats.resets) == (1, 0)
            assert (await command(reading, action="fault.remove", rule_id=2))["ok"] is False


async def test_a_console_that_never_reads_is_reset_after_the_close_timeout(
    tmp_path: Path,
) -> None:
    async with running_hub(
        tmp_path, CONSOLE__SEND_QUEUE="16", CONSOLE__CLOSE_TIMEOUT_S="0.5"
    ) as hub:
        admin = await hub.new_user("root", admin=True)
        async with stalled_console(hub, admin) as stalled, console(hub, admin) as reading:
            await _flood_until_too_slow(hub, stalled, reading)
            # The stalled client does not read: within the close timeout (and some slack)
            # the server gives up on it and resets the connection.
            stats = await stats_until(hub, lambda stats: stats.connections == 1, 0.5 + 4.5)
            assert (stats.slow_disconnects, stats.resets) == (1, 1)
            # The other console goes on.
            assert (await command(reading, action="fault.remove", rule_id=2))["ok"] is False
            # No close frame ever reached the stalled client: its connection was reset.
            code, _ = await close_code(stalled)
            assert code == 1006


async def subscribed(ws: WebSocketConnection, stream: str) -> list[dict[str, Any]]:
    """Subscribe to a list stream; the list it sends at once."""
    await send(ws, {"type": "subscribe", "streams": [stream]})
    message = await receive_until(ws, lambda m: m["type"] == stream)
    items: list[dict[str, Any]] = message[stream]
    return items


async def next_list(
    ws: WebSocketConnection, stream: str, wanted: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    """The first list ``stream`` sends that ``wanted`` accepts."""
    message = await receive_until(ws, lambda m: m["type"] == stream and wanted(m[stream]))
    items: list[dict[str, Any]] = message[stream]
    return items


async def test_the_frames_stream_shows_a_paired_frame_and_its_coming_online(
    tmp_path: Path,
) -> None:
    async with running_hub(tmp_path) as hub:
        admin = await hub.new_user("root", admin=True)
        async with console(hub, admin) as ws:
            assert await subscribed(ws, "frames") == []
            frame = await ota.pair(hub, admin, "kitchen")
            [shown] = await next_list(ws, "frames", lambda frames: len(frames) == 1)
            assert (shown["frame_id"], shown["name"], shown["model"]) == (
                frame.device_id, "kitchen", "FH-10"
            )  # fmt: skip
            assert shown["online"] is False and shown["current_file_id"] is None
            async with ota.scripted_frame(hub, frame) as scripted:
                await scripted.heartbeat("1.4.2")
                [shown] = await next_list(
                    ws, "frames",
                    lambda frames: frames[0]["online"] and frames[0]["firmware_version"],
                )  # fmt: skip
                assert shown["frame_id"] == frame.device_id
                assert shown["firmware_version"] == "1.4.2"
                twin: Twin = await hub.system.lookup(f"/frames/{frame.device_id}").ask(GetTwin())
                assert twin.online and shown["health_score"] == twin.health_score


async def test_campaign_commands_act_and_the_campaigns_stream_follows(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        admin = await hub.new_user("root", admin=True)
        frame = await ota.pair(hub, admin, "hall")
        stored = await ota.firmware(hub, admin, ota.image(20_000), version="2.0.0")
        async with ota.scripted_frame(hub, frame) as scripted, console(hub, admin) as ws:

            async def online() -> bool:
                return bool(await ota.presence(hub, frame.device_id))

            await hub.until(online)
            assert await subscribed(ws, "campaigns") == []
            created = await ota.new_campaign(
                hub, admin, firmware_id=stored["firmware_id"], models=["FH-10"], batch_size=1
            )
            campaign_id = created["campaign_id"]
            [shown] = await next_list(ws, "campaigns", lambda items: len(items) == 1)
            assert (shown["campaign_id"], shown["state"], shown["targets"]) == (
                campaign_id, "draft", 1
            )  # fmt: skip

            started = await command(ws, action="campaign.start", campaign_id=campaign_id)
            assert started["ok"] is True, started
            assert started["result"]["state"] == "running"
            update = await scripted.command()
            assert update.command == "update_firmware" and update.args.campaign_id == campaign_id

            paused = await command(ws, action="campaign.pause", campaign_id=campaign_id)
            assert paused["ok"] is True, paused
            assert paused["result"]["campaign_id"] == campaign_id
            assert paused["result"]["state"] == "paused"
            [shown] = await next_list(ws, "campaigns", lambda items: items[0]["state"] == "paused")
            view = await ota.campaign(hub, admin, campaign_id)
            assert view["state"] == "paused"
            [event] = await hub.events("campaign.paused")
            assert event.campaign_id == campaign_id and event.audit == Audit.user(admin.user_id)

            again = await command(ws, action="campaign.pause", campaign_id=campaign_id)
            assert again["ok"] is False and again["error"]  # a paused campaign: a conflict
            resumed = await command(ws, action="campaign.resume", campaign_id=campaign_id)
            assert resumed["ok"] is True and resumed["result"]["state"] == "running"
            await next_list(ws, "campaigns", lambda items: items[0]["state"] == "running")

            # The update fails (1 of 1: past the threshold, it pauses); retry-failed sends it
            # again, it completes; rollback sends the frame back; a second campaign is cancelled.
            await scripted.report(update, "failed", error="disk full")
            await ota.until_campaign(hub, admin, campaign_id, lambda v: v["state"] == "paused")
            retried = await command(ws, action="campaign.retry-failed", campaign_id=campaign_id)
            assert retried["ok"] is True and retried["result"]["state"] == "running", retried
            again_sent = await scripted.command(1)
            assert again_sent.command == "update_firmware"
            assert again_sent.command_id != update.command_id
            await scripted.update(again_sent)
            await ota.until_campaign(hub, admin, campaign_id, lambda v: v["state"] == "completed")

            rollback = await command(ws, action="campaign.rollback", campaign_id=campaign_id)
            assert rollback["ok"] is True, rollback
            back = await scripted.command(2)
            assert back.command == "rollback_firmware"
            await scripted.report(back, "rolled_back", version="1.0.0")
            await next_list(ws, "campaigns", lambda items: items[0]["state"] == "rolled_back")

            second = await ota.new_campaign(
                hub, admin, firmware_id=stored["firmware_id"], models=["FH-10"], batch_size=1
            )
            cancelled = await command(
                ws, action="campaign.cancel", campaign_id=second["campaign_id"]
            )
            assert cancelled["ok"] is True and cancelled["result"]["state"] == "cancelled"
            assert len(await hub.events("update.cancelled")) == 1


async def test_alert_commands_act_and_the_alerts_stream_follows(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        admin = await hub.new_user("root", admin=True)
        frame = await hub.pair_frame(admin)
        rule = {"metric": "load", "threshold": 1.0, "comparison": ">", "for_seconds": 0,
                "severity": "warning"}  # fmt: skip
        body_of(await hub.client.post("/api/v1/alert-rules", json=rule, headers=admin.auth))
        async with console(hub, admin) as ws, as_frame(hub, frame) as client:
            assert await subscribed(ws, "alerts") == []
            await send_telemetry(client, frame, time.time() - 60, load=2.0)
            [alert] = await next_list(ws, "alerts", lambda alerts: len(alerts) == 1)
            assert (alert["device_id"], alert["metric"], alert["state"]) == (
                frame.device_id, "load", "active"
            )  # fmt: skip
            alert_id = alert["alert_id"]

            acked = await command(ws, action="alert.acknowledge", alert_id=alert_id)
            assert acked["ok"] is True, acked
            assert (acked["result"]["alert_id"], acked["result"]["state"]) == (
                alert_id, "acknowledged"
            )  # fmt: skip
            [alert] = await next_list(
                ws, "alerts", lambda alerts: alerts[0]["state"] == "acknowledged"
            )
            assert alert["alert_id"] == alert_id and alert["acknowledged_at"]
            [event] = await hub.events("alert.acknowledged")
            assert (event.alert_id, event.audit) == (alert_id, Audit.user(admin.user_id))

            resolved = await command(ws, action="alert.resolve", alert_id=alert_id, note="fan")
            assert resolved["ok"] is True and resolved["result"]["state"] == "resolved"
            assert resolved["result"]["note"] == "fan"
            assert await next_list(ws, "alerts", lambda alerts: alerts == []) == []


async def test_the_dead_letters_stream_shows_a_parked_event_and_its_replay(
    tmp_path: Path,
) -> None:
    async with running_hub(tmp_path) as hub:
        admin = await hub.new_user("root", admin=True)
        async with console(hub, admin) as ws:
            assert await subscribed(ws, "dead_letters") == []
            # Park a real event for a real subscriber, as its consumer would after giving up.
            frame = await hub.pair_frame(admin)
            [entry] = await hub.store.fetch_all(
                "SELECT seq, name, payload FROM events WHERE name = 'device.registered'"
            )
            seq, name, payload = entry
            async with hub.store.transaction() as tx:
                tx.execute(
                    "INSERT INTO journal_dead_letters (subscriber, seq, name, payload, error, "
                    "traceback, attempts, parked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    ("audit", seq, name, payload, "ValueError('test')", "", 5, time.time()),
                )
            [letter] = await next_list(ws, "dead_letters", lambda letters: len(letters) == 1)
            assert (letter["subscriber"], letter["seq"], letter["event"]) == ("audit", seq, name)
            assert frame.device_id.encode() in payload
            assert letter["replay_requested"] is False

            replayed = await command(ws, action="dead-letter.replay", letter_id=letter["id"])
            assert replayed["ok"] is True, replayed
            assert replayed["result"]["id"] == letter["id"]
            assert replayed["result"]["replay_requested"] is True
            # The audit log handles it again and the letter is gone.
            assert await next_list(ws, "dead_letters", lambda letters: letters == []) == []
