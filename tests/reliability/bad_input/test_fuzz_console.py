"""Garbage at the operator console, over real WebSockets, against the whole hub.

Hypothesis draws the hostile frames up front (``tests/harness/fuzz/console_cases``, seeded
by ``--seed``; many more under ``--long``) and they are written raw
(``tests/harness/fuzz/websocket``), so the server sees exactly the bytes under test:

* before ``hello``: each connection gets its close code (4400, 4401/4429, 4403), or is dropped
  (1009 over the message limit; a WebSocket protocol error);
* after ``hello``: every unreadable message gets exactly one ``error``, every command with
  arguments naming nothing gets exactly one ``reply`` (``ok`` false), a flood of commands is
  answered in full, and the connection stays usable;
* throughout, another console (the witness) keeps answering, the hub keeps serving HTTP and
  the console actor never restarts;
* ``fault.inject``: a delay longer than any rule may hold a message is refused; a bounded
  crash rule over a whole subtree (``/domain/*``) is survived without any supervisor giving
  up, and the hub serves again once it is spent.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import trio
from trio_websocket import WebSocketConnection

from actors.console import ConsoleStats
from tests.harness.console import command, console
from tests.harness.console import stats_until as console_stats_until
from tests.harness.fuzz.console_cases import (
    breaking_frames,
    garbage,
    hellos,
    hostile_commands,
    overlong_delay,
)
from tests.harness.fuzz.examples import drawn
from tests.harness.fuzz.websocket import RawWebSocket, frame, raw_websocket
from tests.harness.hub import Hub, User, running_hub

GARBAGE, GARBAGE_LONG = 150, 3_000
COMMANDS, COMMANDS_LONG = 60, 1_000
HELLOS, HELLOS_LONG = 25, 300
FLOOD, FLOOD_LONG = 1_000, 4_000
"""Commands sent at once: fewer than the send queue holds, so every one is answered."""
BAD_TOKENS = 10
"""Unknown tokens tried before ``hello``: fewer than the failures an address may have in a
minute, or every later ``hello`` from 127.0.0.1 (the witness's too) would be refused."""
WAIT_S = 30.0
SETTINGS = {"CONSOLE__SEND_QUEUE": "4096"}


def port_of(hub: Hub) -> int:
    port: int = json.loads((hub.data_dir / "ports.json").read_text())["console"]
    return port


async def greet(ws: RawWebSocket, admin: User) -> None:
    await ws.send_json({"type": "hello", "version": 1, "token": admin.token})
    welcome = await ws.receive()
    assert welcome is not None and welcome["type"] == "welcome", welcome


async def still_serving(hub: Hub, witness: WebSocketConnection, admin: User, step: str) -> None:
    """The witness console answers a command, and the hub answers HTTP."""
    reply = await command(witness, action="fault.remove", rule_id=424242)
    assert reply["ok"] is False and reply["error"] == "no fault rule 424242", (step, reply)
    assert (await hub.client.get("/readyz")).status_code == 200, step
    photos = await hub.client.get("/api/v1/photos", headers=admin.auth)
    assert photos.status_code == 200, (step, photos.text)
    for path in ("/edge/console", "/infra/journal", "/infra"):
        snapshot = hub.system.snapshot(path)
        assert (snapshot.state, snapshot.restarts) == ("running", 0), (step, snapshot)


async def test_console_garbage_gets_errors_or_close_codes_and_hurts_nobody(
    tmp_path: Path, seed: int, long_run: bool
) -> None:
    async with running_hub(tmp_path, **SETTINGS) as hub:
        admin = await hub.new_user("root", admin=True)
        member = await hub.new_user("member")
        port = port_of(hub)
        sent: Counter[str] = Counter()
        async with console(hub, admin) as witness:
            # Before hello: one connection each, closed with the code its first message earns.
            openers = await drawn(hellos(member.token), HELLOS_LONG if long_run else HELLOS, seed)
            bad_tokens = 0
            for kind, data, codes in openers:
                if kind == "hello: token":
                    bad_tokens += 1
                    if bad_tokens > BAD_TOKENS:
                        continue
                async with raw_websocket(port) as ws:
                    await ws.send(data)
                    code, reason = await ws.closed()
                    assert code in codes, (kind, data[:200], code, reason)
                    assert ws.inbox == [], (kind, ws.inbox)
                sent["before hello"] += 1
            await still_serving(hub, witness, admin, "after the openers")

            # WebSocket itself broken, before and after hello: that connection ends.
            for greeted in (False, True):
                for kind, data, codes in breaking_frames():
                    async with raw_websocket(port) as ws:
                        if greeted:
                            await greet(ws, admin)
                        await ws.send(data)
                        code, reason = await ws.closed()
                        assert code in codes, (kind, greeted, code, reason)
                    sent["breaking WebSocket"] += 1
            await still_serving(hub, witness, admin, "after the broken frames")

            # After hello: garbage, hostile commands and a flood, on one connection.
            async with raw_websocket(port) as ws:
                await greet(ws, admin)
                junk = await drawn(garbage(), GARBAGE_LONG if long_run else GARBAGE, seed)
                for item in junk:
                    await ws.send(item.data)
                    answer = await ws.receive()
                    assert answer is not None, (item.kind, item.data[:200], ws.close_code)
                    assert answer["type"] == "error" and answer["message"], (item.kind, answer)
                sent["garbage after hello"] += len(junk)
                await still_serving(hub, witness, admin, "after the garbage")

                commands = await drawn(
                    hostile_commands(), COMMANDS_LONG if long_run else COMMANDS, seed
                )
                commands.append(overlong_delay())
                replies = await exchange(ws, commands, "hostile")
                for number, body in enumerate(commands):
                    reply = replies[f"hostile-{number}"]
                    assert reply["ok"] is False and reply["error"], (body, reply)
                    assert reply["result"] is None, (body, reply)
                assert (
                    "delay_s must be at most 60 s"
                    in replies[f"hostile-{len(commands) - 1}"]["error"]
                )
                assert hub.system.faults.installed() == []
                sent["hostile commands"] += len(commands)

                flood = [
                    {"type": "command", "action": action, **args}
                    for action, args in (
                        ("fault.remove", {"rule_id": 7}),
                        ("frame.next", {"frame_id": "0" * 32}),
                        ("alert.acknowledge", {"alert_id": "nope"}),
                    )
                ] * ((FLOOD_LONG if long_run else FLOOD) // 3)
                flooded = await exchange(ws, flood, "flood")
                assert all(reply["ok"] is False for reply in flooded.values())
                sent["flood of commands"] += len(flood)
                await still_serving(hub, witness, admin, "after the flood")

            await fault_rules_cannot_wedge_the_hub(hub, witness, admin)
        stats: ConsoleStats = await console_stats_until(hub, lambda s: s.connections == 0)
        assert stats.slow_disconnects == 0 and stats.resets == 0, stats
        print(f"console frames sent: {sum(sent.values())} {dict(sent)}")


async def exchange(
    ws: RawWebSocket, commands: list[dict[str, Any]], prefix: str
) -> dict[str, dict[str, Any]]:
    """Send every command at once (numbered ``<prefix>-<n>``) while reading; every one must
    be answered by exactly one ``reply`` and nothing else."""
    replies: dict[str, dict[str, Any]] = {}
    data = b"".join(
        frame(json.dumps({**body, "id": f"{prefix}-{n}"}).encode())
        for n, body in enumerate(commands)
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ws.send, data)
        with trio.fail_after(WAIT_S):
            while len(replies) < len(commands):
                message = await ws.receive()
                assert message is not None, ("closed", ws.close_code, ws.close_reason)
                assert message["type"] == "reply", message
                assert message["id"] not in replies, message
                replies[message["id"]] = message
    return replies


async def fault_rules_cannot_wedge_the_hub(
    hub: Hub, witness: WebSocketConnection, admin: User
) -> None:
    """A crash rule over the whole domain subtree, three crashes long: survived."""
    reply = await command(
        witness,
        action="fault.inject",
        fault={"action": "crash", "path": "/domain/*", "times": 3},
    )
    assert reply["ok"] is True, reply
    rule_id = reply["result"]["rule_id"]

    with trio.fail_after(WAIT_S):
        while hub.system.faults.installed()[0].fired < 3:
            # Every request asks /domain/accounts first: each of the first three crashes it.
            await hub.client.get("/api/v1/photos", headers=admin.auth)
    removed = await command(witness, action="fault.remove", rule_id=rule_id)
    assert removed["ok"] is True, removed

    async def recovered() -> bool:
        domain = hub.system.snapshot("/domain")
        return all(child.state == "running" for child in domain.children)

    with trio.fail_after(WAIT_S):  # restarts change no table: polled
        while True:
            if await recovered():
                break
            await trio.sleep(0.05)
    assert hub.system.snapshot("/domain").restarts == 0
    assert hub.system.snapshot("/").restarts == 0
    await still_serving(hub, witness, admin, "after the crash rule")
