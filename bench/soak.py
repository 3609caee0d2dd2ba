"""Soak: 200 frames, photo uploads and telemetry for M minutes; the hub's memory, mailboxes and
upload-to-wall latency over time.

``python run.py bench soak [--minutes M] [--json]`` or ``python -m bench.soak [--minutes M]``.

**Who is measured.** The hub as production runs it: ``run.py serve`` in a child process of its
own (a temporary data directory, every port picked by the OS, its managed Mosquitto as its
child, ``frames.heartbeat_interval_s`` ``HEARTBEAT_S``, the request rate limit out of the way).
Its RSS is that process's alone: not Mosquitto's (reported apart), not the frames' (``run.py
simulate --no-render``, ``FRAMES`` full frames in another process: each downloads, checks and
stores its photos, skipping only the PNG), not the load generator's and observers' (this
process).

**Set-up** (not measured). ``USERS`` users with ``ALBUMS_PER_USER`` albums each; frame k shows
album k mod A, every 4th frame also album k+1 mod A; an alert rule on every frame,
``temperature_c > 24.6`` clearing below 24.3, which the frames' random-walk temperature
(starting at 24) crosses now and then. Every frame has reported ``synced`` for its albums
before the load.

**The load.** Every ``UPLOAD_EVERY_S`` seconds, one upload into the next album in turn with its
owner's token, whether or not the earlier ones have arrived: a JPEG cut at random from one of a
few generated 4000x3000 photos (gradients and noise, as in bench e2e), 60-100% of each side
(2400x1800 to 4000x3000, landscape to portrait), so that each upload is another picture of
another size. Once an upload is on every frame of its albums, the album's oldest photos beyond
``KEEP`` are deleted (``DELETE /api/v1/files/<id>``): storage and playlists level off instead of
growing. The frames send a heartbeat (two samples the hub stores: ``free_bytes``, ``uptime_s``)
every ``HEARTBEAT_S`` seconds and telemetry (four samples, QoS 1) with every 10th.

**Upload to wall**, as in bench e2e: from just before the upload's POST to the last of its
frames' ``displayed`` event for it (the simulator stamps events with this machine's clock). An
upload not displayed by all its frames within ``DELIVERY_WAIT_S`` is *late* and counts in the
percentiles as ``DELIVERY_WAIT_S`` (a lower bound).

**Lost** is decided on the frames' own disks, after the soak: once the last uploads have been
followed, every frame's playlist and photo cache (its ``state.json`` and ``photos/``) are read
until each holds every acknowledged upload of its albums and none of the deleted ones (or
``CONVERGE_WAIT_S`` passed). A pair (frame, upload) missing then is a lost delivery; a deleted
photo still held is stale. Telemetry lost = samples the frames sent (counted by an MQTT listener
with the hub's credentials, QoS 1: each live telemetry message's metrics, two per live
heartbeat) - samples the hub stored (``/metrics``), once the frames have stopped and the hub has
flushed. The frames' own ``error`` events (a download answered 5xx, say) are counted too,
those about photos deleted meanwhile apart (a sync listing one can reach a frame after it
went).

**Warm-up and windows.** The soak starts once one upload into every album has been displayed by
all its frames: by then every path the soak exercises has run (upload, analysis, rendering by
the image workers, every frame's download, every album's topic, heartbeat and telemetry ingest)
and made its one-time allocations. Then ``M`` minutes in windows of ``WINDOW_S`` (15 s for runs
under 4 minutes); an upload counts in the window its POST started in.

**Observed.** The hub's RSS once a second (psutil on its pid): start RSS is the median of the
first window's samples, end RSS the median of the last window's; growth over the second half
(last window against the middle one) tells a working set still filling up from steady growth.
Photos being decoded add tens of MB to the RSS for a moment, so single samples swing widely; a
window's median does not, and its minimum (the floor) is printed too. The supervision tree
through the operator console's ``tree`` stream (sent at every change, at most 4 times a
second): the deepest mailbox with its capacity, full mailboxes (their senders wait), restarts.
At each window's end, ``GET /metrics``: samples stored.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import msgspec
import psutil
import trio
from paho.mqtt.client import Client, MQTTMessage
from PIL import Image
from trio_websocket import ConnectionClosed, HandshakeError, open_websocket_url

import wire
from actors import DATABASE_NAME
from actors.accounts import create_user
from actors.console import PROTOCOL_VERSION, Hello, ServerMessage, Subscribe, TreeMessage, Welcome
from actors.store import Store
from bench._hub import HubProcess
from bench._report import Figure, Report, Target, fmt, percentile, run_cli
from bench.e2e import (
    BrokerClient,
    Simulator,
    auth,
    cpu_seconds,
    desired_version,
    event_is,
    make_photo,
    run_until_interrupted,
    simulate,
    until_ready,
)
from bench.fleet import deepest_mailbox
from frame_device import STATE_FILE, photo_path
from frame_device._state import load_state
from supervision import ActorSnapshot, open_asyncio_bridge

FRAMES = 200
USERS = 4
ALBUMS_PER_USER = 3
MINUTES = 10.0
UPLOAD_EVERY_S = 4.0
KEEP = 4
"""Photos an album keeps; older ones are deleted once a newer one is on its frames."""
HEARTBEAT_S = 10.0
BASE_PHOTOS = 2
CROP_MIN = 0.6
PHOTO_QUALITY = 90
WINDOW_S = 60.0
SHORT_WINDOW_S = 15.0
"""Windows of runs shorter than ``LONG_RUN_MIN`` minutes."""
LONG_RUN_MIN = 4.0
RSS_EVERY_S = 1.0
DELIVERY_WAIT_S = 120.0
CONVERGE_WAIT_S = 120.0
CONVERGE_POLL_S = 1.0
SETUP_WAIT_S = 600.0
"""Longest wait for the fleet to pair, connect and apply its albums, and for the warm-up."""
SETTLE_IDLE_S = 10.0
"""The telemetry count is final once the hub's has not moved for this long."""
SEED = 8
ALERT_RULE = {
    "metric": "temperature_c",
    "comparison": ">",
    "threshold": 24.6,
    "clear_threshold": 24.3,
    "for_seconds": 0.0,
    "severity": "warning",
}
TARGET_GROWTH_PCT = 5.0
TARGET_P99_RATIO = 1.5

