"""What the security suite shares: the router's own route table, ids for its paths, callers
spread over loopback addresses, checks on refusals, and a scan of the data directory.

Everything runs against the whole hub (``tests.harness.hub.running_hub``); nothing here
reimplements what the hub does, it only asks it and looks at what it left.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, wrap_client_stream

from actors.events import new_id
from actors.http import PROBLEM_JSON, GetRoutes, ServedRoute
from tests.harness.hub import DEVICES, Frame, Hub, User
from tests.harness.replies import body_of

HTTP_GATEWAY = "/edge/http"
WAIT_S = 20.0
PROBLEM_KEYS = {"type", "title", "status", "detail", "correlation_id"}
_PARAMETER = re.compile(r"\{([^{}]+)\}")


async def served_routes(hub: Hub) -> list[ServedRoute]:
    """Every method of every path the running gateway dispatches, read from its router."""
    routes: list[ServedRoute] = await hub.system.lookup(HTTP_GATEWAY).ask(GetRoutes())
    return routes


async def assign(hub: Hub, admin: User, frame: Frame, *album_ids: str) -> None:
    """Choose the albums ``frame`` shows (none: it shows nothing)."""
    url = f"{DEVICES}/{frame.device_id}/albums"
    body_of(await hub.client.put(url, json={"album_ids": list(album_ids)}, headers=admin.auth), 200)


def fill(path: str, values: Mapping[str, str] | None = None) -> str:
    """``path`` with each ``{name}`` replaced: from ``values``, else a plausible fresh id
    (32 hex digits, the shape of every id the hub hands out)."""
    given = values or {}
    return _PARAMETER.sub(lambda match: given.get(match.group(1)) or new_id(), path)


ORIGIN = {"Origin": "https://elsewhere.example"}
"""A page on another site, as a browser names it in a cross-origin request."""


def no_cors(response: httpx.Response) -> bool:
    """True when ``response`` grants no cross-origin access (no ``Access-Control-*``)."""
    return not [name for name in response.headers if name.lower().startswith("access-control-")]


def refused(response: httpx.Response, status: int, *secrets: str) -> dict[str, Any]:
    """The problem of a refusal: ``status``, problem+json with nothing but the problem's own
    fields, ``WWW-Authenticate: Bearer`` on a 401, no CORS grant, no ``secrets`` echoed."""
    where = f"{response.request.method} {response.request.url.path}"
    assert response.status_code == status, (where, response.status_code, response.text)
    assert response.headers["content-type"].startswith(PROBLEM_JSON), (where, response.headers)
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["detail"], (where, body)
    assert set(body) <= PROBLEM_KEYS, (where, body)
    if status == 401:
        challenge = response.headers.get("www-authenticate", "")
        assert challenge.startswith("Bearer"), (where, response.headers)
    assert no_cors(response), (where, response.headers)
    for secret in secrets:
        assert secret not in response.text, (where, "echoed a secret")
    return body


class Addresses:
    """httpx clients on the hub's socket, each from its own loopback address (127.0.0.2,
    127.0.0.3, ...). Failed authentications are limited per client address; a test that
    fails many on purpose takes a new address every ``per_address`` of them, so it never
    comes near the limit and every refusal is the one it checks (401, not 429)."""

    def __init__(self, hub: Hub, stack: AsyncExitStack, per_address: int) -> None:
        self._base_url = str(hub.client.base_url)
        self._stack = stack
        self._per_address = per_address
        self._current: httpx.AsyncClient | None = None
        self._count = 0
        self.used = 0
        """Addresses used so far."""

    async def fresh(self) -> httpx.AsyncClient:
        """A client from an address nothing was counted against yet."""
        self.used += 1
        address = f"127.0.{self.used // 250}.{self.used % 250 + 1}"
        transport = httpx.AsyncHTTPTransport(local_address=address)
        client = httpx.AsyncClient(base_url=self._base_url, transport=transport, timeout=60)
        return await self._stack.enter_async_context(client)

    async def for_failure(self) -> httpx.AsyncClient:
        """The client for one more request that fails authentication."""
        if self._current is None or self._count >= self._per_address:
            self._current, self._count = await self.fresh(), 0
        self._count += 1
        return self._current


@asynccontextmanager
async def addresses(hub: Hub, per_address: int = 20) -> AsyncIterator[Addresses]:
    async with AsyncExitStack() as stack:
        yield Addresses(hub, stack, per_address)


def files_under(root: Path) -> dict[Path, bytes]:
    """Every regular file below ``root`` and its bytes (the database's -wal and -shm too)."""
    return {path: path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def leaks(files: Mapping[Path, bytes], secrets: Iterable[str]) -> list[tuple[Path, str]]:
    """(file, secret) for each secret found in a file, whole or as its first or last 12
    characters."""
    found = []
    for secret in secrets:
        pieces = {secret, secret[:12], secret[-12:]}
        for path, data in files.items():
            if any(piece.encode() in data for piece in pieces):
                found.append((path, secret[:6] + "..."))
    return found


@asynccontextmanager
async def console_from(hub: Hub, source: str) -> AsyncIterator[WebSocketConnection]:
    """A WebSocket to the hub's console from the loopback address ``source``."""
    port = json.loads((hub.data_dir / "ports.json").read_text())["console"]
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
    await sock.bind((source, 0))
    await sock.connect(("127.0.0.1", port))
    async with trio.open_nursery() as nursery:
        ws = await wrap_client_stream(nursery, trio.SocketStream(sock), "127.0.0.1", "/")
        try:
            yield ws
        finally:
            await ws.aclose()


async def console_hello(hub: Hub, token: str, source: str = "127.0.0.1") -> tuple[int, str]:
    """Say hello with ``token``: (0, "welcome") when let in, else the close code and reason."""
    async with console_from(hub, source) as ws:
        await ws.send_message(json.dumps({"type": "hello", "version": 1, "token": token}))
        with trio.fail_after(WAIT_S):
            try:
                reply = json.loads(await ws.get_message())
            except ConnectionClosed as closed:
                assert closed.reason is not None
                return closed.reason.code, closed.reason.reason or ""
        return 0, str(reply["type"])
