"""Telemetry ingest: samples stored per second from 50 frames through Mosquitto (QoS 1), next
to the raw ceiling measured in the same run.

``python run.py bench telemetry [--json]`` or ``python -m bench.telemetry [--json]``.

The hub runs in this process (``actors.serve`` on a temporary data directory, its managed
Mosquitto as a child, default settings). ``FRAMES`` frames are paired over HTTP; their MQTT
sides run in one child process, a publisher of its own (a minimal MQTT 3.1.1 client on asyncio
streams), so that what publishing costs is not charged to the hub's process — it still shares
this machine's cores with the hub and Mosquitto. Each frame connects with its own pairing
credentials and publishes telemetry messages shaped like the frame program's
(``temperature_c``, ``brightness``, ``wifi_rssi``, ``free_bytes``; a timestamp each) at QoS 1.

The same stream (``SAMPLES`` samples, the same connections, payloads and pacing) is published
in two kinds of pass, ``ROUNDS`` times each, in the order ceiling, hub, hub, ceiling, ... so
that a change in the machine's load during the run hits both alike:

* **ceiling**: on ``frames/<id>/bench-telemetry``, a leaf the hub does not subscribe to. A bare
  aiomqtt subscriber in this process (the hub's MQTT credentials, the bridge's client settings,
  the messages read through the same asyncio bridge in batches) counts them and does nothing
  else. ``ceiling_per_s`` = samples counted / (first publish → last message counted).
* **hub**: on ``frames/<id>/telemetry``: the hub's bridge decodes and checks them, the
  telemetry actor validates, buffers and evaluates one alert rule (``temperature_c``, every
  frame, never breaching) on them and group-commits them. ``samples_per_s`` = samples stored
  (the actor's committed count, checked against the ``samples`` table) / (first publish →
  commit of the last one).

Rates are over all passes of a kind together; ``ratio`` = ``samples_per_s`` /
``ceiling_per_s``; ``lost`` = samples published to the hub - samples stored (the broker
acknowledged every one). **Pacing**: MQTT has no flow control from a subscriber back to the
publishers, and Mosquitto drops QoS 1 messages for a subscriber past ``max_queued_messages``
(Mosquitto's default is 1,000; the hub's managed broker allows 200,000 or 64 MiB per client);
a publisher much faster than the subscriber loses messages at the broker, whichever the
subscriber. So the publisher keeps at most ``CREDIT`` messages on their way
(published, not yet taken by the receiver: the counter of the ceiling subscriber, the
telemetry actor's taken samples), and each pass runs at its receiver's own pace: both figures
are sustained rates with nothing lost on the way.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import msgspec
import psutil
import trio

from actors.mqtt import (
    BrokerAddress,
    GetBrokerProcess,
    GetMqttStats,
    MqttClient,
    MqttStats,
)
from actors.telemetry import GetTelemetryStats, TelemetryStats
from bench._report import Figure, Report, Target, run_cli
from bench.e2e import (
    HUB_SETTINGS,
    ROOT,
    BenchHub,
    auth,
    cpu_seconds,
    run_until_interrupted,
    running_hub,
    until_ready,
)

FRAMES = 50
SAMPLES = 60_000
"""Samples per pass (each message carries ``len(METRICS)``)."""
ROUNDS = 2
METRICS = ("temperature_c", "brightness", "wifi_rssi", "free_bytes")
WINDOW = 64
"""QoS 1 publishes a frame's connection has in flight at most."""
CREDIT = 800
"""Messages published and not yet taken by the receiver, at most (all frames together):
fewer than Mosquitto queues for one subscriber even with its default
``max_queued_messages`` (1,000), so the broker never has to drop one."""
CREDIT_POLL_S = 0.01
CEILING_LEAF = "bench-telemetry"
HUB_LEAF = "telemetry"
IDLE_S = 5.0
"""A pass ends this long after its last progress, even if short of its count."""
CONNECT_WAIT_S = 60.0
POLL_S = 0.05
TARGET_RATIO = 0.8


def _progress(text: str) -> None:
    print(f"[bench telemetry] {text}", file=sys.stderr, flush=True)


# -- the publisher, in a child process ------------------------------------------------------------


class FrameLogin(msgspec.Struct, frozen=True, kw_only=True):
    device_id: str
    client_id: str
    username: str
    password: str