_STARTED = time.monotonic()


def _progress(text: str) -> None:
    print(f"[bench soak {time.monotonic() - _STARTED:6.1f} s] {text}", file=sys.stderr, flush=True)


# -- photos ----------------------------------------------------------------------------------------


class Photos:
    """Random cuts of a few generated photos, each encoded anew: every one a different JPEG."""

    def __init__(self, count: int, seed: int) -> None:
        self._bases = [Image.open(io.BytesIO(make_photo(seed * 100 + k))) for k in range(count)]
        for base in self._bases:
            base.load()
        self._rng = random.Random(seed)

    def cut(self) -> bytes:
        base = self._rng.choice(self._bases)
        width, height = base.size
        w = round(width * self._rng.uniform(CROP_MIN, 1.0))
        h = round(height * self._rng.uniform(CROP_MIN, 1.0))
        x, y = self._rng.randrange(width - w + 1), self._rng.randrange(height - h + 1)
        buffer = io.BytesIO()
        base.crop((x, y, x + w, y + h)).save(buffer, "JPEG", quality=PHOTO_QUALITY)
        return buffer.getvalue()


# -- the hub, its API and what observes it ---------------------------------------------------------


@dataclass(frozen=True)
class SoakHub:
    process: HubProcess
    http: httpx.AsyncClient
    admin: str

    async def metrics(self) -> dict[str, float]:
        """``GET /metrics``, each metric summed over its labels."""
        reply = await self.http.get("/metrics", headers=auth(self.admin))
        totals: dict[str, float] = {}
        for line in reply.raise_for_status().text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                name = name.split("{", 1)[0]
                totals[name] = totals.get(name, 0.0) + float(value)
        return totals


async def make_users(process: HubProcess, users: int) -> tuple[str, list[str]]:
    """An admin's token and ``users`` users' tokens, made as ``run.py users add`` makes them
    (on the hub's database, which a running hub allows), without a process for each."""
    database = process.data_dir / DATABASE_NAME
    async with open_asyncio_bridge() as bridge, Store.open(database, bridge) as store:
        admin = await create_user(store, "soak-admin", admin=True)
        owners = [await create_user(store, f"soak-user-{u}", admin=False) for u in range(users)]
    return admin.token, [owner.token for owner in owners]


class SampleCounter(BrokerClient):
    """The samples frames send, as the hub's bridge receives them: each live telemetry
    message's metrics and two per live heartbeat (what the hub stores of one)."""

    def __init__(self, hub: HubProcess) -> None:
        super().__init__(hub.broker(), tuple(f"frames/+/{leaf}" for leaf in wire.FRAME_LEAVES_IN))
        self.samples = 0

    def _on_message(self, client: Client, userdata: object, message: MQTTMessage) -> None:
        super()._on_message(client, userdata, message)
        if message.retain or message.topic == self.probe:
            return
        leaf = message.topic.rsplit("/", 1)[-1]
        if leaf == "telemetry":
            telemetry = msgspec.json.decode(message.payload, type=wire.Telemetry)
            self.samples += len(telemetry.metrics)
        elif leaf == "heartbeat":
            self.samples += 2


@dataclass(frozen=True)
class TreeSample:
    at: float
    depth: int
    capacity: int
    path: str
    full: int
    """Mailboxes at or above their capacity (their senders wait)."""
    restarts: int


def _tree_sample(root: ActorSnapshot) -> TreeSample:
    depth, capacity, path = deepest_mailbox(root)
    full = restarts = 0
    stack = [root]
    while stack:
        node = stack.pop()
        full += node.mailbox_depth >= node.mailbox_capacity
        restarts += node.restarts
        stack.extend(node.children)
    return TreeSample(time.time(), depth, capacity, path, full, restarts)


@dataclass
class Observed:
    rss: list[tuple[float, float, float]] = field(default_factory=list)
    """(Unix time, hub RSS MB, Mosquitto RSS MB)."""
    tree: list[TreeSample] = field(default_factory=list)
    console_reconnects: int = 0


