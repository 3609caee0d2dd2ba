"""The operator console's WebSocket protocol as a browser speaks it: a logged-in console (or one
that stops reading), commands and their replies, and the console actor's counters."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio
from trio_websocket import WebSocketConnection, open_websocket_url, wrap_client_stream

from actors.console import ConsoleStats, GetConsoleStats
from tests.harness.hub import Hub, User

TIMEOUT = 15.0


def console_url(hub: Hub) -> str:
    ports = json.loads((hub.data_dir / "ports.json").read_text())
    return f"ws://127.0.0.1:{ports['console']}/"


async def send(ws: WebSocketConnection, message: dict[str, Any]) -> None:
    await ws.send_message(json.dumps(message))


async def receive(ws: WebSocketConnection) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await ws.get_message())
    return message


async def receive_until(
    ws: WebSocketConnection, wanted: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """The first message ``wanted`` accepts, skipping the others (within ``TIMEOUT``)."""
    with trio.fail_after(TIMEOUT):
        while True:
            message = await receive(ws)
            if wanted(message):
                return message


async def _greet(ws: WebSocketConnection, user: User) -> None:
    await send(ws, {"type": "hello", "version": 1, "token": user.token})
    with trio.fail_after(TIMEOUT):
        welcome = await receive(ws)
    assert welcome == {"type": "welcome", "version": 1, "user_id": user.user_id, "name": "root"}


@asynccontextmanager
async def console(hub: Hub, user: User) -> AsyncIterator[WebSocketConnection]:
    """A console logged in as ``user`` (an admin), past ``welcome``."""
    async with open_websocket_url(console_url(hub)) as ws:
        await _greet(ws, user)
        yield ws


@asynccontextmanager
async def stalled_console(hub: Hub, user: User) -> AsyncIterator[WebSocketConnection]:
    """A console with a tiny socket receive buffer, so that not reading stalls it soon."""
    port = json.loads((hub.data_dir / "ports.json").read_text())["console"]
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
    sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_RCVBUF, 4096)
    await sock.connect(("127.0.0.1", port))
    async with trio.open_nursery() as nursery:
        ws = await wrap_client_stream(nursery, trio.SocketStream(sock), "127.0.0.1", "/")
        try:
            await _greet(ws, user)
            yield ws
        finally:
            await ws.aclose()


async def command(ws: WebSocketConnection, **fields: Any) -> dict[str, Any]:
    """Send a command and wait for its reply (other messages are skipped)."""
    command_id = f"c{id(fields)}"
    await send(ws, {"type": "command", "id": command_id, **fields})
    return await receive_until(ws, lambda m: m["type"] == "reply" and m["id"] == command_id)


async def stats_until(
    hub: Hub, check: Callable[[ConsoleStats], bool], timeout: float = TIMEOUT
) -> ConsoleStats:
    """The console's stats once ``check`` holds (they change without a commit: polled)."""
    console_ref = hub.refs.console
    with trio.fail_after(timeout):
        while True:
            stats: ConsoleStats = await console_ref.ask(GetConsoleStats())
            if check(stats):
                return stats
            await trio.sleep(0.02)