class PublisherSpec(msgspec.Struct, frozen=True, kw_only=True):
    host: str
    port: int
    frames: list[FrameLogin]
    messages_per_frame: int
    window: int
    credit: int


class PassReport(msgspec.Struct, frozen=True, kw_only=True):
    """What the publisher did in one pass: Unix times of the first write and of the last
    acknowledgement."""

    leaf: str
    published: int
    started: float
    acked: float


def _text(value: str) -> bytes:
    data = value.encode()
    return len(data).to_bytes(2, "big") + data


def _packet(kind: int, body: bytes) -> bytes:
    """An MQTT packet: fixed header (type and flags, remaining length) and ``body``."""
    length, encoded = len(body), bytearray()
    while True:
        digit, length = length % 128, length // 128
        encoded.append(digit | (0x80 if length else 0))
        if not length:
            break
    return bytes([kind]) + bytes(encoded) + body


def connect_packet(client_id: str, username: str, password: str) -> bytes:
    flags = 0x80 | 0x40 | 0x02  # username, password, clean session
    header = _text("MQTT") + bytes([4, flags]) + (60).to_bytes(2, "big")
    return _packet(0x10, header + _text(client_id) + _text(username) + _text(password))


def publish_packet(topic: bytes, packet_id: int, payload: bytes) -> bytes:
    """PUBLISH at QoS 1 (flags 0b0010)."""
    return _packet(
        0x32, len(topic).to_bytes(2, "big") + topic + packet_id.to_bytes(2, "big") + payload
    )


def _stamp(epoch: float) -> str:
    return (
        datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def telemetry_payloads(device_id: str, count: int, base: float) -> list[bytes]:
    """``count`` messages like the frame program's, a second apart from ``base``."""
    encode = msgspec.json.encode
    payloads = []
    for i in range(count):
        metrics = {
            "temperature_c": 24.0 + (i % 40) / 10,
            "brightness": float(i % 100),
            "wifi_rssi": -55.0 - (i % 20),
            "free_bytes": 8.0e9 - i * 4096.0,
        }
        payloads.append(
            encode({"frame_id": device_id, "metrics": metrics, "timestamp": _stamp(base + i)})
        )
    return payloads


class _Credit:
    """End-to-end pacing: at most ``limit`` messages published and not yet taken by the
    receiver, whose progress the benchmark reports (``credit <messages>`` on stdin)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.published = 0
        self.received = 0
        self._changed = asyncio.Event()

    def exhausted(self) -> bool:
        return self.published >= self.received + self.limit

    async def wait(self) -> None:
        while self.exhausted():
            self._changed.clear()
            await self._changed.wait()

    def update(self, received: int) -> None:
        self.received = received
        self._changed.set()


class _Connection:
    """One frame's MQTT connection: QoS 1 publishes with a window of unacknowledged ones."""

    def __init__(self, login: FrameLogin, reader: asyncio.StreamReader, writer: Any) -> None:
        self.login = login
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int, login: FrameLogin, wait_s: float) -> _Connection:
        """Connect, retrying while the broker does not know the frame yet (its password file
        is reloaded after each pairing)."""
        deadline = time.monotonic() + wait_s
        while True:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(connect_packet(login.client_id, login.username, login.password))
            await writer.drain()
            ack = await reader.readexactly(4)
            if ack[0] == 0x20 and ack[3] == 0:
                return cls(login, reader, writer)
            writer.close()
            if time.monotonic() > deadline:
                raise ConnectionRefusedError(f"{login.username}: CONNACK code {ack[3]}")
            await asyncio.sleep(0.2)

    async def publish_all(self, packets: list[bytes], window: int, credit: _Credit) -> None:
        inflight = 0
        room = asyncio.Event()
        room.set()

        async def read_acks() -> None:
            nonlocal inflight
            pending, buffer = len(packets), b""
            try:
                while pending:
                    chunk = await self.reader.read(1 << 16)
                    if not chunk:
                        raise ConnectionError(f"{self.login.username}: the broker closed")
                    buffer += chunk
                    whole = len(buffer) // 4 * 4
                    acks, buffer = buffer[:whole], buffer[whole:]
                    if any(acks[i] != 0x40 for i in range(0, len(acks), 4)):
                        raise ConnectionError(f"{self.login.username}: not a PUBACK: {acks[:8]!r}")
                    pending -= len(acks) // 4
                    inflight -= len(acks) // 4
                    room.set()
            finally:
                room.set()  # a failure must not leave the writer waiting

        reading = asyncio.ensure_future(read_acks())
        transport = self.writer.transport
        for packet in packets:
            if credit.exhausted():
                await credit.wait()
            while inflight >= window:
                room.clear()
                await room.wait()
                if reading.done():
                    reading.result()
                    raise ConnectionError(f"{self.login.username}: acknowledgements ended early")
            self.writer.write(packet)
            credit.published += 1
            inflight += 1
            if transport.get_write_buffer_size() > 1 << 16:
                await self.writer.drain()
        await reading

    def close(self) -> None:
        self.writer.write(b"\xe0\x00")  # DISCONNECT
        self.writer.close()


