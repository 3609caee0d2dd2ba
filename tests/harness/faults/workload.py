"""A scripted, deterministic mixed workload, driven only over the hub's public edges.

Two users upload photos into albums (one twice: the same photo), delete one, take one out of
an album and put another in, make and delete an album, a playlist and a rotation schedule;
frames join (paired over the API, then real ``frame_device`` programs in ``run.py simulate``
processes), one joins late and one leaves (its device deleted); an admin assigns albums to
frames, sends a frame a command, uploads a firmware image, cancels a draft campaign and runs
another to completion; frames' telemetry crosses an alert rule's threshold, published over
MQTT with the frame's own credentials, so alerts trigger, get acknowledged, resolve by
themselves or by hand, or stay active; at the end everything is read once. ``Workload.run``
does it in ``Workload.steps`` order; each step's photos, names and values are fixed, so two
runs end in the same state whatever ids and timings they had.

It needs only a base URL, an admin's token and a directory for the simulators
(``Workload(base_url, admin_token, work_dir)``): the same script runs against an in-process
hub (``running_hub``, for fault injection) and against ``run.py serve`` child processes that
are killed under it (``HubProcess``).

**Retries.** ``Api`` answers a 5xx or a dropped connection as a phone app does: it sends the
same request again (a short pause in between, doubling to 1 s, for at most ``RETRY_FOR_S``).
Which requests that is safe for:

* reads, ``PUT /devices/{id}/albums``, ``PATCH`` of a playlist, ``POST .../read-all`` and
  the alert acknowledgement are idempotent: repeated as they are;
* deletions are repeated; a 404 after an attempt whose outcome is unknown means the earlier
  attempt did it (likewise a 409 for resolving an alert or starting or cancelling a campaign);
* uploads are idempotent per user by content: the repeat answers 200 with the same photo;
* adding a photo to an album and removing it are idempotent in the album actor;
* creations (albums, alert rules, firmware, campaigns, playlists, schedules) are not: before
  repeating one whose outcome is unknown, the client looks for what it was creating (by its
  unique name) and takes it if it is there ("reconciled", counted);
* pairing a frame (``POST /devices``) cannot be made safe this way: the MQTT password and the
  frame token are shown once, so a pairing whose answer was lost leaves a device nobody has
  the credentials of. The client deletes that orphan and pairs again (counted in
  ``orphan_pairings``; such a device shows up as a deleted device in the end state);
* ``POST /users`` likewise shows the token once and has no listing to reconcile with: it is
  repeated (user names are unique), and a 409 on the repeat means the earlier attempt made
  the user and its token was lost: that fails the run. (The kill test makes its users before
  its first kill.)
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
import trio
from paho.mqtt.client import Client as PahoClient
from paho.mqtt.enums import CallbackAPIVersion

import wire
from actors.events import rfc3339
from frame_device import PAIRINGS_FILE
from tests.harness.photos import jpeg
from tests.harness.simulator import Simulator, simulate

RETRY_FOR_S = 120.0
"""How long a request is retried before the run gives up on it."""
REQUEST_TIMEOUT_S = 60.0
WAIT_S = 90.0
"""How long a step waits for the hub to get somewhere (filing, alerts, a campaign)."""
POLL_S = 0.1
PAIRING_ATTEMPTS = 20
CAMPAIGN_RETRIES = 3
RESEND_S = 3.0
"""A telemetry sample that changed nothing after this long is sent again (the frames' telemetry
is periodic; a sample lost in the hub is followed by the next)."""

MODEL = "sim-frame"
"""What ``run.py simulate`` frames are (hardware 1.0, firmware 1.0.0 at the factory)."""
HW_VERSION = "1.0"
FACTORY_VERSION = "1.0.0"
NEW_VERSION = "2.0.0"
FRAME_OPTIONS = ("--no-render", "--health-check-s", "1")
HUB_SETTINGS = {
    "FRAMES__HEARTBEAT_INTERVAL_S": "1",
    "FRAMES__COMMAND_TIMEOUT_S": "10",
    "OTA__PROGRESS_TIMEOUT_S": "30",
    "HTTP__RATE_LIMIT_PER_MINUTE": "1000000",
    "LOG_LEVEL": "WARNING",
}
"""Settings of every hub the workload runs against: one-second heartbeats so frames converge
quickly, command and OTA progress timeouts a test can wait out, no rate limit on one busy
client."""

ALERT_METRIC = "panel_temp_c"
"""A metric only the workload publishes (the simulated frames' own telemetry has others)."""
BREACH_VALUE = 47.0
CLEAR_VALUE = 30.0
ALERT_THRESHOLD = 40.0
ALERT_CLEAR = 35.0

USERS = "/api/v1/users"
API = "/api/v1"
ALBUMS = f"{API}/albums"
UPLOAD = "/api/v1/storage/photos/upload"
PHOTOS = "/api/v1/photos"
FILES = "/api/v1/files"
DEVICES = "/api/v1/devices"
METRICS = "/api/v1/metrics"
RULES = "/api/v1/alert-rules"
ALERTS = "/api/v1/alerts"
FIRMWARE = "/api/v1/firmware"
CAMPAIGNS = "/api/v1/campaigns"
PLAYLISTS = "/api/v1/playlists"
SCHEDULES = "/api/v1/schedules"
NOTIFICATIONS = "/api/v1/notifications"

RETRY_STATUSES = frozenset({500, 502, 503, 504})
Json = dict[str, Any]


@dataclass(frozen=True)
class PhotoSpec:
    """One photo of the script: its owner, its bytes (a seeded JPEG) and where it is filed."""

    key: str
    owner: str
    seed: int
    file_name: str
    album: str | None

    def data(self) -> bytes:
        return jpeg(640, 480, seed=self.seed)


PHOTO_SPECS = (
    PhotoSpec("p1", "alice", 11, "beach.jpg", "Family"),
    PhotoSpec("p2", "alice", 12, "dinner.jpg", "Family"),
    PhotoSpec("p3", "alice", 13, "mountain.jpg", "Trips"),
    PhotoSpec("p4", "bob", 14, "roses.jpg", "Garden"),
    PhotoSpec("p5", "bob", 15, "shed.jpg", None),
    PhotoSpec("p6", "alice", 16, "lake.jpg", "Trips"),
)
ALBUM_OWNERS = {"Family": "alice", "Trips": "alice", "Garden": "bob"}


def firmware_image(seed: int = 8) -> bytes:
    """The firmware bytes: seeded, so every run uploads the same image."""
    return random.Random(seed).randbytes(64 * 1024)


class RequestFailed(Exception):
    """A request got an answer retrying cannot change, or none within ``RETRY_FOR_S``."""


class OutcomeUnknown(RequestFailed):
    """A request not to be repeated blindly got a 5xx or lost its answer."""


# -- the API client ----------------------------------------------------------------------------


class Api:
    """The hub's HTTP API with the retry policy of the module's docstring; counts what it saw."""

    def __init__(self, base_url: str) -> None:
        self.client = httpx.AsyncClient(
            base_url=base_url, timeout=httpx.Timeout(REQUEST_TIMEOUT_S, connect=5.0)
        )
        self.requests = 0
        self.retries: Counter[str] = Counter()
        """Repeated requests, by route."""
        self.failures: Counter[str] = Counter()
        """What made them repeat: a status (``500``) or a transport error's name."""
        self.reconciled: Counter[str] = Counter()
        """Creations whose repeat found the earlier attempt's result instead."""
        self.settled: Counter[str] = Counter()
        """Repeats answered 404/409 because an earlier attempt had done it."""

    async def aclose(self) -> None:
        await self.client.aclose()

    async def send(
        self,
        label: str,
        method: str,
        url: str,
        *,
        token: str,
        expect: Sequence[int] = (200,),
        settled: Sequence[int] = (),
        reconcile: Callable[[], Awaitable[Json | None]] | None = None,
        retry_uncertain: bool = True,
        **request: Any,
    ) -> httpx.Response | Json:
        """Send until answered with one of ``expect`` (the response is returned).

        After an attempt whose outcome is unknown (a 5xx, or a connection lost after sending),
        ``settled`` statuses also count as done, and ``reconcile``, if given, is asked first
        whether the earlier attempt's result exists (its JSON is then returned instead).
        ``retry_uncertain`` False raises ``RequestFailed`` instead of repeating such an attempt
        (only a request that was never sent is repeated).
        """
        headers = {"Authorization": f"Bearer {token}"}
        deadline = trio.current_time() + RETRY_FOR_S
        pause = 0.05
        uncertain = False
        while True:
            if uncertain and reconcile is not None:
                found = await reconcile()
                if found is not None:
                    self.reconciled[label] += 1
                    return found
            self.requests += 1
            try:
                response = await self.client.request(method, url, headers=headers, **request)
            except (httpx.ConnectError, httpx.ConnectTimeout) as error:
                failure = type(error).__name__  # never sent: nothing happened
            except httpx.TransportError as error:
                if not retry_uncertain:
                    raise OutcomeUnknown(f"{label}: the answer was lost ({error!r})") from error
                failure = type(error).__name__
                uncertain = True
            else:
                status = response.status_code
                if status in expect:
                    return response
                if uncertain and status in settled:
                    self.settled[label] += 1
                    return response
                if status not in RETRY_STATUSES:
                    raise RequestFailed(f"{label}: {status} {response.text[:500]}")
                if not retry_uncertain:
                    raise OutcomeUnknown(f"{label}: {status}, outcome unknown")
                failure = str(status)
                uncertain = True
            self.failures[failure] += 1
            self.retries[label] += 1
            if trio.current_time() > deadline:
                raise RequestFailed(f"{label}: still failing after {RETRY_FOR_S:g} s ({failure})")
            await trio.sleep(pause)  # a client's backoff, not a synchronisation
            pause = min(1.0, pause * 2)

    async def json(self, label: str, method: str, url: str, **options: Any) -> Json:
        """``send``, then the JSON body (or what ``reconcile`` found)."""
        got = await self.send(label, method, url, **options)
        if isinstance(got, dict):
            return got
        if got.status_code == 204 or not got.content:
            return {}
        body: Json = got.json()
        return body

    async def get(self, label: str, url: str, token: str, **params: Any) -> Json:
        return await self.json(label, "GET", url, token=token, params=params or None)

    async def create(
        self,
        url: str,
        token: str,
        match: Callable[[Json], bool],
        *,
        listing: dict[str, Any] | None = None,
        **options: Any,
    ) -> Json:
        """``POST url`` (201). Creations are not idempotent: before a repeat, the listing at
        ``url`` (with ``listing`` as its query) is searched for the first item ``match``
        accepts, which an attempt whose answer was lost may have made."""
        path = url.removeprefix(API)

        async def existing() -> Json | None:
            found = await self.items(f"GET {path}", url, token, **(listing or {}))
            return next((item for item in found if match(item)), None)

        return await self.json(
            f"POST {path}", "POST", url, token=token, expect=(201,), reconcile=existing, **options
        )

    async def items(self, label: str, url: str, token: str, **params: Any) -> list[Json]:
        """Every item of a paged listing."""
        found: list[Json] = []
        cursor: str | None = None
        while True:
            query = {**params, "limit": 200, **({"cursor": cursor} if cursor else {})}
            page = await self.get(label, url, token, **query)
            found.extend(page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                return found


def _named(name: str) -> Callable[[Json], bool]:
    """Matches the item called ``name``."""
    return lambda item: bool(item["name"] == name)


# -- telemetry as a frame publishes it ---------------------------------------------------------


def _publish_once(credentials: wire.MqttCredentials, topic: str, payload: bytes) -> bool:
    """One QoS 1 publish with a frame's credentials (its own client id would take over the
    simulated frame's session, so a suffix). True once the broker acknowledged it."""
    client = PahoClient(
        CallbackAPIVersion.VERSION2,
        client_id=f"{credentials.client_id}-probe",
        clean_session=True,
    )
    client.username_pw_set(credentials.username, credentials.password)
    try:
        client.connect(credentials.host, credentials.port, keepalive=10)
    except OSError:
        return False
    client.loop_start()
    try:
        info = client.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout=5.0)
        return info.is_published()
    except (RuntimeError, ValueError):
        return False
    finally:
        client.disconnect()
        client.loop_stop()


# -- the workload ------------------------------------------------------------------------------


@dataclass
class FrameRecord:
    """A frame of the script: its pairing and the simulator directory it runs from."""

    name: str
    pairing: wire.Pairing
    sim_dir: Path
    deleted: bool = False

    @property
    def device_id(self) -> str:
        return self.pairing.device_id


@dataclass
class Ledger:
    """What the hub acknowledged and what the workload did, for the invariants and the report."""

    uploads: list[tuple[str, str, str, int]] = field(default_factory=list)
    """(owner, sha256, file name, status) of every upload answered 201 or 200."""
    deleted_photos: set[tuple[str, str]] = field(default_factory=set)
    """(owner, sha256) of photos the workload deleted."""
    samples_published: int = 0
    """Telemetry samples the broker acknowledged (PUBACK)."""
    orphan_pairings: int = 0
    commands: list[tuple[str, str]] = field(default_factory=list)
    """(command, how it ended) of each frame command the workload sent."""
    campaign_retries: list[list[tuple[str, str]]] = field(default_factory=list)
    """Each time the rollout paused on failures and was retried: (frame, error) of each."""
    steps: list[tuple[str, float]] = field(default_factory=list)
    """(step, seconds it took)."""


Hook = Callable[[int, str], Awaitable[None]]


class Workload:
    """The script (see the module's docstring). ``run`` performs it; the frames keep running
    until the ``async with`` ends, so the end state can be taken while they are on the wall."""

    def __init__(
        self, base_url: str, admin_token: str, work_dir: Path, *, on_step: Hook | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.admin = admin_token
        self.work_dir = work_dir
        self.api = Api(self.base_url)
        self.ledger = Ledger()
        self.tokens: dict[str, str] = {}
        self.user_ids: dict[str, str] = {}
        self.albums: dict[str, str] = {}
        """album name -> id"""
        self.photos: dict[str, str] = {}
        """photo key -> file id"""
        self.frames: dict[str, FrameRecord] = {}
        self.simulators: list[Simulator] = []
        self.campaign_id: str | None = None
        self._on_step = on_step
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> Workload:
        await self._stack.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        try:
            await self._stack.__aexit__(*exc)
        finally:
            with trio.CancelScope(shield=True):
                await self.api.aclose()

    @property
    def steps(self) -> list[tuple[str, Callable[[], Awaitable[None]]]]:
        return [
            ("users", self.make_users),
            ("albums", self.make_albums),
            ("frames join", self.first_frames),
            ("album assignments", self.assign_albums),
            ("uploads", self.upload_photos),
            ("filing", self.file_photos),
            ("deletions", self.delete_photos),
            ("a frame joins late", self.late_frame),
            ("alert rule", self.alert_rule),
            ("alert: acknowledged, then cleared", self.alert_cleared),
            ("alert: resolved by hand", self.alert_resolved),
            ("alert: left active", self.alert_active),
            ("playlists and a schedule", self.playlists),
            ("a command to a frame", self.command),
            ("firmware", self.upload_firmware),
            ("a draft campaign cancelled", self.cancelled_campaign),
            ("campaign", self.campaign),
            ("a frame leaves", self.frame_leaves),
            ("reads", self.reads),
        ]

    async def run(self) -> None:
        for index, (name, step) in enumerate(self.steps):
            if self._on_step is not None:
                await self._on_step(index, name)
            started = time.monotonic()
            await step()
            self.ledger.steps.append((name, time.monotonic() - started))

    # -- helpers -----------------------------------------------------------------------------

    async def until(
        self, check: Callable[[], Awaitable[bool]], what: str, timeout: float = WAIT_S
    ) -> None:
        """Re-check ``check`` until it holds (the hub may be another process): bounded."""
        with trio.move_on_after(timeout):
            while True:
                if await check():
                    return
                await trio.sleep(POLL_S)
        raise TimeoutError(f"the hub did not get there in {timeout:g} s: {what}")

    async def album_contents(self, album: str) -> set[str]:
        owner = ALBUM_OWNERS[album]
        detail = await self.api.get(
            "GET /albums/{id}", f"{ALBUMS}/{self.albums[album]}", self.tokens[owner]
        )
        return set(detail["file_ids"])

    def _write_pairings(self, sim_dir: Path, records: list[FrameRecord]) -> None:
        sim_dir.mkdir(parents=True, exist_ok=True)
        pairings = [record.pairing for record in records]
        (sim_dir / PAIRINGS_FILE).write_bytes(msgspec.json.encode(pairings))

    async def _start_simulator(self, sim_dir: Path, count: int) -> None:
        simulator = await self._stack.enter_async_context(
            simulate(self.base_url, self.admin, sim_dir, count, *FRAME_OPTIONS)
        )
        self.simulators.append(simulator)

    # -- steps -------------------------------------------------------------------------------

    async def make_users(self) -> None:
        for name in ("alice", "bob"):
            made = await self.api.json(
                "POST /users",
                "POST",
                USERS,
                token=self.admin,
                json={"name": name},
                expect=(201,),
            )
            self.tokens[name] = made["token"]
            self.user_ids[name] = made["user_id"]

    async def make_albums(self) -> None:
        for album, owner in ALBUM_OWNERS.items():
            made = await self.api.create(
                ALBUMS, self.tokens[owner], _named(album), json={"name": album}
            )
            self.albums[album] = made["album_id"]
        # One more, deleted again (its frames and the broker's access list follow).
        bob = self.tokens["bob"]
        old = await self.api.create(ALBUMS, bob, _named("Old"), json={"name": "Old"})
        await self.api.send(
            "DELETE /albums/{id}",
            "DELETE",
            f"{ALBUMS}/{old['album_id']}",
            token=bob,
            expect=(204,),
            settled=(404,),
        )

    async def pair(self, name: str) -> wire.Pairing:
        """Pair a frame as the admin app does, as a ``run.py simulate`` frame (see the module's
        docstring for a pairing whose answer was lost)."""
        body = {
            "name": name,
            "model": MODEL,
            "hw_version": HW_VERSION,
            "width": 1024,
            "height": 600,
            "orientation": "landscape",
        }
        for _ in range(PAIRING_ATTEMPTS):
            try:
                got = await self.api.json(
                    "POST /devices",
                    "POST",
                    DEVICES,
                    token=self.admin,
                    json=body,
                    expect=(201,),
                    retry_uncertain=False,
                )
                return msgspec.convert(got, wire.Pairing)
            except OutcomeUnknown:
                self.api.retries["POST /devices"] += 1
            # The answer was lost: a device of that name may exist without credentials.
            for device in await self.api.items("GET /devices", DEVICES, self.admin):
                if device["name"] == name:
                    await self.api.send(
                        "DELETE /devices/{id}",
                        "DELETE",
                        f"{DEVICES}/{device['device_id']}",
                        token=self.admin,
                        expect=(204,),
                        settled=(404,),
                    )
                    self.ledger.orphan_pairings += 1
        raise RequestFailed(f"could not pair {name} in {PAIRING_ATTEMPTS} attempts")

    async def first_frames(self) -> None:
        sim_dir = self.work_dir / "sim-a"
        records = [
            FrameRecord(name, await self.pair(name), sim_dir) for name in ("Hall", "Kitchen")
        ]
        for record in records:
            self.frames[record.name] = record
        self._write_pairings(sim_dir, records)
        await self._start_simulator(sim_dir, len(records))

    async def set_albums(self, frame: str, albums: list[str]) -> None:
        await self.api.send(
            "PUT /devices/{id}/albums",
            "PUT",
            f"{DEVICES}/{self.frames[frame].device_id}/albums",
            token=self.admin,
            json={"album_ids": [self.albums[a] for a in albums]},
        )

    async def assign_albums(self) -> None:
        await self.set_albums("Hall", ["Family", "Garden"])
        await self.set_albums("Kitchen", ["Trips"])

    async def upload(self, spec: PhotoSpec) -> tuple[str, int]:
        fields = None
        if spec.album is not None:
            metadata = {"album_id": self.albums[spec.album]}
            fields = {"metadata": msgspec.json.encode(metadata).decode()}
        response = await self.api.send(
            "POST /storage/photos/upload",
            "POST",
            UPLOAD,
            token=self.tokens[spec.owner],
            files={"file": (spec.file_name, spec.data(), "image/jpeg")},
            data=fields,
            expect=(201, 200),
        )
        assert isinstance(response, httpx.Response)
        body = response.json()
        self.ledger.uploads.append(
            (spec.owner, body["sha256"], body["file_name"], response.status_code)
        )
        self.photos[spec.key] = body["file_id"]
        return body["file_id"], response.status_code

    async def upload_photos(self) -> None:
        for spec in PHOTO_SPECS[:5]:
            await self.upload(spec)
        # The same bytes again from the same user: the same photo (200), not a copy.
        again, _ = await self.upload(PHOTO_SPECS[1])
        assert again == self.photos["p2"], (again, self.photos)

    async def file_photos(self) -> None:
        await self.api.json(
            "POST /albums/{id}/photos",
            "POST",
            f"{ALBUMS}/{self.albums['Garden']}/photos",
            token=self.tokens["bob"],
            json={"file_id": self.photos["p5"]},
            expect=(200, 201),
        )
        # Filing follows each upload's analysis: wait for it, so that what comes next
        # (deletions, removals) finds the photos where every run finds them.
        for album in ALBUM_OWNERS:
            wanted = {
                self.photos[s.key] for s in PHOTO_SPECS if s.album == album and s.key in self.photos
            }
            if album == "Garden":
                wanted.add(self.photos["p5"])

            async def filed(album: str = album, wanted: set[str] = wanted) -> bool:
                return wanted <= await self.album_contents(album)

            await self.until(filed, f"photos filed into {album}")

    async def delete_photos(self) -> None:
        p1 = next(s for s in PHOTO_SPECS if s.key == "p1")
        await self.api.send(
            "DELETE /files/{id}",
            "DELETE",
            f"{FILES}/{self.photos['p1']}",
            token=self.tokens["alice"],
            expect=(204,),
            settled=(404,),
        )
        sha = next(u[1] for u in self.ledger.uploads if u[2] == p1.file_name)
        self.ledger.deleted_photos.add(("alice", sha))
        await self.api.send(
            "DELETE /albums/{id}/photos/{file_id}",
            "DELETE",
            f"{ALBUMS}/{self.albums['Trips']}/photos/{self.photos['p3']}",
            token=self.tokens["alice"],
            expect=(204,),
        )

    async def late_frame(self) -> None:
        sim_dir = self.work_dir / "sim-b"
        record = FrameRecord("Study", await self.pair("Study"), sim_dir)
        self.frames["Study"] = record
        self._write_pairings(sim_dir, [record])
        await self._start_simulator(sim_dir, 1)
        await self.set_albums("Study", ["Family", "Trips"])
        await self.upload(PHOTO_SPECS[5])

    # -- alerts --------------------------------------------------------------------------------

    async def alert_rule(self) -> None:
        await self.api.json(
            "POST /metrics",
            "POST",
            METRICS,
            token=self.admin,
            json={"name": ALERT_METRIC, "unit": "°C"},
            expect=(200, 201),
        )
        rule = {
            "metric": ALERT_METRIC,
            "comparison": ">",
            "threshold": ALERT_THRESHOLD,
            "clear_threshold": ALERT_CLEAR,
            "for_seconds": 0,
            "severity": "warning",
            "model": MODEL,
        }

        await self.api.create(
            RULES, self.admin, lambda r: bool(r["metric"] == ALERT_METRIC), json=rule
        )

    async def alerts_of(self, frame: str) -> list[Json]:
        return await self.api.items(
            "GET /alerts", ALERTS, self.admin, device_id=self.frames[frame].device_id
        )

    async def sample(self, frame: str, value: float) -> None:
        """One telemetry sample of ``frame``, as the frame publishes it (QoS 1, its
        credentials); published again until the broker takes it (it may be restarting)."""
        record = self.frames[frame]
        message = wire.Telemetry(
            frame_id=record.device_id,
            metrics={ALERT_METRIC: value},
            timestamp=rfc3339(time.time()),
        )
        payload = msgspec.json.encode(message)
        topic = wire.frame_topic(record.device_id, "telemetry")
        with trio.fail_after(WAIT_S):
            while True:
                if await trio.to_thread.run_sync(
                    _publish_once, record.pairing.mqtt, topic, payload
                ):
                    break
                await trio.sleep(0.2)  # the broker is away (restarting): try again shortly
        self.ledger.samples_published += 1

    async def telemetry_until(
        self, frame: str, value: float, check: Callable[[list[Json]], bool], what: str
    ) -> list[Json]:
        """Publish ``value`` as ``frame`` until its alerts satisfy ``check``. A frame sends
        telemetry periodically; a sample the hub lost is followed by the next one."""
        seen: list[list[Json]] = []

        async def holds() -> bool:
            seen[:] = [await self.alerts_of(frame)]
            return check(seen[0])

        deadline = trio.current_time() + WAIT_S
        while True:
            await self.sample(frame, value)
            try:
                await self.until(holds, what, RESEND_S)
                return seen[0]
            except TimeoutError:
                if trio.current_time() > deadline:
                    raise

    async def alert_cleared(self) -> None:
        alerts = await self.telemetry_until(
            "Hall", BREACH_VALUE, _has("active"), "Hall's alert triggered"
        )
        alert = next(a for a in alerts if a["state"] == "active")
        await self.api.send(
            "POST /alerts/{id}/acknowledge",
            "POST",
            f"{ALERTS}/{alert['alert_id']}/acknowledge",
            token=self.admin,
        )
        await self.telemetry_until(
            "Hall", CLEAR_VALUE, _all_resolved, "Hall's alert cleared by telemetry"
        )

    async def alert_resolved(self) -> None:
        alerts = await self.telemetry_until(
            "Kitchen", BREACH_VALUE, _has("active"), "Kitchen's alert triggered"
        )
        alert = next(a for a in alerts if a["state"] == "active")
        await self.api.send(
            "POST /alerts/{id}/resolve",
            "POST",
            f"{ALERTS}/{alert['alert_id']}/resolve",
            token=self.admin,
            json={"note": "checked the radiator"},
            settled=(409,),
        )

    async def alert_active(self) -> None:
        await self.telemetry_until("Study", BREACH_VALUE, _has("active"), "Study's alert triggered")

    # -- playlists and schedules ---------------------------------------------------------------

    async def playlists(self) -> None:
        alice = self.tokens["alice"]

        playlist = await self.api.create(
            PLAYLISTS,
            alice,
            _named("Best"),
            json={"name": "Best", "file_ids": [self.photos["p2"]]},
        )
        url = f"{PLAYLISTS}/{playlist['playlist_id']}"
        await self.api.send(
            "PATCH /playlists/{id}",
            "PATCH",
            url,
            token=alice,
            json={"file_ids": [self.photos["p2"], self.photos["p6"]]},
        )
        await self.api.get("GET /playlists/{id}", url, alice)
        hall = self.frames["Hall"].device_id

        schedule = await self.api.create(
            SCHEDULES,
            alice,
            lambda _: True,  # the frame's only schedule
            listing={"frame_id": hall},
            json={"frame_id": hall, "interval_s": 600, "playlist_id": playlist["playlist_id"]},
        )
        await self.api.send(
            "DELETE /schedules/{id}",
            "DELETE",
            f"{SCHEDULES}/{schedule['schedule_id']}",
            token=alice,
            expect=(204,),
            settled=(404,),
        )
        await self.api.send(
            "DELETE /playlists/{id}", "DELETE", url, token=alice, expect=(204,), settled=(404,)
        )

    # -- frame commands ------------------------------------------------------------------------

    async def command(self) -> None:
        """Show a photo on the hall's frame now; wait for the frame's answer (or the hub
        giving up on it) and record how it ended. A command whose photo the frame's proxy
        does not know yet (its albums are still being refreshed) is a 404: sent again."""
        url = f"{DEVICES}/{self.frames['Hall'].device_id}/commands"
        body = {"command": "show", "args": {"file_id": self.photos["p2"]}}
        deadline = trio.current_time() + WAIT_S
        while True:
            response = await self.api.send(
                "POST /devices/{id}/commands",
                "POST",
                url,
                token=self.admin,
                json=body,
                expect=(202, 404),
            )
            assert isinstance(response, httpx.Response)
            if response.status_code == 202:
                break
            if trio.current_time() > deadline:
                raise RequestFailed(f"the hall's frame never knew p2: {response.text}")
            await trio.sleep(POLL_S)  # the proxy's refresh is under way
        sent = response.json()
        views: list[Json] = []

        async def answered() -> bool:
            views[:] = [
                await self.api.get(
                    "GET /devices/{id}/commands/{command_id}",
                    f"{url}/{sent['command_id']}",
                    self.admin,
                )
            ]
            return bool(views[0]["state"] != "pending")

        await self.until(answered, "the frame answered its command")
        self.ledger.commands.append((sent["command"], views[0]["state"]))

    # -- firmware and campaigns ----------------------------------------------------------------

    async def upload_firmware(self) -> None:
        async def existing() -> Json | None:
            images = await self.api.items("GET /firmware", FIRMWARE, self.admin)
            return next((f for f in images if f["version"] == NEW_VERSION), None)

        self.firmware = await self.api.json(
            "POST /firmware",
            "POST",
            FIRMWARE,
            token=self.admin,
            files={"file": ("fw.bin", firmware_image(), "application/octet-stream")},
            data={"version": NEW_VERSION, "model": MODEL, "min_hw_version": HW_VERSION},
            expect=(201,),
            settled=(409,),
            reconcile=existing,
        )
        if "firmware_id" not in self.firmware:  # a 409: the earlier attempt stored it
            found = await existing()
            assert found is not None
            self.firmware = found

    async def new_campaign(self, name: str) -> Json:
        return await self.api.create(
            CAMPAIGNS,
            self.admin,
            _named(name),
            json={
                "name": name,
                "firmware_id": self.firmware["firmware_id"],
                "models": [MODEL],
                "batch_size": 3,
            },
        )

    async def campaign_action(self, campaign_id: str, action: str) -> None:
        await self.api.send(
            f"POST /campaigns/{{id}}/{action}",
            "POST",
            f"{CAMPAIGNS}/{campaign_id}/{action}",
            token=self.admin,
            settled=(409,),
        )

    async def cancelled_campaign(self) -> None:
        spare = await self.new_campaign("spare")
        await self.campaign_action(spare["campaign_id"], "cancel")

    async def campaign(self) -> None:
        """Roll the firmware out; if the campaign pauses on failed updates, do what an admin
        does: retry the failed frames (at most ``CAMPAIGN_RETRIES`` times, each recorded in
        the ledger with the frames' errors). A fault-free run never needs to."""
        made = await self.new_campaign("rollout")
        self.campaign_id = made["campaign_id"]
        await self.campaign_action(made["campaign_id"], "start")
        url = f"{CAMPAIGNS}/{made['campaign_id']}"
        views: list[Json] = []
        names = {record.device_id: name for name, record in self.frames.items()}

        async def finished() -> bool:
            views[:] = [await self.api.get("GET /campaigns/{id}", url, self.admin)]
            return views[0]["state"] not in ("draft", "running")

        for _ in range(CAMPAIGN_RETRIES + 1):
            try:
                await self.until(finished, "the campaign finished", timeout=2 * WAIT_S)
            except TimeoutError as error:
                raise TimeoutError(f"{error}; last seen: {views}") from None
            view = views[0]
            failed = [d for d in view["devices"] if d["state"] in ("failed", "rolled_back")]
            if view["state"] != "paused" or not failed:
                return
            self.ledger.campaign_retries.append(
                [(names.get(d["device_id"], d["device_id"]), d["error"]) for d in failed]
            )
            await self.campaign_action(made["campaign_id"], "retry-failed")

    async def frame_leaves(self) -> None:
        record = self.frames["Kitchen"]
        await self.api.send(
            "DELETE /devices/{id}",
            "DELETE",
            f"{DEVICES}/{record.device_id}",
            token=self.admin,
            expect=(204,),
            settled=(404,),
        )
        record.deleted = True

    # -- reads ---------------------------------------------------------------------------------

    async def reads(self) -> None:
        """What the apps and the console read, once over every listing and view."""
        admin = self.admin
        for user in ("alice", "bob"):
            token = self.tokens[user]
            for photo in await self.api.items("GET /photos", PHOTOS, token):
                await self.api.get("GET /photos/{id}", f"{PHOTOS}/{photo['file_id']}", token)
                for size in ("original", "thumbnail"):
                    await self.api.send(
                        "GET /files/download/{id}",
                        "GET",
                        f"/api/v1/files/download/{photo['file_id']}",
                        token=token,
                        params={"size": size},
                    )
            await self.api.items("GET /albums", ALBUMS, token)
            await self.api.items("GET /playlists", PLAYLISTS, token)
        for device in await self.api.items("GET /devices", DEVICES, admin):
            await self.api.get("GET /devices/{id}", f"{DEVICES}/{device['device_id']}", admin)
            await self.api.get(
                "GET /devices/{id}/telemetry",
                f"{DEVICES}/{device['device_id']}/telemetry",
                admin,
                metric=ALERT_METRIC,
            )
        for image in await self.api.items("GET /firmware", FIRMWARE, admin):
            await self.api.get("GET /firmware/{id}", f"{FIRMWARE}/{image['firmware_id']}", admin)
        for campaign in await self.api.items("GET /campaigns", CAMPAIGNS, admin):
            view = await self.api.get(
                "GET /campaigns/{id}", f"{CAMPAIGNS}/{campaign['campaign_id']}", admin
            )
            for target in view["devices"][:1]:
                await self.api.get(
                    "GET /campaigns/{id}/devices/{device_id}",
                    f"{CAMPAIGNS}/{campaign['campaign_id']}/devices/{target['device_id']}",
                    admin,
                )
        await self.api.items("GET /alert-rules", RULES, admin)
        await self.api.items("GET /alerts", ALERTS, admin)
        await self.api.items("GET /metrics (definitions)", METRICS, admin)
        await self.api.send("GET /metrics", "GET", "/metrics", token=admin)
        notifications = await self.api.items("GET /notifications", NOTIFICATIONS, admin)
        for notification in notifications[:1]:
            await self.api.send(
                "POST /notifications/{id}/read",
                "POST",
                f"{NOTIFICATIONS}/{notification['notification_id']}/read",
                token=admin,
            )
        await self.api.send(
            "POST /notifications/read-all", "POST", f"{NOTIFICATIONS}/read-all", token=admin
        )

    def live_frames(self) -> list[FrameRecord]:
        return [record for record in self.frames.values() if not record.deleted]


def _has(state: str) -> Callable[[list[Json]], bool]:
    return lambda alerts: any(alert["state"] == state for alert in alerts)


def _all_resolved(alerts: list[Json]) -> bool:
    return bool(alerts) and all(alert["state"] == "resolved" for alert in alerts)