async def sample_rss(pid: int, observed: Observed) -> None:
    hub = psutil.Process(pid)
    broker = next((p for p in hub.children() if p.name() == "mosquitto"), None)
    tick = trio.current_time()
    while True:
        broker_mb = broker.memory_info().rss / 1e6 if broker is not None else 0.0
        observed.rss.append((time.time(), hub.memory_info().rss / 1e6, broker_mb))
        tick += RSS_EVERY_S
        await trio.sleep_until(tick)


async def watch_tree(hub: SoakHub, observed: Observed) -> None:
    """Follow the console's ``tree`` stream; connect again if the console closes it."""
    url = f"ws://127.0.0.1:{hub.process.ports['console']}/"
    decode = msgspec.json.Decoder(ServerMessage).decode
    while True:
        try:
            async with open_websocket_url(url) as ws:
                hello = Hello(version=PROTOCOL_VERSION, token=hub.admin)
                await ws.send_message(msgspec.json.encode(hello).decode())
                if not isinstance(decode(await ws.get_message()), Welcome):
                    raise RuntimeError("the console did not welcome the admin")
                await ws.send_message(msgspec.json.encode(Subscribe(streams=["tree"])).decode())
                while True:
                    message = decode(await ws.get_message())
                    if isinstance(message, TreeMessage):
                        observed.tree.append(_tree_sample(message.root))
        except (ConnectionClosed, HandshakeError) as error:
            observed.console_reconnects += 1
            _progress(f"console connection lost ({error!r}); connecting again")
            await trio.sleep(1.0)


# -- the load --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Album:
    album_id: str
    owner: str
    """The owner's API token."""
    frames: int
    """Frames that show it."""


@dataclass
class Upload:
    k: int
    album: Album
    started: float
    """Unix time just before the POST."""
    status: int = 0
    posted_s: float = 0.0
    file_id: str = ""
    wall_s: float | None = None
    """From ``started`` to the last of its frames' ``displayed``; None: late (or refused)."""
    deleted: bool = False

    @property
    def acknowledged(self) -> bool:
        return self.status == 201

    @property
    def late(self) -> bool:
        return self.acknowledged and self.wall_s is None

    def wall_or_bound(self) -> float | None:
        """The upload-to-wall time, ``DELIVERY_WAIT_S`` for a late upload."""
        return DELIVERY_WAIT_S if self.late else self.wall_s


class Load:
    """Uploads on a fixed schedule, each followed until all its frames displayed it; then the
    album's oldest photos beyond ``keep`` are deleted."""

    def __init__(
        self, hub: SoakHub, sim: Simulator, albums: list[Album], photos: Photos, keep: int
    ) -> None:
        self.hub = hub
        self.sim = sim
        self.albums = albums
        self.photos = photos
        self.keep = keep
        self.uploads: list[Upload] = []
        self.kept: dict[str, deque[Upload]] = {album.album_id: deque() for album in albums}
        self.delete_failures = 0
        self.warm = trio.Event()
        self._warming = len(albums)
        self.stop_at = math.inf

    async def run(self, nursery: trio.Nursery, every_s: float) -> None:
        """An upload every ``every_s`` until ``stop_at`` (trio time; set once the warm-up is
        over), each followed in a task of ``nursery``."""
        due = trio.current_time()
        while due < self.stop_at:
            data = await trio.to_thread.run_sync(self.photos.cut)
            await trio.sleep_until(due)
            if due >= self.stop_at:
                break
            k = len(self.uploads)
            upload = Upload(k, self.albums[k % len(self.albums)], time.time())
            self.uploads.append(upload)
            nursery.start_soon(self._deliver, upload, data)
            due += every_s

    async def _deliver(self, upload: Upload, data: bytes) -> None:
        try:
            await self._post(upload, data)
            if upload.acknowledged:
                await self._follow(upload)
        finally:
            if upload.k < len(self.albums):
                self._warming -= 1
                if not self._warming:
                    self.warm.set()

    async def _post(self, upload: Upload, data: bytes) -> None:
        files = {"file": (f"soak-{upload.k}.jpg", data, "image/jpeg")}
        metadata = {"metadata": json.dumps({"album_id": upload.album.album_id})}
        try:
            reply = await self.hub.http.post(
                "/api/v1/storage/photos/upload",
                files=files,
                data=metadata,
                headers=auth(upload.album.owner),
            )
        except httpx.HTTPError as error:
            _progress(f"upload {upload.k}: {error!r}")
            return
        upload.posted_s = time.time() - upload.started
        upload.status = reply.status_code
        if upload.acknowledged:
            upload.file_id = reply.json()["file_id"]
        else:
            _progress(f"upload {upload.k} answered {reply.status_code}: {reply.text[:200]}")

    async def _follow(self, upload: Upload) -> None:
        check = event_is("displayed", file_id=upload.file_id)
        try:
            shown = await self.sim.first_per_frame(check, upload.album.frames, DELIVERY_WAIT_S)
        except RuntimeError as error:
            _progress(f"upload {upload.k} ({upload.file_id}) late: {error}")
            return
        upload.wall_s = max(shown.values()) - upload.started
        kept = self.kept[upload.album.album_id]
        kept.append(upload)
        while len(kept) > self.keep:
            old = kept.popleft()
            url = f"/api/v1/files/{old.file_id}"
            try:
                reply = await self.hub.http.delete(url, headers=auth(old.album.owner))
            except httpx.HTTPError as error:
                self.delete_failures += 1
                _progress(f"DELETE {url}: {error!r}")
                continue
            if reply.status_code == 204:
                old.deleted = True
            else:
                self.delete_failures += 1
                _progress(f"DELETE {url} answered {reply.status_code}: {reply.text[:200]}")


