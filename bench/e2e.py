"""Upload to wall: a 12 MP photo uploaded to an album, until every one of 50 frames shows it.

``python run.py bench e2e [--json]`` or ``python -m bench.e2e [--json]``.

Everything runs on this machine and is started here: the hub in this process (``actors.serve``
on a temporary data directory, ports picked by the OS, its managed Mosquitto as a child) and
the frames in another (``run.py simulate --no-render --events``: full frames that skip only
writing their PNG). A user's album is assigned to every frame, and every frame has reported
``synced`` for that assignment, before anything is timed. One upload warms the hub up (its
time is reported apart); then, ``UPLOADS`` times in turn, a different 4000x3000 JPEG (colour
gradients plus noise) is uploaded into the album. Its time runs from just before the upload's
POST to the latest of the frames' first ``displayed`` event for that file (the simulator
stamps events with this machine's wall clock).

The floor, measured after each upload in the same run: one MQTT publish → receive through
the same broker (QoS 1, the hub's credentials, paho-mqtt in a thread) plus one HTTP download
of that photo's frame version (the uploader's token, ``size=frame&frame_id=``), the least a
hub has to do to tell a frame about a photo and hand it over. It is the median of the sums.
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx
import numpy as np
import psutil
import trio
from paho.mqtt.client import Client, MQTTMessage
from paho.mqtt.enums import CallbackAPIVersion
from PIL import Image

from actors import HubRefs, RunningHub, serve
from actors.accounts import CreateUser
from actors.http import GetHttpAddress
from actors.mqtt import BrokerAddress, GetBrokerAddress
from actors.store import Store
from bench._report import Figure, Report, Target, percentile, run_cli
from config import load_settings
from supervision import ActorSystem, State

FRAMES = 50
UPLOADS = 10
PHOTO_SIZE = (4000, 3000)
PHOTO_QUALITY = 90
WAIT_S = 120.0
"""Longest wait for one step: the fleet connected, synced, one photo on every frame."""
HUB_SETTINGS = {"HTTP__RATE_LIMIT_PER_MINUTE": "1000000"}
"""The benchmark's clients are few tokens making many requests; the limiter is not measured."""
ROOT = Path(__file__).resolve().parent.parent

Event = dict[str, Any]
T = TypeVar("T")


