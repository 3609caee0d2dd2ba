"""A WebSocket client that may break the protocol, for the console's bad-input tests.

wsproto makes the opening handshake and reads what the server sends; every frame the client
sends is written byte by byte as the test asks (any opcode, RSV bits, fragments, unmasked,
invalid UTF-8, any size), so the server sees exactly the garbage under test.
"""

from __future__ import annotations

import json
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)

TEXT, BINARY, CLOSE, PING = 0x1, 0x2, 0x8, 0x9
CONTINUATION = 0x0
ABNORMAL = 1006
"""What a client sees when the connection ended without a close frame."""
WAIT_S = 15.0


def frame(
    payload: bytes,
    opcode: int = TEXT,
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = b"\x5a\xa5\x3c\xc3",
) -> bytes:
    """One WebSocket frame as RFC 6455 lays it out; ``mask=None`` sends it unmasked (which
    a server must refuse from a client)."""
    first = (0x80 if fin else 0) | (rsv & 0x7) << 4 | (opcode & 0xF)
    size = len(payload)
    flag = 0x80 if mask is not None else 0
    if size < 126:
        header = bytes([first, flag | size])
    elif size < 1 << 16:
        header = bytes([first, flag | 126]) + struct.pack(">H", size)
    else:
        header = bytes([first, flag | 127]) + struct.pack(">Q", size)
    if mask is None:
        return header + payload
    return header + mask + _masked(payload, mask)


def _masked(payload: bytes, mask: bytes) -> bytes:
    if not payload:
        return payload
    key = (mask * (len(payload) // 4 + 1))[: len(payload)]
    xored = int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")
    return xored.to_bytes(len(payload), "big")


class RawWebSocket:
    """One connection: ``send`` raw frames, ``receive`` the server's JSON messages; once the
    server closed, ``close_code`` is its close code (``ABNORMAL`` if it sent none)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.inbox: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._text: list[str] = []

    async def _handshake(self, host: str) -> None:
        await self.stream.send_all(self.ws.send(Request(host=host, target="/")))
        with trio.fail_after(WAIT_S):
            while True:
                data = await self.stream.receive_some()
                if not data:
                    raise ConnectionError("closed during the handshake")
                self.ws.receive_data(data)
                for event in self.ws.events():
                    if isinstance(event, AcceptConnection):
                        return
                    if isinstance(event, RejectConnection):
                        raise ConnectionError(f"handshake refused: {event.status_code}")

    async def send(self, data: bytes) -> None:
        """Write ``data`` (frames from ``frame``); a server that already closed is fine."""
        with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self.stream.send_all(data)

    async def send_text(self, text: str | bytes) -> None:
        await self.send(frame(text.encode() if isinstance(text, str) else text))

    async def send_json(self, value: Any) -> None:
        await self.send_text(json.dumps(value))

    async def receive(self, timeout: float = WAIT_S) -> dict[str, Any] | None:
        """The server's next message, or None once it closed the connection."""
        with trio.fail_after(timeout):
            while not self.inbox and self.close_code is None:
                await self._read()
        return self.inbox.pop(0) if self.inbox else None

    async def closed(self, timeout: float = WAIT_S) -> tuple[int, str | None]:
        """Read (and keep) messages until the server closes; its close code and reason."""
        with trio.fail_after(timeout):
            while self.close_code is None:
                await self._read()
        return self.close_code, self.close_reason

    async def _read(self) -> None:
        try:
            data = await self.stream.receive_some()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        if not data:
            self.close_code = self.close_code or ABNORMAL
            return
        self.ws.receive_data(data)
        for event in self.ws.events():
            if isinstance(event, TextMessage):
                self._text.append(event.data)
                if event.message_finished:
                    self.inbox.append(json.loads("".join(self._text)))
                    self._text = []
            elif isinstance(event, CloseConnection):
                self.close_code, self.close_reason = event.code, event.reason or None
            elif isinstance(event, Ping):
                await self.send(frame(event.payload, 0xA))


@asynccontextmanager
async def raw_websocket(port: int, host: str = "127.0.0.1") -> AsyncIterator[RawWebSocket]:
    """A ``RawWebSocket`` past the opening handshake, closed at the end."""
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        socket = RawWebSocket(stream)
        await socket._handshake(host)
        yield socket