# -- set-up and the end state ----------------------------------------------------------------------


async def make_albums(hub: SoakHub, owners: list[str], per_user: int) -> list[tuple[str, str]]:
    """(album id, owner token), the users' albums interleaved."""
    made: list[tuple[str, str]] = []
    for n in range(per_user):
        for u, owner in enumerate(owners):
            body = {"name": f"soak {u}-{n}"}
            reply = await hub.http.post("/api/v1/albums", json=body, headers=auth(owner))
            made.append((reply.raise_for_status().json()["album_id"], owner))
    return made


async def assign_albums(hub: SoakHub, sim: Simulator, shows: dict[str, list[str]]) -> int:
    """Show each frame its albums; wait until each has reported ``synced`` for them. Returns
    the assignments answered 503 (sent again once the hub was ready)."""
    retries = 0
    for frame_id, album_ids in shows.items():
        url, body = f"/api/v1/devices/{frame_id}/albums", {"album_ids": album_ids}
        while (
            reply := await hub.http.put(url, json=body, headers=auth(hub.admin))
        ).status_code == 503:
            retries += 1
            await until_ready(hub)
        reply.raise_for_status()
    for frame_id, album_ids in shows.items():
        version = await desired_version(hub, hub.admin, frame_id, album_ids[0])
        check = event_is("synced", frame_id=frame_id, version=version)
        await sim.first_per_frame(check, 1, SETUP_WAIT_S)
    return retries


def holds(sim: Simulator, frame_id: str) -> set[str]:
    """The photos in a frame's playlist that are in its cache too, as its own files say."""
    directory = sim.data_dir / "frames" / frame_id
    playlist = load_state(directory / STATE_FILE).playlist()
    return {p.file_id for p in playlist if p.sha256 and photo_path(directory, p.sha256).is_file()}


@dataclass(frozen=True)
class EndState:
    missing: dict[str, int]
    """Acknowledged uploads not on all their frames: file id -> frames without it."""
    stale: int
    """(frame, deleted photo) pairs still held."""
    seconds: float
    """From the last upload's end to this state."""


def end_state(sim: Simulator, uploads: list[Upload], shows: dict[str, list[str]]) -> EndState:
    missing: dict[str, int] = {}
    stale = 0
    for frame_id, album_ids in shows.items():
        held = holds(sim, frame_id)
        for upload in uploads:
            if upload.acknowledged and upload.album.album_id in album_ids:
                if upload.deleted:
                    stale += upload.file_id in held
                elif upload.file_id not in held:
                    missing[upload.file_id] = missing.get(upload.file_id, 0) + 1
    return EndState(missing, stale, 0.0)


async def converge(sim: Simulator, uploads: list[Upload], shows: dict[str, list[str]]) -> EndState:
    """Read the frames' files until each holds what it should (or ``CONVERGE_WAIT_S``)."""
    started = trio.current_time()
    while True:
        state = await trio.to_thread.run_sync(end_state, sim, uploads, shows)
        waited = trio.current_time() - started
        if (not state.missing and not state.stale) or waited > CONVERGE_WAIT_S:
            return EndState(state.missing, state.stale, waited)
        await trio.sleep(CONVERGE_POLL_S)  # the frames' files say nothing when they change


# -- the measurement -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mark:
    """The state at a window boundary."""

    at: float
    metrics: dict[str, float]
    cpu_s: tuple[float, float]
    """Hub and simulator CPU seconds so far."""


@dataclass(frozen=True)
class Plan:
    frames: int
    users: int
    albums_per_user: int
    minutes: float
    window_s: float
    every_s: float
    keep: int
    heartbeat_s: float
    seed: int

    @property
    def windows(self) -> int:
        return max(1, math.ceil(self.minutes * 60 / self.window_s - 1e-9))


@dataclass
class Results:
    plan: Plan
    albums: list[Album]
    uploads: list[Upload]
    observed: Observed
    marks: list[Mark]
    start: float
    end: float
    end_state: EndState
    frame_errors: list[str | None]
    """The file ids of the frames' ``error`` events (a download that failed, say)."""
    delete_failures: int
    sent: int
    final: dict[str, float]
    assign_retries: int
    setup_s: float
    warmup_s: float


async def watch_windows(
    hub: SoakHub, pids: tuple[int, int], start: float, plan: Plan, marks: list[Mark]
) -> None:
    """A ``Mark`` at the start (trio time ``start``) and at the end of each window."""
    processes = [psutil.Process(pid) for pid in pids]
    for n in range(plan.windows + 1):
        await trio.sleep_until(start + min(n * plan.window_s, plan.minutes * 60))
        hub_cpu, sim_cpu = (cpu_seconds(p) for p in processes)
        marks.append(Mark(time.time(), await hub.metrics(), (hub_cpu, sim_cpu)))