def _progress(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


def make_photo(seed: int) -> bytes:
    """A 4000x3000 JPEG: per channel a linear gradient in a random direction plus Gaussian
    noise (sigma 6), so that it compresses like a photo (about 2.5 MB), not like a flat image."""
    width, height = PHOTO_SIZE
    rng = np.random.default_rng(seed)
    x = np.linspace(-0.5, 0.5, width, dtype=np.float32)[None, :]
    y = np.linspace(-0.5, 0.5, height, dtype=np.float32)[:, None]
    channels = []
    for _ in range(3):
        dx, dy, centre = rng.uniform((-180.0, -180.0, 80.0), (180.0, 180.0, 170.0))
        noise = rng.normal(0.0, 6.0, (height, width)).astype(np.float32)
        channels.append(np.clip(centre + dx * x + dy * y + noise, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    Image.fromarray(np.dstack(channels)).save(buffer, "JPEG", quality=PHOTO_QUALITY)
    return buffer.getvalue()


# -- the hub, in this process --------------------------------------------------------------------


@dataclass(frozen=True)
class BenchHub:
    system: ActorSystem
    store: Store
    refs: HubRefs
    base_url: str
    http: httpx.AsyncClient

    async def new_user(self, name: str, *, admin: bool = False) -> str:
        """A user made by the accounts actor; its API token."""
        made = await self.refs.accounts.ask(CreateUser(name=name, admin=admin))
        return made.token

    async def broker(self) -> BrokerAddress:
        return await self.refs.broker.ask(GetBrokerAddress())


class HubHttp(Protocol):
    """A hub's API as helpers here use it: a hub in this process (``BenchHub``) or another."""

    @property
    def http(self) -> httpx.AsyncClient: ...


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@asynccontextmanager
async def running_hub(data_dir: Path, **settings: str) -> AsyncIterator[BenchHub]:
    """``actors.serve`` on ``data_dir`` with ``FRAMEHUB_<key>`` ``settings``, stopped at the
    end by SIGTERM (its graceful shut-down, which stops Mosquitto). While it runs, ``serve``
    owns SIGINT and SIGTERM: either stops the hub gracefully, and then the benchmark with
    KeyboardInterrupt, after the caller's clean-up (the simulator's) has run."""
    environ = {
        "FRAMEHUB_DATA_DIR": str(data_dir),
        "FRAMEHUB_HTTP__HOST": "127.0.0.1",
        "FRAMEHUB_HTTP__PORT": "0",
        "FRAMEHUB_MQTT__PORT": "0",
        "FRAMEHUB_LOG_LEVEL": "WARNING",
        **{f"FRAMEHUB_{key}": value for key, value in settings.items()},
    }
    hub_settings = load_settings(environ=environ)
    # aiomqtt warns whenever more than 10 publishes await their acknowledgement, which the
    # bridge's pipelined outbox (up to 20 in flight) does by design: not news here.
    logging.getLogger("mqtt").setLevel(logging.ERROR)
    started: list[RunningHub] = []
    ready = trio.Event()
    stopping = interrupted = False

    async def on_ready(hub: RunningHub) -> None:
        started.append(hub)
        ready.set()

    async with trio.open_nursery() as nursery:

        async def run() -> None:
            nonlocal interrupted
            await serve(hub_settings, on_ready=on_ready)
            if not stopping:  # a signal reached serve: stop what uses the hub
                interrupted = True
                nursery.cancel_scope.cancel()

        nursery.start_soon(run)
        with trio.fail_after(60):
            await ready.wait()
        running = started[0]
        system = running.system
        address = await running.refs.http.ask(GetHttpAddress())
        base_url = f"http://127.0.0.1:{address.port}"
        try:
            async with httpx.AsyncClient(base_url=base_url, timeout=60.0) as http:
                yield BenchHub(system, running.store, running.refs, base_url, http)
        except BaseException:
            # A signal stopping the hub makes the caller fail (the HTTP server stops first):
            # then let serve finish its graceful shut-down and report the interruption.
            if not (interrupted or system.snapshot().state in (State.STOPPING, State.STOPPED)):
                nursery.cancel_scope.cancel()  # the tree's clean-up still stops Mosquitto
                raise
            interrupted = True
        stopping = True
        if not interrupted:
            signal.raise_signal(signal.SIGTERM)
    if interrupted:
        raise KeyboardInterrupt


# -- the simulated frames, in a child process ------------------------------------------------------


class Simulator:
    """``run.py simulate`` as a child process and the event lines it printed."""

    def __init__(self, process: trio.Process, data_dir: Path, log: Path) -> None:
        self.process = process
        self.data_dir = data_dir
        self.log = log
        self.events: list[Event] = []
        self.ended = False
        self._changed = trio.Event()

    async def read(self) -> None:
        assert self.process.stdout is not None
        buffer = b""
        try:
            async for chunk in self.process.stdout:
                *lines, buffer = (buffer + chunk).split(b"\n")
                self.events.extend(json.loads(line) for line in lines if line.strip())
                self._changed.set()
                self._changed = trio.Event()
        finally:
            self.ended = True
            self._changed.set()

    async def first_per_frame(
        self, check: Callable[[Event], bool], frames: int, timeout: float = WAIT_S
    ) -> dict[str, float]:
        """Wait until ``frames`` frames printed an event ``check`` accepts; the time (``t``)
        of each frame's first such event."""
        firsts: dict[str, float] = {}
        seen = 0
        with trio.move_on_after(timeout):
            while True:
                for event in self.events[seen:]:
                    if check(event):
                        firsts.setdefault(event["frame_id"], event["t"])
                seen = len(self.events)
                if len(firsts) >= frames:
                    return firsts
                if self.ended:
                    raise RuntimeError(f"the simulator exited; its log: {self.log}")
                await self._changed.wait()
        raise RuntimeError(f"{len(firsts)} of {frames} frames within {timeout:g} s")

    def frame_ids(self) -> list[str]:
        pairings = json.loads((self.data_dir / "frames.json").read_text())
        return [pairing["device_id"] for pairing in pairings]


def event_is(
    name: str, *, file_id: str | None = None, frame_id: str | None = None, version: int = 0
) -> Callable[[Event], bool]:
    """Accepts events called ``name``, of ``file_id`` and ``frame_id`` when given, and with at
    least sync version ``version``."""

    def check(event: Event) -> bool:
        return (
            event["event"] == name
            and file_id in (None, event.get("file_id"))
            and frame_id in (None, event["frame_id"])
            and (event.get("sync_version") or 0) >= version
        )

    return check


@asynccontextmanager
async def simulate(
    hub_url: str, admin_token: str, data_dir: Path, frames: int, *options: str
) -> AsyncIterator[Simulator]:
    """``frames`` simulated frames (``--no-render --events`` and ``options``), stopped with
    SIGTERM (then SIGKILL) at the end, whatever ended the block."""
    command = [sys.executable, str(ROOT / "run.py"), "simulate", "--frames", str(frames)]
    command += ["--hub", hub_url, "--data-dir", str(data_dir), "--no-render", "--events"]
    environ = {**os.environ, "FRAMEHUB_TOKEN": admin_token}
    log = data_dir.with_suffix(".log")
    with log.open("wb") as stderr:
        process = await trio.lowlevel.open_process(
            [*command, *options], stdout=subprocess.PIPE, stderr=stderr, env=environ, cwd=ROOT
        )
    try:
        async with trio.open_nursery() as nursery:
            simulator = Simulator(process, data_dir, log)
            nursery.start_soon(simulator.read)
            yield simulator
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.terminate()
                with trio.move_on_after(10):
                    await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()


# -- MQTT as the hub's user ----------------------------------------------------------------------


class BrokerClient:
    """paho-mqtt on the managed broker with the hub's credentials, networking in its own
    thread. Counts the live (not retained) messages of ``topics`` by their last topic level;
    ``round_trip`` times a QoS 1 publish until the broker delivers it back."""

    def __init__(self, address: BrokerAddress, topics: tuple[str, ...] = ()) -> None:
        self.address = address
        self.probe = f"bench/probe/{os.getpid()}"
        self.topics = (self.probe, *topics)
        self._counts: Counter[str] = Counter()
        self._counting = threading.Lock()
        self._subscribed = threading.Event()
        self._echo = threading.Event()
        self._client = Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{os.getpid()}")
        self._client.username_pw_set(address.hub_username, address.hub_password)
        self._client.on_connect = lambda client, *_: client.subscribe([(t, 1) for t in self.topics])
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = self._on_message

    def _on_message(self, _: Client, __: object, message: MQTTMessage) -> None:
        if message.topic == self.probe:
            self._echo.set()
        elif not message.retain:
            with self._counting:
                self._counts[message.topic.rsplit("/", 1)[-1]] += 1

    def counts(self) -> Counter[str]:
        """Live messages so far by the last level of their topic."""
        with self._counting:
            return self._counts.copy()

    def open(self) -> None:
        """Connect and subscribe (blocking: call it in a thread)."""
        self._client.connect(self.address.host, self.address.port)
        self._client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("no subscription on the hub's broker within 10 s")
        self.round_trip()  # the first one also warms up the connection

    def round_trip(self) -> float:
        """Seconds from a publish to its delivery back (blocking: call it in a thread)."""
        self._echo.clear()
        started = time.perf_counter()
        self._client.publish(self.probe, b"ping", qos=1)
        if not self._echo.wait(10):
            raise RuntimeError("the broker did not deliver the probe within 10 s")
        return time.perf_counter() - started

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


# -- the measurement -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Timed:
    """One upload, in seconds from just before its POST."""

    file_id: str
    posted: float
    served: float
    """The hub recorded the last frame's download of its version (``photo_cache``)."""
    first: float
    wall: float


@dataclass
class Samples:
    uploads: list[Timed] = field(default_factory=list)
    floors: list[tuple[float, float]] = field(default_factory=list)
    """(MQTT round trip, frame version download) after each upload."""
    cold_s: float = 0.0
    assign_s: float = 0.0
    assign_retries: int = 0
    cpu_pct: tuple[float, float] = (0.0, 0.0)
    """Hub (this process) and simulator, in % of one CPU over the timed uploads."""

    def p50(self, figure: str) -> float:
        return round(percentile([getattr(timed, figure) for timed in self.uploads], 50), 3)


def run_until_interrupted(measure: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``trio.run(measure, *args)``; Ctrl-C (once everything has stopped) exits with 130."""
    try:
        return trio.run(measure, *args)
    except KeyboardInterrupt:
        _progress("interrupted: the hub, its Mosquitto and the simulator have stopped")
        raise SystemExit(130) from None


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def until_ready(hub: HubHttp, timeout: float = WAIT_S) -> None:
    with trio.fail_after(timeout):
        while True:
            if (await hub.http.get("/readyz")).status_code == 200:
                return
            await trio.sleep(0.2)


async def desired_version(hub: HubHttp, admin: str, frame_id: str, album_id: str) -> int:
    """The version of the frame's desired sync, once it shows ``album_id``."""
    with trio.fail_after(WAIT_S):
        while True:
            reply = await hub.http.get(f"/api/v1/devices/{frame_id}", headers=auth(admin))
            desired = reply.raise_for_status().json()["desired"]
            if album_id in desired["album_ids"]:
                return int(desired["version"])
            await trio.sleep(0.02)


async def assign(hub: BenchHub, admin: str, sim: Simulator, album_id: str) -> int:
    """Show the album on every frame, one frame at a time; return the 503 answers retried.

    Each assignment has the hub rewrite the broker's ACL and reload it with SIGHUP, and
    mosquitto loses a SIGHUP that arrives while it is still reloading (the hub then times
    out, restarts it, and answers 503). So the next assignment waits until this frame has
    reported ``synced``, which needs its subscription to the album, which mosquitto handles
    only after the reload is done.
    """
    retries = 0
    for frame_id in sim.frame_ids():
        url, body = f"/api/v1/devices/{frame_id}/albums", {"album_ids": [album_id]}
        while (reply := await hub.http.put(url, json=body, headers=auth(admin))).status_code == 503:
            retries += 1
            _progress(f"PUT {url} answered 503 ({reply.text[:80]}); again when the hub is ready")
            await until_ready(hub)
        reply.raise_for_status()
        started = time.perf_counter()
        version = await desired_version(hub, admin, frame_id, album_id)
        await sim.first_per_frame(event_is("synced", frame_id=frame_id, version=version), 1)
        if (took := time.perf_counter() - started) > 2.0:
            _progress(f"frame {frame_id} reported sync version {version} after {took:.1f} s")
    return retries


async def upload_to_wall(
    hub: BenchHub, owner: str, sim: Simulator, frames: int, album_id: str, photo: bytes
) -> Timed:
    """Upload ``photo`` into the album and wait until every frame displayed it."""
    files = {"file": ("wall.jpg", photo, "image/jpeg")}
    metadata = {"metadata": json.dumps({"album_id": album_id})}
    t0 = time.time()
    reply = await hub.http.post(
        "/api/v1/storage/photos/upload", files=files, data=metadata, headers=auth(owner)
    )
    posted = time.time() - t0
    file_id: str = reply.raise_for_status().json()["file_id"]
    shown = await sim.first_per_frame(event_is("displayed", file_id=file_id), frames)
    sql = "SELECT MAX(cached_at) FROM photo_cache WHERE file_id = ?"
    (served,) = await hub.store.fetch_all(sql, (file_id,))
    served_at = datetime.fromisoformat(served[0].replace("Z", "+00:00")).timestamp()
    first, last = min(shown.values()), max(shown.values())
    return Timed(file_id, posted, served_at - t0, first - t0, last - t0)


async def floor(
    hub: BenchHub, owner: str, probe: BrokerClient, file_id: str, frame_id: str
) -> tuple[float, float]:
    """The floor's two parts: an MQTT round trip, a download of the photo's frame version."""
    mqtt = await trio.to_thread.run_sync(probe.round_trip)
    url, query = f"/api/v1/files/download/{file_id}", {"size": "frame", "frame_id": frame_id}
    started = time.perf_counter()
    reply = await hub.http.get(url, params=query, headers=auth(owner))
    download = time.perf_counter() - started
    if not reply.raise_for_status().content:
        raise RuntimeError(f"an empty frame version of {file_id}")
    return mqtt, download


async def measure(directory: Path, frames: int, photos: list[bytes]) -> Samples:
    """Set up, upload ``photos[0]`` to warm up, then time the others."""
    got = Samples()
    async with running_hub(directory / "hub", **HUB_SETTINGS) as hub:
        admin = await hub.new_user("bench-admin", admin=True)
        owner = await hub.new_user("bench-owner")
        reply = await hub.http.post("/api/v1/albums", json={"name": "Wall"}, headers=auth(owner))
        album_id: str = reply.raise_for_status().json()["album_id"]
        probe = BrokerClient(await hub.broker())
        _progress(f"pairing and connecting {frames} simulated frames")
        async with simulate(hub.base_url, admin, directory / "sim", frames) as sim:
            await sim.first_per_frame(event_is("connected"), frames)
            started = time.perf_counter()
            got.assign_retries = await assign(hub, admin, sim, album_id)
            got.assign_s = time.perf_counter() - started
            first_frame = sim.frame_ids()[0]
            await trio.to_thread.run_sync(probe.open)
            try:
                cold = await upload_to_wall(hub, owner, sim, frames, album_id, photos[0])
                got.cold_s = cold.wall
                _progress(f"warm-up upload: on every frame after {got.cold_s:.2f} s")
                processes = (psutil.Process(), psutil.Process(sim.process.pid))
                cpu, started = [cpu_seconds(p) for p in processes], time.perf_counter()
                for k, photo in enumerate(photos[1:], 1):
                    timed = await upload_to_wall(hub, owner, sim, frames, album_id, photo)
                    _progress(
                        f"upload {k}: hub served every frame {timed.served:.2f} s, displayed on"
                        f" the first frame {timed.first:.2f} s, on every frame {timed.wall:.2f} s"
                    )
                    got.uploads.append(timed)
                    got.floors.append(await floor(hub, owner, probe, timed.file_id, first_frame))
                elapsed = time.perf_counter() - started
                hub_cpu, sim_cpu = (cpu_seconds(p) - c for p, c in zip(processes, cpu, strict=True))
                got.cpu_pct = (100 * hub_cpu / elapsed, 100 * sim_cpu / elapsed)
            finally:
                await trio.to_thread.run_sync(probe.close)
    return got


def main(json_output: bool, *, frames: int = FRAMES, uploads: int = UPLOADS) -> dict[str, Figure]:
    """Measure, print the table (and the JSON last line); return the figures."""
    _progress(f"generating {uploads} + 1 photos of {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]}")
    photos = [make_photo(seed) for seed in range(uploads + 1)]
    with tempfile.TemporaryDirectory(prefix="framehub-bench-e2e-") as tmp:
        got = run_until_interrupted(measure, Path(tmp), frames, photos)
    walls = [timed.wall for timed in got.uploads]
    p50, p99 = round(percentile(walls, 50), 3), round(percentile(walls, 99), 3)
    mqtt_ms, download_ms = (
        round(1000 * statistics.median(part), 2) for part in zip(*got.floors, strict=True)
    )
    floor_s = ("floor_s", round(statistics.median(sum(pair) for pair in got.floors), 4))
    report = Report(f"framehub upload to wall: {frames} simulated frames", peer_name="floor")
    wall = "upload -> every frame displayed"
    ours = ("upload_to_wall_p50_s", p50)
    report.compare(f"{wall}, p50", "s", ours, floor_s, "p50_over_floor", Target("<", 1.5))
    report.single(f"{wall}, p99", "s", "upload_to_wall_p99_s", p99, Target("<", 3.0))
    rows: list[tuple[str, str, str, Figure]] = [
        ("upload -> first frame displayed, p50", "s", "first_frame_p50_s", got.p50("first")),
        ("upload POST answered 201, p50", "s", "upload_post_p50_s", got.p50("posted")),
        ("upload -> hub served every frame, p50", "s", "hub_served_all_p50_s", got.p50("served")),
        ("floor: MQTT publish -> receive", "ms", "floor_mqtt_ms", mqtt_ms),
        ("floor: frame version download", "ms", "floor_download_ms", download_ms),
        ("warm-up upload -> every frame", "s", "cold_upload_to_wall_s", round(got.cold_s, 3)),
        ("hub CPU during the uploads", "% of a CPU", "hub_cpu_pct", round(got.cpu_pct[0], 1)),
        ("simulator CPU", "% of a CPU", "simulator_cpu_pct", round(got.cpu_pct[1], 1)),
        ("album assigned -> all synced", "s", "assign_to_synced_s", round(got.assign_s, 3)),
        ("album assignments answered 503", "requests", "assign_retries", got.assign_retries),
        ("frames", "frames", "frames", frames),
        ("uploads", "uploads", "uploads", uploads),
    ]
    for row in rows:
        report.single(*row)
    size = statistics.mean(len(photo) for photo in photos) / 1e6
    report.note(
        f"photos: {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]} JPEG q{PHOTO_QUALITY}, gradients + noise,"
        f" {size:.1f} MB on average, a different one per upload, one upload at a time"
    )
    report.note(
        "frames: run.py simulate --no-render in one child process (each frame downloads and"
        " checks the photo, skips only writing the PNG); the hub in this process;"
        f" {os.cpu_count()} CPUs for all; p99 of {uploads} samples is their maximum;"
        " floor = median over uploads of (MQTT round trip + download)"
    )
    report.note(
        "hub served every frame: when the hub recorded the last frame's download of the"
        " photo's frame version (photo_cache.cached_at); after it, the frames' own work"
        " (storing, saving state, reporting), 50 frames sharing one simulator process"
    )
    if got.assign_retries:
        report.note(
            "album assignments answered 503 were sent again once the hub was ready:"
            " /infra/broker gave up waiting for mosquitto's reload and restarted"
        )
    return report.finish(json_output)


if __name__ == "__main__":
    run_cli("python -m bench.e2e", __doc__, main)