async def _publisher(spec: PublisherSpec) -> None:
    loop = asyncio.get_running_loop()
    commands = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
    connections = await asyncio.gather(
        *(_Connection.open(spec.host, spec.port, login, CONNECT_WAIT_S) for login in spec.frames)
    )
    _say({"ready": len(connections)})
    running: asyncio.Task[None] | None = None
    credit = _Credit(spec.credit)
    while words := (await commands.readline()).decode().split():
        if words[0] == "credit":
            credit.update(int(words[1]))
        elif words[0] == "go":
            credit = _Credit(spec.credit)
            running = asyncio.ensure_future(
                _publish_pass(spec, connections, words[1], float(words[2]), credit)
            )
        else:
            break
    if running is not None and not running.done():
        running.cancel()
    for connection in connections:
        connection.close()


async def _publish_pass(
    spec: PublisherSpec, connections: list[_Connection], leaf: str, base: float, credit: _Credit
) -> None:
    work = []
    for connection in connections:
        device_id = connection.login.device_id
        topic = f"frames/{device_id}/{leaf}".encode()
        payloads = telemetry_payloads(device_id, spec.messages_per_frame, base)
        work.append([publish_packet(topic, i % 65535 + 1, p) for i, p in enumerate(payloads)])
    started = time.time()
    await asyncio.gather(
        *(c.publish_all(w, spec.window, credit) for c, w in zip(connections, work, strict=True))
    )
    acked = time.time()
    report = PassReport(leaf=leaf, published=sum(map(len, work)), started=started, acked=acked)
    _say(msgspec.to_builtins(report))


def _say(message: Any) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def publisher_main() -> None:
    """The child process: reads its ``PublisherSpec`` as the first line of stdin, then
    ``go <leaf> <base time>`` and ``credit <messages received>`` commands; answers
    ``{"ready": n}`` and one ``PassReport`` per pass on stdout."""
    spec = msgspec.json.decode(sys.stdin.buffer.readline(), type=PublisherSpec)
    asyncio.run(_publisher(spec))