async def settle_telemetry(hub: SoakHub, sent: int) -> dict[str, float]:
    """/metrics once the hub has stored (or dropped) ``sent`` samples and flushed, or once its
    count has not moved for ``SETTLE_IDLE_S``."""
    last, moved = -1.0, trio.current_time()
    while True:
        metrics = await hub.metrics()
        taken = metrics["framehub_telemetry_stored_total"] + metrics.get(
            "framehub_telemetry_dropped_total", 0.0
        )
        if taken >= sent and metrics["framehub_telemetry_buffered"] == 0:
            return metrics
        if taken != last:
            last, moved = taken, trio.current_time()
        elif trio.current_time() - moved > SETTLE_IDLE_S:
            _progress(f"telemetry: {taken:.0f} of {sent} samples taken, no progress")
            return metrics
        await trio.sleep(0.2)


def album_shows(frame_ids: list[str], album_ids: list[str]) -> dict[str, list[str]]:
    """Frame k shows album k mod A; every 4th frame also album k+1 mod A."""
    count = len(album_ids)
    return {
        frame_id: [album_ids[k % count]]
        + ([album_ids[(k + 1) % count]] if k % 4 == 3 and count > 1 else [])
        for k, frame_id in enumerate(frame_ids)
    }


async def measure(
    process: HubProcess, directory: Path, plan: Plan, making: Future[Photos]
) -> Results:
    started = time.perf_counter()
    admin, owners = await make_users(process, plan.users)
    async with httpx.AsyncClient(base_url=process.base_url, timeout=60.0) as http:
        hub = SoakHub(process, http, admin)
        reply = await http.post("/api/v1/alert-rules", json=ALERT_RULE, headers=auth(admin))
        reply.raise_for_status()
        made = await make_albums(hub, owners, plan.albums_per_user)
        counter = SampleCounter(process)
        await trio.to_thread.run_sync(counter.open)
        try:
            _progress(f"pairing and connecting {plan.frames} simulated frames")
            options = ("--heartbeat", f"{plan.heartbeat_s:g}")
            async with simulate(
                process.base_url, admin, directory / "sim", plan.frames, *options
            ) as sim:
                await sim.first_per_frame(event_is("connected"), plan.frames, SETUP_WAIT_S)
                shows = album_shows(sim.frame_ids(), [album_id for album_id, _ in made])
                _progress(f"{plan.frames} frames connected; showing {len(made)} albums on them")
                retries = await assign_albums(hub, sim, shows)
                albums = [
                    Album(album_id, owner, sum(album_id in ids for ids in shows.values()))
                    for album_id, owner in made
                ]
                setup_s = time.perf_counter() - started
                photos = await trio.to_thread.run_sync(making.result)
                load = Load(hub, sim, albums, photos, plan.keep)
                observed, marks = Observed(), list[Mark]()
                pids = (process.pid, sim.process.pid)
                async with trio.open_nursery() as observers:
                    observers.start_soon(sample_rss, process.pid, observed)
                    observers.start_soon(watch_tree, hub, observed)
                    async with trio.open_nursery() as loading:
                        warm_from = trio.current_time()
                        _progress(f"warm-up: an upload into each of the {len(albums)} albums")
                        loading.start_soon(load.run, loading, plan.every_s)
                        with trio.fail_after(SETUP_WAIT_S):
                            await load.warm.wait()
                        begin, start = trio.current_time(), time.time()
                        warmup_s = begin - warm_from
                        load.stop_at = begin + plan.minutes * 60
                        _progress(
                            f"warm-up done in {warmup_s:.1f} s; soaking for {plan.minutes:g}"
                            f" min in {plan.windows} windows of {plan.window_s:g} s"
                        )
                        await watch_windows(hub, pids, begin, plan, marks)
                        end = time.time()
                        _progress("soak over; following the last uploads")
                    observers.cancel_scope.cancel()
                _progress("reading what every frame holds")
                state = await converge(sim, load.uploads, shows)
                frame_errors = [e.get("file_id") for e in sim.events if e["event"] == "error"]
            _progress("frames stopped; waiting for the hub to store their last samples")
            # Mosquitto forwards messages in the order it took them in: once a probe
            # published now has come back, the listener has had every sample the frames sent.
            await trio.to_thread.run_sync(counter.round_trip)
            sent = counter.samples
            final = await settle_telemetry(hub, sent)
        finally:
            await trio.to_thread.run_sync(counter.close)
    return Results(
        plan=plan,
        albums=albums,
        uploads=load.uploads,
        observed=observed,
        marks=marks,
        start=start,
        end=end,
        end_state=state,
        frame_errors=frame_errors,
        delete_failures=load.delete_failures,
        sent=sent,
        final=final,
        assign_retries=retries,
        setup_s=setup_s,
        warmup_s=warmup_s,
    )


