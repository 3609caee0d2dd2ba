"""Real things a frame talks to, for frame_device tests (the broker is ``broker.Broker``): a
small HTTP server that serves photos and firmware images (and pairs frames), a paho client
publishing as the hub would, the hub's signing key for firmware commands, and the frame program as a
subprocess whose JSON event lines tests wait on.

Everything here is synchronous (threads and queues): the frame is a separate process, so the
tests need no event loop of their own.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import msgspec
import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion
from PIL import Image

import wire
from tests.harness import ROOT
from tests.harness.broker import Broker

WAIT_S = 15.0
FRAME_TOKEN = "frame-token"
ADMIN_TOKEN = "admin-token"

Event = dict[str, Any]


def jpeg(color: tuple[int, int, int], size: tuple[int, int] = (240, 180)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


@dataclass(frozen=True)
class FirmwareRequest:
    """One firmware download as the server saw it: the ``Range`` asked for, the status
    answered, the bytes of the body sent."""

    firmware_id: str
    range: str | None
    status: int
    sent: int


@dataclass
class PhotoServer:
    """The hub's HTTP side as far as a frame sees it: frame-sized downloads behind the
    frame's token (ETag ``"<sha256>"``), firmware images behind it too (``Range``: 206 with
    the rest), and pairing behind an admin token (handing out ``public_key``).

    ``cut_firmware``: that many next firmware responses stop halfway and close the
    connection. ``hold_firmware``: while set to an unset event, firmware responses send
    half, then wait for the event before sending the rest."""

    mqtt_port: int
    photos: dict[str, bytes] = field(default_factory=dict)
    downloads: list[str] = field(default_factory=list)
    pairings: list[dict[str, Any]] = field(default_factory=list)
    firmware: dict[str, bytes] = field(default_factory=dict)
    firmware_requests: list[FirmwareRequest] = field(default_factory=list)
    cut_firmware: int = 0
    hold_firmware: threading.Event | None = None
    public_key: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def add_firmware(self, firmware_id: str, data: bytes) -> str:
        """Serve ``data`` as firmware ``firmware_id``; returns its download URL."""
        self.firmware[firmware_id] = data
        return f"{self.url}/api/v1/firmware/{firmware_id}/download"

    def firmware_requests_of(self, firmware_id: str) -> list[FirmwareRequest]:
        with self.lock:
            return [r for r in self.firmware_requests if r.firmware_id == firmware_id]

    def add(self, file_id: str, data: bytes) -> str:
        """Serve ``data`` as ``file_id``; returns its SHA-256."""
        self.photos[file_id] = data
        return wire_sha(data)

    def download_url(self, file_id: str) -> str:
        return f"{self.url}/api/v1/files/download/{file_id}?size=frame"

    def downloads_of(self, file_id: str) -> int:
        with self.lock:
            return self.downloads.count(file_id)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _authorized(self, token: str) -> bool:
                if self.headers.get("Authorization") == f"Bearer {token}":
                    return True
                self._reply(401, b'{"title": "unauthorized"}', "application/problem+json")
                return False

            def _reply(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def _firmware(self, firmware_id: str) -> None:
                data = server.firmware.get(firmware_id)
                asked = self.headers.get("Range")
                if data is None:
                    self._reply(404, b'{"title": "not found"}', "application/problem+json")
                    return
                start = 0
                if asked is not None:
                    start = int(asked.removeprefix("bytes=").split("-", 1)[0])
                    if start >= len(data):
                        self._record(firmware_id, asked, 416, 0)
                        headers = {"Content-Range": f"bytes */{len(data)}"}
                        self._reply(416, b"{}", "application/problem+json", **headers)
                        return
                status = 206 if asked is not None else 200
                body = data[start:]
                with server.lock:
                    cut = server.cut_firmware > 0
                    server.cut_firmware -= 1 if cut else 0
                    hold = server.hold_firmware
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                half = len(body) // 2
                self._record(firmware_id, asked, status, half if cut else len(body))
                if cut or hold is not None:
                    self.wfile.write(body[:half])
                    self.wfile.flush()
                    if cut:
                        self.close_connection = True
                        return
                    assert hold is not None
                    hold.wait(WAIT_S)
                    body = body[half:]
                self.wfile.write(body)

            def _record(self, firmware_id: str, asked: str | None, status: int, sent: int) -> None:
                with server.lock:
                    server.firmware_requests.append(
                        FirmwareRequest(firmware_id, asked, status, sent)
                    )

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                firmware = path.removeprefix("/api/v1/firmware/").removesuffix("/download")
                if path.startswith("/api/v1/firmware/") and path.endswith("/download"):
                    if self._authorized(FRAME_TOKEN):
                        self._firmware(firmware)
                    return
                prefix = "/api/v1/files/download/"
                if not path.startswith(prefix) or not self._authorized(FRAME_TOKEN):
                    if not path.startswith(prefix):
                        self._reply(404, b"{}", "application/problem+json")
                    return
                file_id = path.removeprefix(prefix)
                with server.lock:
                    server.downloads.append(file_id)
                data = server.photos.get(file_id)
                if data is None:
                    self._reply(404, b'{"title": "not found"}', "application/problem+json")
                else:
                    self._reply(200, data, "image/jpeg", ETag=f'"{wire_sha(data)}"')

            def do_POST(self) -> None:
                if self.path != "/api/v1/devices" or not self._authorized(ADMIN_TOKEN):
                    return
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.pairings.append(body)
                    number = len(server.pairings)
                device_id = f"sim-{number}"
                reply = {
                    "device_id": device_id,
                    "token": FRAME_TOKEN,
                    "name": body["name"],
                    "model": body["model"],
                    "mqtt": {
                        "host": "127.0.0.1",
                        "port": server.mqtt_port,
                        "client_id": f"frame-{device_id}",
                        "username": device_id,
                        "password": "secret",
                    },
                    "public_key": server.public_key,
                    "paired_at": "2025-01-01T00:00:00Z",
                }
                self._reply(201, json.dumps(reply).encode(), "application/json")

        return Handler


def wire_sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextmanager
def photo_server(mqtt_port: int) -> Iterator[PhotoServer]:
    server = PhotoServer(mqtt_port=mqtt_port)
    http = ThreadingHTTPServer(("127.0.0.1", 0), server.handler())
    server.url = f"http://127.0.0.1:{http.server_address[1]}"
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        http.shutdown()
        http.server_close()
        thread.join(WAIT_S)


class HubSigner:
    """The hub's Ed25519 key for firmware commands (as ``actors.ota`` signs them)."""

    def __init__(self) -> None:
        self._key = Ed25519PrivateKey.generate()
        raw = self._key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.public_key = base64.b64encode(raw).decode()

    def sign(self, frame_id: str, command_id: str, command: str, args: wire.CommandArgs) -> str:
        message = wire.signed_command_bytes(frame_id, command_id, command, args)
        return base64.b64encode(self._key.sign(message)).decode()

    def command(
        self, frame_id: str, command_id: str, name: wire.CommandName, **args: Any
    ) -> wire.FrameCommand:
        """A firmware command for ``frame_id`` signed with this key."""
        unsigned = wire.CommandArgs(**args)
        signature = self.sign(frame_id, command_id, name, unsigned)
        return wire.FrameCommand(
            command_id=command_id,
            command=name,
            args=msgspec.structs.replace(unsigned, signature=signature),
            timestamp="2025-01-01T00:00:00Z",
        )


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool


class HubClient:
    """A paho client that publishes as the hub would and records what frames publish."""

    def __init__(self, port: int, subscribe: str = "frames/#", *, session: str = "") -> None:
        """``session``: a client id with a persistent session (the broker queues QoS 1 and
        2 messages while the client is away, and it reconnects on its own)."""
        self.port = port
        self._messages: list[Received] = []
        self._changed = threading.Condition()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=session, clean_session=not session
        )
        self._client.reconnect_delay_set(0.1, 0.5)
        self._client.on_message = self._on_message
        subscribed = threading.Event()
        self._client.on_subscribe = lambda *_: subscribed.set()
        connected = threading.Event()
        self._client.on_connect = lambda *_: connected.set()
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()
        assert connected.wait(WAIT_S), "the hub client could not connect"
        self._client.subscribe(subscribe, qos=2)
        assert subscribed.wait(WAIT_S), "the hub client could not subscribe"

    def _on_message(self, _client: Any, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._changed:
            received = Received(message.topic, bytes(message.payload), bool(message.retain))
            self._messages.append(received)
            self._changed.notify_all()

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(WAIT_S)
        assert info.is_published(), f"publishing on {topic} timed out"

    def send(
        self, topic: str, message: msgspec.Struct, *, qos: int = 1, retain: bool = False
    ) -> None:
        self.publish(topic, msgspec.json.encode(message), qos=qos, retain=retain)

    def mark(self) -> int:
        """A bookmark for ``wait_for(after=...)``: how many messages have arrived so far."""
        with self._changed:
            return len(self._messages)

    def wait_for(
        self, predicate: Callable[[Received], bool], what: str, *, after: int = 0
    ) -> Received:
        """The first message (already received or coming) that satisfies ``predicate``,
        among those that arrived after the bookmark ``after``."""
        with self._changed:
            found: list[Received] = []

            def seen() -> bool:
                found[:] = [m for m in self._messages[after:] if predicate(m)]
                return bool(found)

            if not self._changed.wait_for(seen, WAIT_S):
                topics = [m.topic for m in self._messages[-20:]]
                raise AssertionError(f"no MQTT message: {what} (last topics: {topics})")
            return found[0]

    def statuses(self, frame_id: str) -> list[wire.FrameStatus]:
        topic = wire.frame_topic(frame_id, "status")
        with self._changed:
            payloads = [m.payload for m in self._messages if m.topic == topic]
        return [msgspec.json.decode(p, type=wire.FrameStatus) for p in payloads]

    def received(self, topic: str) -> list[bytes]:
        with self._changed:
            return [m.payload for m in self._messages if m.topic == topic]

    def wait_status(self, frame_id: str, what: str, **fields: Any) -> wire.FrameStatus:
        topic = wire.frame_topic(frame_id, "status")

        def matches(message: Received) -> bool:
            if message.topic != topic:
                return False
            status = msgspec.json.decode(message.payload, type=wire.FrameStatus)
            return all(getattr(status, name) == value for name, value in fields.items())

        found = self.wait_for(matches, what)
        return msgspec.json.decode(found.payload, type=wire.FrameStatus)

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


class FrameProcess:
    """``python run.py frame|simulate ... --events`` with its event lines collected."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        self.command = args[0]
        self.events: list[Event] = []
        self._changed = threading.Condition()
        self._log_path = log_path
        self._log = open(log_path, "a")  # noqa: SIM115 - closed in wait/kill
        self.process = subprocess.Popen(
            [sys.executable, "run.py", *args, "--events", "--log-level", "INFO"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("FRAMEHUB_")},
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            event = json.loads(line)
            with self._changed:
                self.events.append(event)
                self._changed.notify_all()

    def wait_event(self, what: str, /, **fields: Any) -> Event:
        """The first event whose fields equal ``fields`` (already printed or coming)."""
        return self.wait_events(what, 1, **fields)[0]

    def wait_events(self, what: str, count: int, /, **fields: Any) -> list[Event]:
        """The first ``count`` events whose fields equal ``fields``."""
        return self._wait(what, count, lambda event: _matches(event, fields))

    def wait_until(self, what: str, predicate: Callable[[Event], bool]) -> Event:
        """The first event satisfying ``predicate`` (already printed or coming)."""
        return self._wait(what, 1, predicate)[0]

    def _wait(self, what: str, count: int, predicate: Callable[[Event], bool]) -> list[Event]:
        with self._changed:
            found: list[Event] = []

            def seen() -> bool:
                found[:] = [event for event in self.events if predicate(event)]
                return len(found) >= count

            if not self._changed.wait_for(seen, WAIT_S):
                tail = self._log_path.read_text()[-3000:]
                raise AssertionError(f"no event: {what}; events: {self.events[-15:]}\nlog:\n{tail}")
            return found[:count]

    def of(self, **fields: Any) -> list[Event]:
        with self._changed:
            return [e for e in self.events if _matches(e, fields)]

    def stop(self) -> int:
        """SIGTERM, as a service manager would; the exit status."""
        self.process.send_signal(signal.SIGTERM)
        return self._exit_status()

    def kill(self) -> None:
        """A power cut: SIGKILL, nothing runs afterwards."""
        self.process.kill()
        self._exit_status()

    def _exit_status(self) -> int:
        try:
            return self.process.wait(WAIT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"{self.command} did not stop; killed") from None
        finally:
            self._log.close()

    def __enter__(self) -> FrameProcess:
        return self

    def __exit__(self, *_: object) -> None:
        """Whatever happened in the test, nothing is left running."""
        if self.process.poll() is None:
            self.kill()


def _matches(event: Event, fields: dict[str, Any]) -> bool:
    return all(event.get(name) == value for name, value in fields.items())


def frame_args(
    device_id: str,
    broker: Broker,
    server: PhotoServer,
    data_dir: Path,
    *extra: str,
) -> list[str]:
    return [
        "frame",
        "--device-id",
        device_id,
        "--token",
        FRAME_TOKEN,
        "--mqtt-username",
        device_id,
        "--mqtt-password",
        "secret",
        "--hub",
        server.url,
        "--mqtt-port",
        str(broker.port),
        "--data-dir",
        str(data_dir),
        "--width",
        "160",
        "--height",
        "100",
        "--heartbeat",
        "1",
        *extra,
    ]


ROTATE_HOURLY = wire.DisplaySettings(interval_s=3600)
"""Slow enough that no photo changes during a test unless the test makes it."""


def make_sync(
    frame_id: str,
    server: PhotoServer,
    photos: list[tuple[str, str]],
    *,
    version: int,
    album_ids: list[str] | None = None,
    wrong_sha256: frozenset[str] = frozenset(),
    display: wire.DisplaySettings = ROTATE_HOURLY,
    panel: tuple[int, int] = (320, 200),
) -> wire.FrameSync:
    """A sync of ``(file_id, album_id)`` photos served by ``server``; ``wrong_sha256``
    names photos whose announced hash does not match their bytes."""
    entries = [
        wire.SyncPhoto(
            file_id=file_id,
            album_id=album_id,
            sha256="0" * 64 if file_id in wrong_sha256 else wire_sha(server.photos[file_id]),
            url=server.download_url(file_id),
        )
        for file_id, album_id in photos
    ]
    return wire.FrameSync(
        frame_id=frame_id,
        photos=entries,
        total_photos=len(entries),
        timestamp="2025-01-01T00:00:00Z",
        version=version,
        album_ids=album_ids if album_ids is not None else sorted({a for _, a in photos}),
        display=display,
        heartbeat_interval_s=1,
        panel_width=panel[0],
        panel_height=panel[1],
    )