class Publisher:
    """The publisher child as the benchmark drives it."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self._buffer = b""

    async def send(self, line: str) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send_all(line.encode() + b"\n")

    async def read(self) -> Any:
        assert self.process.stdout is not None
        while b"\n" not in self._buffer:
            chunk = await self.process.stdout.receive_some()
            if not chunk:
                raise RuntimeError("the publisher exited; see its log")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    async def run_pass(
        self, leaf: str, messages_per_frame: int, received: Callable[[], Awaitable[int]]
    ) -> PassReport:
        """Publish a pass, telling the publisher how many messages ``received`` says the
        receiver has taken so far until it reports the pass done."""
        # Timestamps a second apart, the last one a minute ago: all valid sample times.
        await self.send(f"go {leaf} {time.time() - messages_per_frame - 60:.3f}")
        report: list[PassReport] = []

        async def finish() -> None:
            report.append(msgspec.convert(await self.read(), PassReport))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(finish)
            told = 0
            while not report:
                count = await received()
                if count != told:
                    told = count
                    await self.send(f"credit {count}")
                await trio.sleep(CREDIT_POLL_S)
        return report[0]


@asynccontextmanager
async def publishing(spec: PublisherSpec, log: Path) -> AsyncIterator[Publisher]:
    command = [sys.executable, "-c", "from bench.telemetry import publisher_main; publisher_main()"]
    with log.open("wb") as stderr:
        process = await trio.lowlevel.open_process(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, cwd=ROOT
        )
    publisher = Publisher(process)
    try:
        await publisher.send(msgspec.json.encode(spec).decode())
        with trio.fail_after(CONNECT_WAIT_S + 10):
            ready = await publisher.read()
        _progress(f"{ready['ready']} frames connected to the broker")
        yield publisher
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                with trio.move_on_after(5):
                    await publisher.send("quit")
                    await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()


# -- the two receivers ---------------------------------------------------------------------------


@dataclass
class Received:
    """What a receiver got of one pass: samples, and the Unix time it had the last."""

    samples: int = 0
    last_at: float = 0.0


async def _ceiling_client(address: BrokerAddress) -> aiomqtt.Client:
    return MqttClient(
        "127.0.0.1",
        address.port,
        username=address.hub_username,
        password=address.hub_password,
        identifier=f"bench-ceiling-{os.getpid()}",
        max_inflight_messages=100,
        max_queued_incoming_messages=10_000,
        timeout=10,
    )


async def ceiling_pass(
    hub: BenchHub, publisher: Publisher, messages_per_frame: int, expected: int
) -> tuple[PassReport, Received]:
    """The bare subscriber counts the stream on ``CEILING_LEAF``."""
    bridge = hub.system.asyncio
    client = await bridge.run(_ceiling_client, await hub.broker())
    got = Received()
    async with bridge.context(client):
        await bridge.run(client.subscribe, f"frames/+/{CEILING_LEAF}", 1)

        async def count() -> None:
            async for batch in bridge.batches(client.messages, 256):
                got.samples += len(batch) * len(METRICS)
                got.last_at = time.time()

        async def received() -> int:
            return got.samples // len(METRICS)

        async def progress() -> int:
            return got.samples

        async with trio.open_nursery() as nursery:
            nursery.start_soon(count)
            report = await publisher.run_pass(CEILING_LEAF, messages_per_frame, received)
            await _settle(progress, expected)
            nursery.cancel_scope.cancel()
    return report, got


async def telemetry_stats(hub: BenchHub) -> TelemetryStats:
    stats = await hub.refs.telemetry.ask(GetTelemetryStats())
    return stats


async def hub_pass(
    hub: BenchHub, publisher: Publisher, messages_per_frame: int, expected: int
) -> tuple[PassReport, Received, TelemetryStats]:
    """The hub takes the stream on ``frames/<id>/telemetry``; its progress is what the
    telemetry actor has taken (stored or buffered, or dropped)."""
    before = await telemetry_stats(hub)
    taken_before = before.ingested + sum(before.dropped.values())
    got = Received()
    latest = [before]

    async def refresh() -> TelemetryStats:
        stats = await telemetry_stats(hub)
        got.samples = stats.stored - before.stored
        got.last_at = stats.last_flush_at or 0.0
        latest[0] = stats
        return stats

    async def received() -> int:
        stats = await refresh()
        return (stats.ingested + sum(stats.dropped.values()) - taken_before) // len(METRICS)

    async def progress() -> int:
        await refresh()
        return got.samples

    report = await publisher.run_pass(HUB_LEAF, messages_per_frame, received)
    await _settle(progress, expected)
    return report, got, latest[0]


async def _settle(progress: Callable[[], Awaitable[int]], expected: int) -> None:
    """Wait until ``progress()`` reaches ``expected`` or stops moving for ``IDLE_S``."""
    last, moved = await progress(), trio.current_time()
    while (now := await progress()) < expected:
        if now != last:
            last, moved = now, trio.current_time()
        elif trio.current_time() - moved > IDLE_S:
            _progress(f"gave up waiting: {now} of {expected} samples after {IDLE_S:g} s idle")
            return
        await trio.sleep(POLL_S)


# -- the measurement -----------------------------------------------------------------------------


async def pair_frames(hub: BenchHub, admin: str, frames: int) -> list[FrameLogin]:
    logins = []
    for k in range(frames):
        body = {
            "name": f"bench-{k}",
            "model": "FH-10",
            "hw_version": "rev2",
            "width": 1024,
            "height": 600,
            "orientation": "landscape",
        }
        while (
            reply := await hub.http.post("/api/v1/devices", json=body, headers=auth(admin))
        ).status_code == 503:
            await until_ready(hub)
        paired = reply.raise_for_status().json()
        mqtt = paired["mqtt"]
        logins.append(
            FrameLogin(
                device_id=paired["device_id"],
                client_id=mqtt["client_id"],
                username=mqtt["username"],
                password=mqtt["password"],
            )
        )
    return logins


@dataclass
class Pass:
    """One pass as measured: what the publisher did, what the receiver got, CPU used."""

    name: str
    report: PassReport
    got: Received
    cpu_s: dict[str, float]
    """CPU seconds of the hub's process, Mosquitto and the publisher over the pass."""
    wall_s: float

    @property
    def seconds(self) -> float:
        """From the first publish to the receiver's last sample."""
        return max(self.got.last_at - self.report.started, 1e-9)