# -- the report ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    number: int
    start: float
    end: float
    uploads: list[Upload]
    rss: list[float]
    tree: list[TreeSample]
    stored: int
    hub_cpu_pct: float

    def p(self, q: float) -> float | None:
        walls = [w for u in self.uploads if (w := u.wall_or_bound()) is not None]
        return round(percentile(walls, q), 3) if walls else None

    def figures(self) -> dict[str, Figure]:
        key = f"w{self.number}_"
        figures: dict[str, Figure] = {
            f"{key}uploads": len(self.uploads),
            f"{key}late": sum(u.late for u in self.uploads),
            f"{key}rss_mb": round(statistics.median(self.rss), 1) if self.rss else 0.0,
            f"{key}rss_min_mb": round(min(self.rss), 1) if self.rss else 0.0,
            f"{key}rss_max_mb": round(max(self.rss), 1) if self.rss else 0.0,
            f"{key}mailbox_max": max((t.depth for t in self.tree), default=0),
            f"{key}samples_stored": self.stored,
            f"{key}hub_cpu_pct": self.hub_cpu_pct,
        }
        for q in (50, 99):
            value = self.p(q)
            if value is not None:
                figures[f"{key}p{q}_s"] = value
        return figures

    def row(self, origin: float) -> tuple[str, ...]:
        figures = self.figures()
        names = (
            "uploads",
            "late",
            "p50_s",
            "p99_s",
            "rss_mb",
            "rss_min_mb",
            "rss_max_mb",
            "mailbox_max",
            "samples_stored",
            "hub_cpu_pct",
        )
        cells = (figures.get(f"w{self.number}_{name}") for name in names)
        return (
            str(self.number),
            f"{self.start - origin:.0f}-{self.end - origin:.0f}",
            *("-" if value is None else fmt(value) for value in cells),
        )


def windows(got: Results) -> list[Window]:
    made = []
    for n, (first, last) in enumerate(itertools.pairwise(got.marks), 1):
        low, high = first.at, last.at
        stored = "framehub_telemetry_stored_total"
        made.append(
            Window(
                number=n,
                start=low,
                end=high,
                uploads=[u for u in got.uploads if low <= u.started < high],
                rss=[rss for at, rss, _ in got.observed.rss if low <= at <= high],
                tree=[t for t in got.observed.tree if low <= t.at <= high],
                stored=round(last.metrics[stored] - first.metrics[stored]),
                hub_cpu_pct=round(100 * (last.cpu_s[0] - first.cpu_s[0]) / (high - low), 1),
            )
        )
    return made


def _log_counts(lines: list[str]) -> tuple[int, list[str]]:
    """Warnings in the hub's log, and its error (and critical) lines."""
    warnings = sum(" WARNING " in line for line in lines)
    return warnings, [line for line in lines if " ERROR " in line or " CRITICAL " in line]


def _median_mb(samples: list[tuple[float, float, float]], low: float, high: float) -> float:
    """The median Mosquitto RSS of ``samples`` between ``low`` and ``high``."""
    chosen = [broker for at, _, broker in samples if low <= at <= high]
    return round(statistics.median(chosen), 1) if chosen else 0.0


