"""Parties that stop consuming, for the tests that prove they stall nobody else.

* ``silent_subscriber``: an MQTT client (a frame's credentials, its own client id) that
  subscribes with QoS 2 and then never reads its socket again, so it never acknowledges a
  message: written by hand on a raw socket with a tiny receive buffer, as a wedged device
  would behave (no library between it and the broker that could keep reading).
* ``held_download``: an HTTP client that starts downloading a file and stops reading after
  the first bytes, holding the connection open (a tiny receive buffer too).
* ``MailboxWatch``: the deepest mailbox of every actor, sampled while a test runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio

from supervision import ActorSnapshot, ActorSystem

RECEIVE_BUFFER = 4096
WAIT_S = 10.0


def _length(value: int) -> bytes:
    """MQTT's variable byte integer."""
    out = bytearray()
    while True:
        byte, value = value % 128, value // 128
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _string(text: str) -> bytes:
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def _packet(kind: int, body: bytes) -> bytes:
    return bytes([kind]) + _length(len(body)) + body


async def _receive_exactly(stream: trio.SocketStream, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = await stream.receive_some(size - len(data))
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        data += chunk
    return data


async def _read_packet(stream: trio.SocketStream) -> tuple[int, bytes]:
    kind = (await _receive_exactly(stream, 1))[0]
    size, shift = 0, 0
    while True:
        byte = (await _receive_exactly(stream, 1))[0]
        size |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return kind, await _receive_exactly(stream, size)


def _small_socket() -> trio.socket.SocketType:
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
    sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_RCVBUF, RECEIVE_BUFFER)
    return sock


@asynccontextmanager
async def silent_subscriber(
    host: str, port: int, username: str, password: str, client_id: str, topics: list[str]
) -> AsyncIterator[trio.SocketStream]:
    """Connected (persistent session, no keep-alive), subscribed to ``topics`` with QoS 2
    (the SUBACK read), and from then on never reading."""
    sock = _small_socket()
    await sock.connect((host, port))
    stream = trio.SocketStream(sock)
    try:
        flags = 0x80 | 0x40  # username, password; clean session off
        connect = _string("MQTT") + bytes([4, flags]) + (0).to_bytes(2, "big")
        connect += _string(client_id) + _string(username) + _string(password)
        with trio.fail_after(WAIT_S):
            await stream.send_all(_packet(0x10, connect))
            connack = await _receive_exactly(stream, 4)
            assert connack[0] == 0x20 and connack[3] == 0, f"CONNACK {connack!r}"
            subscribe = (1).to_bytes(2, "big") + b"".join(_string(t) + b"\x02" for t in topics)
            await stream.send_all(_packet(0x82, subscribe))
            # The SUBACK, unless retained messages come first: read up to it.
            kind, body = await _read_packet(stream)
            while kind & 0xF0 != 0x90:
                kind, body = await _read_packet(stream)
            granted = list(body[2:])
            assert 0x80 not in granted, f"subscription refused: {granted}"
        yield stream
    finally:
        await stream.aclose()


@asynccontextmanager
async def held_download(port: int, path: str, token: str) -> AsyncIterator[bytes]:
    """``GET path`` on the hub's HTTP port, reading only the status line and the first
    bytes; the connection stays open, unread, until the block ends. Yields what was read."""
    sock = _small_socket()
    await sock.connect(("127.0.0.1", port))
    stream = trio.SocketStream(sock)
    try:
        request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {token}\r\n\r\n"
        )
        with trio.fail_after(WAIT_S):
            await stream.send_all(request.encode())
            head = await stream.receive_some(1024)
        yield head
    finally:
        await stream.aclose()


@dataclass
class MailboxWatch:
    """The deepest mailbox each actor had while ``run`` ran (sampled every ``every_s``)."""

    system: ActorSystem
    every_s: float = 0.02
    deepest: dict[str, int] = field(default_factory=dict)

    def _sample(self, snapshot: ActorSnapshot) -> None:
        depth = snapshot.mailbox_depth
        if depth > self.deepest.get(snapshot.path, -1):
            self.deepest[snapshot.path] = depth
        for child in snapshot.children:
            self._sample(child)

    async def run(self) -> None:
        while True:
            self._sample(self.system.snapshot())
            await trio.sleep(self.every_s)  # sampling, not waiting for anything

    def worst(self) -> tuple[str, int]:
        path = max(self.deepest, key=lambda p: self.deepest[p])
        return path, self.deepest[path]