@dataclass
class Results:
    frames: int
    published: int
    """Samples per pass."""
    passes: list[Pass]
    stats: TelemetryStats
    bridge: tuple[MqttStats, MqttStats]
    table_rows: int
    pairing_s: float

    def of(self, name: str) -> list[Pass]:
        return [p for p in self.passes if p.name == name]


async def measure(directory: Path, frames: int, samples: int, rounds: int) -> Results:
    per_frame = max(1, -(-samples // (frames * len(METRICS))))
    published = per_frame * frames * len(METRICS)
    async with running_hub(directory / "hub", **HUB_SETTINGS) as hub:
        admin = await hub.new_user("bench-admin", admin=True)
        rule = {
            "metric": "temperature_c",
            "comparison": ">",
            "threshold": 1000.0,
            "for_seconds": 60.0,
            "severity": "warning",
        }
        reply = await hub.http.post("/api/v1/alert-rules", json=rule, headers=auth(admin))
        reply.raise_for_status()
        _progress(f"pairing {frames} frames")
        started = time.perf_counter()
        logins = await pair_frames(hub, admin, frames)
        pairing_s = time.perf_counter() - started
        address = await hub.broker()
        spec = PublisherSpec(
            host="127.0.0.1",
            port=address.port,
            frames=logins,
            messages_per_frame=per_frame,
            window=WINDOW,
            credit=CREDIT,
        )
        broker = await hub.refs.broker.ask(GetBrokerProcess())
        processes = {"hub": psutil.Process(), "mosquitto": psutil.Process(broker.pid)}
        passes: list[Pass] = []
        before_bridge = await mqtt_stats(hub)
        async with publishing(spec, directory / "publisher.log") as publisher:
            processes["publisher"] = psutil.Process(publisher.process.pid)
            # ceiling, hub, hub, ceiling, ...: a drift in the machine's load hits both alike.
            order = [
                ("ceiling", "hub") if k % 2 == 0 else ("hub", "ceiling") for k in range(rounds)
            ]
            for name in (name for pair in order for name in pair):
                _progress(f"{name} pass: {published:,} samples from {frames} frames")
                cpu = {key: cpu_seconds(p) for key, p in processes.items()}
                clock = time.perf_counter()
                if name == "ceiling":
                    report, got = await ceiling_pass(hub, publisher, per_frame, published)
                else:
                    report, got, stats = await hub_pass(hub, publisher, per_frame, published)
                used = {key: cpu_seconds(p) - cpu[key] for key, p in processes.items()}
                done = Pass(name, report, got, used, time.perf_counter() - clock)
                passes.append(done)
                _progress(f"{name}: {got.samples:,} samples, {got.samples / done.seconds:,.0f}/s")
        after_bridge = await mqtt_stats(hub)
        row = await hub.store.fetch_one("SELECT count(*) FROM samples")
        assert row is not None
    return Results(
        frames=frames,
        published=published,
        passes=passes,
        stats=stats,
        bridge=(before_bridge, after_bridge),
        table_rows=int(row[0]),
        pairing_s=pairing_s,
    )


async def mqtt_stats(hub: BenchHub) -> MqttStats:
    stats = await hub.refs.mqtt.ask(GetMqttStats())
    return stats


def _rate(passes: list[Pass]) -> float:
    """Samples per second over the passes together."""
    return round(sum(p.got.samples for p in passes) / sum(p.seconds for p in passes), 1)


def _cpu_pct(passes: list[Pass], process: str) -> float:
    return round(100 * sum(p.cpu_s[process] for p in passes) / sum(p.wall_s for p in passes), 1)


def main(
    json_output: bool, *, frames: int = FRAMES, samples: int = SAMPLES, rounds: int = ROUNDS
) -> dict[str, Figure]:
    """Measure, print the table (and the JSON last line); return the figures."""
    with tempfile.TemporaryDirectory(prefix="framehub-bench-telemetry-") as tmp:
        got = run_until_interrupted(measure, Path(tmp), frames, samples, rounds)
    hub, ceiling = got.of("hub"), got.of("ceiling")
    report = Report(f"framehub telemetry ingest: {frames} frames, QoS 1", peer_name="ceiling")
    report.compare(
        "samples stored / ceiling received",
        "samples/s",
        ("samples_per_s", _rate(hub)),
        ("ceiling_per_s", _rate(ceiling)),
        "ratio",
        Target(">=", TARGET_RATIO, of_peer=True),
    )
    published = got.published * len(hub)
    stored = sum(p.got.samples for p in hub)
    report.single(
        "samples lost (published - stored)", "samples", "lost", published - stored, Target("<=", 0)
    )
    before, after = got.bridge
    hub_publish = published / sum(p.report.acked - p.report.started for p in hub)
    ceiling_publish = (
        got.published * len(ceiling) / sum(p.report.acked - p.report.started for p in ceiling)
    )
    rows: list[tuple[str, str, str, Figure]] = [
        ("samples published to the hub", "samples", "published", published),
        ("samples stored", "samples", "stored", stored),
        ("rows in the samples table", "samples", "table_rows", got.table_rows),
        (
            "ceiling passes: samples not received",
            "samples",
            "ceiling_lost",
            got.published * len(ceiling) - sum(p.got.samples for p in ceiling),
        ),
        ("publisher acks, hub passes", "samples/s", "publish_per_s", round(hub_publish, 1)),
        (
            "publisher acks, ceiling passes",
            "samples/s",
            "ceiling_publish_per_s",
            round(ceiling_publish, 1),
        ),
        ("flushes", "flushes", "flushes", got.stats.flushes),
        (
            "samples per flush, mean",
            "samples",
            "samples_per_flush",
            round(got.stats.stored / max(got.stats.flushes, 1), 1),
        ),
        ("hub process CPU, hub passes", "% of a CPU", "hub_cpu_pct", _cpu_pct(hub, "hub")),
        (
            "hub process CPU, ceiling passes",
            "% of a CPU",
            "ceiling_cpu_pct",
            _cpu_pct(ceiling, "hub"),
        ),
        (
            "Mosquitto CPU, hub passes",
            "% of a CPU",
            "mosquitto_cpu_pct",
            _cpu_pct(hub, "mosquitto"),
        ),
        (
            "publisher CPU, hub passes",
            "% of a CPU",
            "publisher_cpu_pct",
            _cpu_pct(hub, "publisher"),
        ),
        (
            "inbound MQTT dropped by the bridge",
            "messages",
            "bridge_dropped",
            sum(after.dropped.values()) - sum(before.dropped.values()),
        ),
        ("pairing the frames", "s", "pairing_s", round(got.pairing_s, 1)),
        ("frames", "frames", "frames", got.frames),
        ("rounds (a ceiling and a hub pass each)", "rounds", "rounds", rounds),
    ]
    for row in rows:
        report.single(*row)
    per_round = [
        f"{h.got.samples / h.seconds / (c.got.samples / c.seconds):.3f}"
        for h, c in zip(hub, ceiling, strict=True)
    ]
    report.note(
        f"{got.published:,} samples per pass, {len(METRICS)} per message; passes in the order"
        f" ceiling, hub, hub, ceiling, ...; ratio per round: {', '.join(per_round)}"
    )
    report.note(
        f"the publisher (a child process) keeps at most {CREDIT} messages on their way to the"
        " receiver, so Mosquitto never drops one and each pass"
        f" runs at its receiver's pace; {WINDOW} QoS 1 publishes in flight per frame at most"
    )
    report.note(
        f"{os.cpu_count()} CPUs for the hub (with the ceiling subscriber), Mosquitto and the"
        f" publisher; dropped by the telemetry actor: {got.stats.dropped or 'none'}"
    )
    return report.finish(json_output)


if __name__ == "__main__":
    run_cli("python -m bench.telemetry", __doc__, main)