def build_report(got: Results, log_lines: list[str]) -> Report:
    plan = got.plan
    report = Report(
        f"framehub soak: {plan.frames} simulated frames, {plan.minutes:g} min",
        peer_name="at start",
    )
    spans = windows(got)
    first, last = spans[0], spans[-1]
    start_figures, end_figures = first.figures(), last.figures()
    start_mb, end_mb = start_figures["w1_rss_mb"], end_figures[f"w{last.number}_rss_mb"]
    report.compare(
        "hub RSS, end vs start (window medians)",
        "MB",
        ("hub_rss_end_mb", end_mb),
        ("hub_rss_start_mb", start_mb),
        "rss_end_over_start",
        Target("<", 1 + TARGET_GROWTH_PCT / 100, of_peer=True),
        ratio_digits=4,
    )
    growth = round(100 * (end_mb - start_mb) / start_mb, 2)
    report.single("hub RSS growth", "%", "rss_growth_pct", growth, Target("<", TARGET_GROWTH_PCT))
    middle = spans[len(spans) // 2].figures()[f"w{len(spans) // 2 + 1}_rss_mb"]
    report.single(
        "hub RSS growth, second half (last vs middle window)",
        "%",
        "rss_growth_second_half_pct",
        round(100 * (end_mb - middle) / middle, 2),
    )
    report.compare(
        "hub RSS floor, last vs first window",
        "MB",
        ("hub_rss_floor_end_mb", end_figures[f"w{last.number}_rss_min_mb"]),
        ("hub_rss_floor_start_mb", start_figures["w1_rss_min_mb"]),
        "rss_floor_end_over_start",
        ratio_digits=4,
    )
    report.compare(
        "upload -> wall p99, last vs first window",
        "s",
        ("p99_last_window_s", last.p(99) or 0.0),
        ("p99_first_window_s", first.p(99) or 0.0),
        "p99_last_over_first",
        Target("<", TARGET_P99_RATIO, of_peer=True),
    )
    measured = [u for u in got.uploads if got.start <= u.started < got.end]
    walls = [w for u in measured if (w := u.wall_or_bound()) is not None]
    acknowledged = [u for u in got.uploads if u.acknowledged]
    tree = [t for t in got.observed.tree if got.start <= t.at <= got.end]
    deepest = max(tree, key=lambda t: (t.depth, t.capacity)) if tree else None
    depth, capacity = (deepest.depth, deepest.capacity) if deepest else (0, 0)
    final = got.final
    stored = round(final["framehub_telemetry_stored_total"])
    duration = got.marks[-1].at - got.marks[0].at
    hub_cpu, sim_cpu = (
        round(100 * (got.marks[-1].cpu_s[i] - got.marks[0].cpu_s[i]) / duration, 1) for i in (0, 1)
    )
    warnings, errors = _log_counts(log_lines)
    rss_all = [rss for at, rss, _ in got.observed.rss if got.start <= at <= got.end]
    deleted = {u.file_id for u in got.uploads if u.deleted}
    gone_errors = sum(file_id in deleted for file_id in got.frame_errors)
    post_p50 = round(percentile([u.posted_s for u in acknowledged], 50), 3) if acknowledged else 0
    rows: list[tuple[str, str, str, Figure, Target | None]] = [
        (
            "upload -> wall p50, whole soak",
            "s",
            "upload_to_wall_p50_s",
            round(percentile(walls, 50), 3) if walls else 0.0,
            None,
        ),
        (
            "upload -> wall p99, whole soak",
            "s",
            "upload_to_wall_p99_s",
            round(percentile(walls, 99), 3) if walls else 0.0,
            None,
        ),
        ("hub RSS, max sample", "MB", "hub_rss_max_mb", round(max(rss_all, default=0.0), 1), None),
        ("max mailbox depth", "messages", "max_mailbox_depth", depth, Target("<", capacity)),
        ("capacity of that mailbox", "messages", "mailbox_capacity", capacity, None),
        (
            "tree snapshots with a full mailbox",
            "snapshots",
            "mailbox_full_snapshots",
            sum(t.full > 0 for t in tree),
            Target("<=", 0),
        ),
        (
            "uploads lost (201, missing on a frame)",
            "uploads",
            "uploads_lost",
            len(got.end_state.missing),
            Target("<=", 0),
        ),
        (
            "deliveries lost",
            "frame-photos",
            "deliveries_missing",
            sum(got.end_state.missing.values()),
            Target("<=", 0),
        ),
        (
            "deleted photos still on frames",
            "frame-photos",
            "deleted_still_held",
            got.end_state.stale,
            Target("<=", 0),
        ),
        (
            f"uploads late (not on the wall in {DELIVERY_WAIT_S:g} s)",
            "uploads",
            "uploads_late",
            sum(u.late for u in got.uploads),
            Target("<=", 0),
        ),
        (
            "frame errors (deleted photos apart)",
            "events",
            "frame_errors",
            len(got.frame_errors) - gone_errors,
            Target("<=", 0),
        ),
        (
            "frame errors about deleted photos",
            "events",
            "frame_errors_deleted",
            gone_errors,
            None,
        ),
        (
            "uploads not answered 201",
            "uploads",
            "uploads_failed",
            len(got.uploads) - len(acknowledged),
            Target("<=", 0),
        ),
        (
            "telemetry samples lost (sent - stored)",
            "samples",
            "telemetry_lost",
            got.sent - stored,
            Target("<=", 0),
        ),
        ("telemetry samples sent by frames", "samples", "telemetry_sent", got.sent, None),
        ("telemetry samples stored", "samples", "telemetry_stored", stored, None),
        (
            "telemetry samples dropped by the hub",
            "samples",
            "telemetry_dropped",
            round(final.get("framehub_telemetry_dropped_total", 0.0)),
            None,
        ),
        (
            "actor restarts during the soak",
            "restarts",
            "actor_restarts",
            tree[-1].restarts - tree[0].restarts if tree else 0,
            Target("<=", 0),
        ),
        ("uploads measured", "uploads", "uploads", len(measured), None),
        ("uploads in all (warm-up, soak)", "uploads", "uploads_total", len(got.uploads), None),
        ("photos deleted", "photos", "deleted", sum(u.deleted for u in got.uploads), None),
        ("deletions refused", "photos", "delete_failures", got.delete_failures, None),
        ("upload POST answered, p50", "s", "upload_post_p50_s", post_p50, None),
        (
            "end state reached after the soak",
            "s",
            "converge_s",
            round(got.end_state.seconds, 1),
            None,
        ),
        (
            "alerts open at the end",
            "alerts",
            "alerts_open",
            round(final.get("framehub_alerts_open", 0.0)),
            None,
        ),
        (
            "notifications stored",
            "notifications",
            "notifications",
            round(final.get("framehub_notifications", 0.0)),
            None,
        ),
        (
            "inbound MQTT dropped by the bridge",
            "messages",
            "mqtt_dropped",
            round(final.get("framehub_mqtt_dropped_total", 0.0)),
            None,
        ),
        ("hub CPU over the soak", "% of a CPU", "hub_cpu_pct", hub_cpu, None),
        ("simulator CPU over the soak", "% of a CPU", "simulator_cpu_pct", sim_cpu, None),
        (
            "Mosquitto RSS, first window",
            "MB",
            "mosquitto_rss_start_mb",
            _median_mb(got.observed.rss, first.start, first.end),
            None,
        ),
        (
            "Mosquitto RSS, last window",
            "MB",
            "mosquitto_rss_end_mb",
            _median_mb(got.observed.rss, last.start, last.end),
            None,
        ),
        ("hub log: warnings", "lines", "hub_log_warnings", warnings, None),
        ("hub log: errors", "lines", "hub_log_errors", len(errors), Target("<=", 0)),
        ("frames", "frames", "frames", plan.frames, None),
        ("albums", "albums", "albums", len(got.albums), None),
        ("users", "users", "users", plan.users, None),
        ("minutes measured", "min", "minutes", plan.minutes, None),
        ("windows", "windows", "windows", len(spans), None),
        ("window", "s", "window_s", plan.window_s, None),
        ("warm-up", "s", "warmup_s", round(got.warmup_s, 1), None),
        ("set-up (users, pairing, albums)", "s", "setup_s", round(got.setup_s, 1), None),
    ]
    for label, unit, key, value, target in rows:
        report.single(label, unit, key, value, target)
    header = (
        "window",
        "s",
        "uploads",
        "late",
        "p50 s",
        "p99 s",
        "RSS MB",
        "RSS min",
        "RSS max",
        "mailbox max",
        "samples stored",
        "hub CPU %",
    )
    figures: dict[str, Figure] = {}
    for span in spans:
        figures.update(span.figures())
    report.section(
        "per window (s: from the start of the soak; RSS MB: median of the samples)",
        header,
        [span.row(got.start) for span in spans],
        figures,
    )
    report.note(
        "hub: run.py serve in its own process (RSS of that process alone; Mosquitto is its"
        f" child, reported apart); frames: run.py simulate --no-render --heartbeat"
        f" {plan.heartbeat_s:g} in another; load generator and observers in this one;"
        f" {os.cpu_count()} CPUs for all, shared with whatever else this machine runs"
    )
    per_album = sorted({album.frames for album in got.albums})
    report.note(
        f"an upload every {plan.every_s:g} s into {len(got.albums)} albums in turn"
        f" ({'/'.join(map(str, per_album))} frames each), each album keeping its newest"
        f" {plan.keep}; start RSS: median of the first window's samples (after the warm-up:"
        " one upload into every album displayed on all its frames), end RSS: of the last one"
    )
    report.note(
        "a late upload counts as"
        f" {DELIVERY_WAIT_S:g} s in the percentiles; p99 of fewer than 100 uploads is the"
        f" slowest; deepest mailbox at {deepest.path if deepest else '-'}; console reconnects:"
        f" {got.observed.console_reconnects}; assignments answered 503: {got.assign_retries}"
    )
    for line in errors[:3]:
        report.note(f"hub log: {line}")
    if got.frame_errors:
        report.note(
            "frames report an error event when a download fails (a 5xx, a timeout, a 404 for a"
            " photo deleted after the sync that listed it went out): the download is retried"
            " with the next heartbeat"
        )
    return report


def main(
    json_output: bool,
    *,
    minutes: float = MINUTES,
    frames: int = FRAMES,
    users: int = USERS,
    albums_per_user: int = ALBUMS_PER_USER,
    every_s: float = UPLOAD_EVERY_S,
    keep: int = KEEP,
    heartbeat_s: float = HEARTBEAT_S,
    window_s: float | None = None,
    seed: int = SEED,
) -> dict[str, Figure]:
    """Measure, print the tables (and the JSON last line); return the figures."""
    if minutes <= 0:
        raise ValueError("minutes must be positive")
    plan = Plan(
        frames=frames,
        users=users,
        albums_per_user=albums_per_user,
        minutes=minutes,
        window_s=window_s or (WINDOW_S if minutes >= LONG_RUN_MIN else SHORT_WINDOW_S),
        every_s=every_s,
        keep=keep,
        heartbeat_s=heartbeat_s,
        seed=seed,
    )
    generator = ThreadPoolExecutor(1)  # while the hub starts and the frames pair
    making = generator.submit(Photos, BASE_PHOTOS, seed)
    generator.shutdown(wait=False)
    with tempfile.TemporaryDirectory(prefix="framehub-bench-soak-") as tmp:
        directory = Path(tmp)
        log = directory / "hub.log"
        settings = {"FRAMES__HEARTBEAT_INTERVAL_S": f"{heartbeat_s:g}"}
        try:
            with HubProcess(directory, log=log, **settings) as hub:
                got = run_until_interrupted(measure, hub, directory, plan, making)
        except Exception:
            tail = log.read_text(errors="replace").splitlines()[-20:] if log.exists() else []
            _progress("the hub's log ends with:\n" + "\n".join(tail))
            raise
        log_lines = log.read_text(errors="replace").splitlines()
    return build_report(got, log_lines).finish(json_output)


if __name__ == "__main__":
    run_cli("python -m bench.soak", __doc__, main, minutes=MINUTES)
