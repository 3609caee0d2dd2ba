"""One photo frame: MQTT in, HTTP downloads, a PNG for its screen, status and heartbeats out.

Read it as a firmware author would: ``Frame`` is the power switch (boot, reboot, watchdog);
``_Boot`` is one power-on, whose lanes each do one job in order and never wait for another:

* connection: stay connected to the broker, route every message to its lane;
* sync: apply the hub's syncs (download, prune, report) and retry missing downloads;
* albums: live ``photo_added`` / ``photo_removed`` of the albums the frame shows;
* commands: the hub's commands, each answered once by a status with its ``command_id``
  (firmware commands are answered on ``frames/<id>/ota`` instead, see ``_ota``);
* rotation: put the next photo up when the schedule says so, dark in quiet hours;
* heartbeat: heartbeats and telemetry;
* ota: firmware updates, and the health check of a firmware booted on trial.

Lanes share the state of the boot; they change it only between awaits (one event loop), and
everything that must survive a reboot is saved to ``state.json`` right after it changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import shutil
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiomqtt
import httpx
import msgspec
from PIL import Image

import wire

from ._cache import PhotoCache, sha256_of, write_atomically
from ._display import Renderer
from ._firmware import FIRMWARE_COMMANDS, FIRMWARE_DIR, Firmware, record_crash
from ._ota import Updater
from ._schedule import Clock, LocalClock, Schedule, ScreenOff
from ._state import (
    EventSink,
    FrameConfig,
    FrameEvent,
    FrameState,
    FrameStats,
    Photo,
    encode_state,
    load_state,
    utc_timestamp,
)

log = logging.getLogger("frame_device")

MAX_DOWNLOADS = 4
"""Downloads a frame runs at once (its Wi-Fi and the hub are shared)."""
MAX_PHOTO_BYTES = 64 * 1024 * 1024
HTTP_TIMEOUT_S = 30.0
PUBLISH_TIMEOUT_S = 10.0
BACKOFF_MIN_S = 0.2
BACKOFF_MAX_S = 5.0
REBOOT_PAUSE_S = 0.5
CRASH_PAUSE_S = 2.0
ERROR_PAUSE_S = 1.0
"""Before the rotation tries again after a photo could not be drawn."""
CUT_TIMEOUT_S = 2.0
MIN_HEARTBEAT_S = 1.0
"""The fastest heartbeat a frame accepts, whatever a sync says (0 would spin)."""

STATE_FILE = "state.json"
DISPLAY_FILE = "display.png"
PHOTOS_DIR = "photos"

EVENT_OF_STATUS = {"command_done": "command"}
"""Statuses are reported as events of the same name, except these."""

_encode = msgspec.json.Encoder().encode
_decode_sync = msgspec.json.Decoder(wire.FrameSync).decode
_decode_command = msgspec.json.Decoder(wire.FrameCommand).decode
_decode_added = msgspec.json.Decoder(wire.PhotoAdded).decode
_decode_removed = msgspec.json.Decoder(wire.PhotoRemoved).decode

AlbumUpdate = wire.PhotoAdded | wire.PhotoRemoved


class DownloadFailed(Exception):
    """A photo could not be fetched, was too big, or did not hash to what the hub said."""


class Frame:
    """A photo frame on the wall, until cancelled.

    ``http`` and ``renderer`` may be shared by many frames in one process (the simulator);
    ``on_event`` hears every observable outcome; ``clock`` and ``rng`` are injectable for
    tests. ``stats`` counts what happened across reboots.
    """

    def __init__(
        self,
        config: FrameConfig,
        *,
        http: httpx.AsyncClient | None = None,
        renderer: Renderer | None = None,
        on_event: EventSink | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.stats = FrameStats()
        self.renderer = renderer or Renderer()
        self.clock: Clock = clock or LocalClock()
        self.rng = rng or random.Random()
        self._http = http
        self._on_event = on_event

    async def run(self) -> None:
        """Boot, and boot again after a ``restart`` command or a crash (the watchdog): each
        boot starts from what is on disk, like a frame whose power was cut."""
        async with contextlib.AsyncExitStack() as stack:
            http = self._http
            if http is None:
                http = await stack.enter_async_context(httpx.AsyncClient(timeout=HTTP_TIMEOUT_S))
            while True:
                self.stats.boots += 1
                boot = _Boot(self, http)
                try:
                    await boot.run()
                    pause = REBOOT_PAUSE_S
                except Exception as error:
                    self.stats.crashes += 1
                    log.exception("frame %s crashed; rebooting", self.config.device_id)
                    # A crash of a firmware on trial ends its trial: the bootloader goes
                    # back to the previous firmware at once.
                    trial_over = await boot.crashed(f"{type(error).__name__}: {error}")
                    pause = REBOOT_PAUSE_S if trial_over else CRASH_PAUSE_S
                await asyncio.sleep(pause)

    def emit(
        self,
        event: str,
        *,
        file_id: str | None = None,
        command_id: str | None = None,
        sync_version: int | None = None,
        state: str | None = None,
        version: str | None = None,
        progress: float | None = None,
        error: str | None = None,
    ) -> None:
        if self._on_event is not None:
            self._on_event(
                FrameEvent(
                    t=time.time(),
                    frame_id=self.config.device_id,
                    event=event,
                    file_id=file_id,
                    command_id=command_id,
                    sync_version=sync_version,
                    state=state,
                    version=version,
                    progress=progress,
                    error=error,
                )
            )


class _Sensors:
    """Plausible readings: bounded random walks that drift back to a typical value."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self.temperature_c = 24.0
        self.brightness = 70.0
        self.wifi_rssi = -55.0

    def read(self, *, screen_on: bool) -> dict[str, float]:
        self.temperature_c = self._walk(self.temperature_c, 0.3, 24.0, 18.0, 32.0)
        self.brightness = self._walk(self.brightness, 5.0, 70.0, 0.0, 100.0)
        self.wifi_rssi = self._walk(self.wifi_rssi, 2.0, -55.0, -90.0, -30.0)
        return {
            "temperature_c": round(self.temperature_c, 2),
            "brightness": round(self.brightness if screen_on else 0.0, 1),
            "wifi_rssi": round(self.wifi_rssi, 1),
        }

    def _walk(self, value: float, step: float, centre: float, low: float, high: float) -> float:
        value += self._rng.uniform(-step, step) + (centre - value) * 0.05
        return min(high, max(low, value))


def _cut(client: aiomqtt.Client) -> None:
    """Drop the TCP connection without a DISCONNECT packet, as a power cut would, so the
    broker publishes the frame's will. aiomqtt only offers the clean disconnect (which
    cancels the will), hence the reach into its paho client."""
    sock = client._client.socket()
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


async def _stop_all(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait until all have ended, cancelling again every 0.1 s.

    Not a TaskGroup, because on Python 3.11 ``asyncio.wait_for`` (which aiomqtt awaits
    inside every publish and subscribe) can swallow a cancellation that arrives just as its
    operation completes; a task cancelled only once could then run on forever.
    """
    running = {task for task in tasks if not task.done()}
    pending = running
    cancelled = False
    while pending:
        for task in pending:
            task.cancel()
        try:
            _, pending = await asyncio.wait(pending, timeout=0.1)
        except asyncio.CancelledError:
            cancelled = True  # still wait for the lanes; the caller is told below
    for task in running:
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed while stopping", task.get_name(), exc_info=task.exception())
    if cancelled:
        raise asyncio.CancelledError


class _Boot:
    """One power-on of the frame: everything it holds in memory until the next reboot."""

    def __init__(self, frame: Frame, http: httpx.AsyncClient) -> None:
        self.frame = frame
        self.config = frame.config
        self.http = http
        self.id = frame.config.device_id
        self.started = time.monotonic()
        self.cache = PhotoCache(self.config.data_dir / PHOTOS_DIR)
        self.state = FrameState()
        self.schedule = Schedule(frame.clock, frame.rng)
        self.sensors = _Sensors(frame.rng)
        self.playlist: list[Photo] = []
        self.panel = (self.config.panel_width, self.config.panel_height)
        self.requested_sha: str | None = None
        """A photo on screen by request that is in no album of the frame: kept in the cache
        until another photo replaces it."""
        self.client: aiomqtt.Client | None = None
        self.albums_followed: set[str] = set()
        self.heartbeats = 0
        self.downloads = asyncio.Semaphore(MAX_DOWNLOADS)
        self.state_lock = asyncio.Lock()
        self.display_lock = asyncio.Lock()
        self.pending_sync: wire.FrameSync | None = None
        self.sync_commands: list[str] = []
        self.running_commands: set[str] = set()
        self.sync_wanted = asyncio.Event()
        self.schedule_changed = asyncio.Event()
        self.connection_closed = asyncio.Event()
        self.power_off = asyncio.Event()
        self.album_updates: asyncio.Queue[AlbumUpdate] = asyncio.Queue()
        self.commands: asyncio.Queue[wire.FrameCommand] = asyncio.Queue()
        self.ota: Updater | None = None
        self.firmware_version = frame.config.firmware_version
        self.heartbeat_sent = asyncio.Event()
        """A heartbeat of this boot reached the broker (for the health check)."""
        self.screen_updated = asyncio.Event()
        """The screen was drawn (or went dark) in this boot (for the health check)."""

    async def run(self) -> None:
        """Boot the active firmware slot, show what the disk holds before going online (the
        hub or broker may be down), then run the lanes until a reboot is asked for."""
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        firmware = await asyncio.to_thread(
            Firmware.open, self.config.data_dir / FIRMWARE_DIR, self.config.firmware_version
        )
        self.ota = ota = Updater(self, firmware)
        await ota.boot()
        self.firmware_version = ota.running_version
        await self.cache.load()
        self.state = await asyncio.to_thread(load_state, self.config.data_dir / STATE_FILE)
        if self.state.sync is not None:
            self._configure(self.state.sync)
        self._refresh()
        current = self.state.current_file_id
        await self._show(current if current in self.schedule.photos else self.schedule.next_photo())
        lanes = [
            asyncio.create_task(self._connection_lane(), name=f"{self.id} connection"),
            asyncio.create_task(self._sync_lane(), name=f"{self.id} sync"),
            asyncio.create_task(self._album_lane(), name=f"{self.id} albums"),
            asyncio.create_task(self._command_lane(), name=f"{self.id} commands"),
            asyncio.create_task(self._rotation_lane(), name=f"{self.id} rotation"),
            asyncio.create_task(self._heartbeat_lane(), name=f"{self.id} heartbeat"),
            asyncio.create_task(ota.lane(), name=f"{self.id} ota"),
        ]
        power_off = asyncio.create_task(self.power_off.wait())
        try:
            done, _ = await asyncio.wait([power_off, *lanes], return_when=asyncio.FIRST_COMPLETED)
            for lane in done - {power_off}:
                lane.result()  # a lane that ended has crashed: raise its error here
                raise RuntimeError(f"{lane.get_name()} ended")
        finally:
            await _stop_all([power_off, *lanes])

    async def crashed(self, error: str) -> bool:
        """This boot crashed with ``error``; True if that ended a firmware trial."""
        try:
            if self.ota is not None:
                return await self.ota.crashed(error)
            directory = self.config.data_dir / FIRMWARE_DIR
            return await asyncio.to_thread(record_crash, directory, error)
        except OSError as failure:  # the bootloader counts the trial boots instead
            log.error("frame %s cannot record its crash: %s", self.id, failure)
            return False

    # -- connection ----------------------------------------------------------------------

    def _topic(self, leaf: str) -> str:
        return wire.frame_topic(self.id, leaf)

    def _mqtt_client(self) -> aiomqtt.Client:
        return aiomqtt.Client(
            self.config.mqtt_host,
            self.config.mqtt_port,
            identifier=self.config.client_id,
            username=self.config.mqtt_username,
            password=self.config.mqtt_password,
            clean_session=False,
            will=aiomqtt.Will(self._topic("availability"), wire.OFFLINE, qos=1, retain=True),
        )

    async def _connection_lane(self) -> None:
        """Stay connected, forever: back off from 0.2 s doubling to 5 s, with jitter."""
        backoff = BACKOFF_MIN_S
        while True:
            try:
                async with self._mqtt_client() as client:
                    backoff = BACKOFF_MIN_S
                    try:
                        await self._online(client)
                        async for message in client.messages:
                            self._route(message)
                    except asyncio.CancelledError:
                        if not self.power_off.is_set():
                            await self._say_goodbye(client)
                        raise
                    finally:
                        self.client = None
            except aiomqtt.MqttError as error:
                log.info("frame %s: MQTT connection lost or refused: %s", self.id, error)
            self.connection_closed.set()
            await asyncio.sleep(backoff * self.frame.rng.uniform(0.75, 1.25))
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _online(self, client: aiomqtt.Client) -> None:
        """On every connect: announce, (re)subscribe, heartbeat, finish a restart."""
        self.client = client
        self.connection_closed.clear()
        self.frame.stats.connects += 1
        await client.publish(self._topic("availability"), wire.ONLINE, qos=1, retain=True)
        albums = self._album_ids()
        topics = [(self._topic("sync"), 2), (self._topic("command"), 2)]
        topics += [(wire.album_topic(album_id, "#"), 1) for album_id in albums]
        await client.subscribe(topics)
        self.albums_followed = set(albums)
        self.frame.emit("connected")
        await self._heartbeat()
        restarted = self.state.restart_command_id
        if restarted is not None:
            self.state.restart_command_id = None
            await self._report("command_done", command_id=restarted)
        if self.ota is not None:
            await self.ota.flush()

    async def _say_goodbye(self, client: aiomqtt.Client) -> None:
        """A frame switched off properly says so itself (its will is only for power cuts)."""
        with contextlib.suppress(aiomqtt.MqttError):
            await client.publish(
                self._topic("availability"), wire.OFFLINE, qos=1, retain=True, timeout=1.0
            )

    def _route(self, message: aiomqtt.Message) -> None:
        """Hand a message to its lane. Nothing in a payload can make this raise."""
        topic = message.topic.value
        payload = message.payload
        log.debug("frame %s received %d bytes on %s", self.id, len(payload), topic)
        limit = wire.MAX_SYNC_BYTES if topic == self._topic("sync") else wire.MAX_PAYLOAD_BYTES
        if len(payload) > limit:
            self._drop(topic, f"{len(payload)} bytes is over the limit")
        else:
            try:
                self._route_payload(topic, payload)
            except msgspec.DecodeError as error:
                self._drop(topic, str(error))

    def _route_payload(self, topic: str, payload: bytes) -> None:
        if topic == self._topic("sync"):
            sync = _decode_sync(payload)
            if sync.frame_id != self.id:
                self._drop(topic, f"a sync for another frame ({sync.frame_id})")
                return
            self.pending_sync = sync
            self.sync_wanted.set()
        elif topic == self._topic("command"):
            command = _decode_command(payload)
            if not self.config.ignore_commands:
                self.commands.put_nowait(command)
        else:
            album = wire.split_album_topic(topic)
            update: AlbumUpdate
            if album is not None and album[1] == "photo_added":
                update = _decode_added(payload)
            elif album is not None and album[1] == "photo_removed":
                update = _decode_removed(payload)
            else:
                self._drop(topic, "not a topic a frame listens to")
                return
            if update.album_id != album[0]:
                self._drop(topic, f"the payload names album {update.album_id}")
                return
            self.album_updates.put_nowait(update)

    def _drop(self, topic: str, reason: str) -> None:
        self.frame.stats.dropped_payloads += 1
        log.warning("frame %s dropped a message on %s: %s", self.id, topic, reason)

    async def _publish(
        self, topic: str, payload: bytes | str, *, qos: int, retain: bool = False
    ) -> bool:
        """Publish if connected; offline, the message is dropped (the hub learns the state
        from the next heartbeat and sync)."""
        client = self.client
        if client is None:
            return False
        try:
            await client.publish(topic, payload, qos=qos, retain=retain, timeout=PUBLISH_TIMEOUT_S)
        except aiomqtt.MqttError as error:
            log.info("frame %s could not publish on %s: %s", self.id, topic, error)
            return False
        return True

    async def publish_ota(self, progress: wire.OtaProgress) -> bool:
        return await self._publish(self._topic("ota"), _encode(progress), qos=1)

    async def restart(self) -> None:
        await self._reboot()

    def emit_ota(
        self,
        state: str,
        *,
        command_id: str | None,
        version: str | None,
        progress: float | None = None,
        error: str | None = None,
    ) -> None:
        self.frame.emit(
            "ota",
            command_id=command_id,
            state=state,
            version=version,
            progress=progress,
            error=error,
        )

    async def _reboot(self) -> None:
        """Power-cut and boot again: the connection drops without a goodbye, then
        everything in memory is forgotten."""
        client = self.client
        if client is not None:
            _cut(client)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CUT_TIMEOUT_S):
                    await self.connection_closed.wait()
        self.power_off.set()

    # -- state ---------------------------------------------------------------------------

    async def _save(self) -> None:
        async with self.state_lock:
            data = encode_state(self.state)
            path = self.config.data_dir / STATE_FILE
            await asyncio.to_thread(write_atomically, path, data, durable=True)

    def _album_ids(self) -> list[str]:
        return list(self.state.sync.album_ids) if self.state.sync is not None else []

    def _configure(self, sync: wire.FrameSync) -> None:
        if sync.panel_width > 0 and sync.panel_height > 0:
            self.panel = (sync.panel_width, sync.panel_height)
        self.schedule.configure(sync.display)

    def _refresh(self) -> None:
        """Recompute the playlist; the schedule rotates over the part that is cached."""
        self.playlist = self.state.playlist()
        self.schedule.set_photos([p.file_id for p in self.playlist if p.sha256 in self.cache])
        self.schedule_changed.set()

    def _sha_of(self, file_id: str) -> str | None:
        return next((p.sha256 for p in self.playlist if p.file_id == file_id and p.sha256), None)

    def _learn(self, photo: Photo, sha256: str) -> None:
        """A live addition has been downloaded: now its hash is known."""
        self.state.added = [
            msgspec.structs.replace(p, sha256=sha256) if p.key == photo.key else p
            for p in self.state.added
        ]
        self._refresh()

    def _frame_url(self, file_id: str) -> str:
        base = self.config.hub_url.rstrip("/")
        return f"{base}/api/v1/files/download/{quote(file_id, safe='')}?size=frame"

    # -- downloads -----------------------------------------------------------------------

    async def _fetch(self, url: str, expected_sha256: str) -> str:
        """Download a photo into the cache and return its SHA-256, which must equal
        ``expected_sha256`` when that is given."""
        try:
            sha = await self._fetch_unchecked(url, expected_sha256)
        except DownloadFailed:
            self.frame.stats.download_failures += 1
            raise
        self.frame.stats.downloads += 1
        return sha

    async def _fetch_unchecked(self, url: str, expected_sha256: str) -> str:
        target = httpx.URL(self.config.hub_url).join(url)
        headers = {"Authorization": f"Bearer {self.config.token}"}
        data = bytearray()
        async with self.downloads:
            try:
                async with self.http.stream("GET", target, headers=headers) as response:
                    if response.status_code != 200:
                        raise DownloadFailed(f"HTTP {response.status_code} for {target}")
                    async for chunk in response.aiter_bytes():
                        data += chunk
                        if len(data) > MAX_PHOTO_BYTES:
                            raise DownloadFailed(f"{target} is over {MAX_PHOTO_BYTES} bytes")
            except httpx.HTTPError as error:
                raise DownloadFailed(f"{type(error).__name__} for {target}: {error}") from error
        sha = sha256_of(bytes(data))
        if expected_sha256 and sha != expected_sha256:
            raise DownloadFailed(f"SHA-256 mismatch: expected {expected_sha256}, got {sha}")
        try:
            await self.cache.store(sha, bytes(data))
        except OSError as error:
            raise DownloadFailed(f"cannot store the photo: {error}") from error
        return sha

    def _missing(self) -> list[Photo]:
        """Playlist photos not in the cache, each bytes once."""
        missing: dict[str, Photo] = {}
        for photo in self.playlist:
            if photo.sha256 not in self.cache:
                missing.setdefault(photo.sha256 or photo.file_id, photo)
        return list(missing.values())

    async def _download(self, photo: Photo) -> bool:
        try:
            sha = await self._fetch(photo.url, photo.sha256)
        except DownloadFailed as failure:
            version = self.state.sync.version if self.state.sync is not None else None
            await self._report(
                "error", file_id=photo.file_id, error=str(failure), sync_version=version
            )
            return False
        if photo.sha256:
            self._refresh()
        else:
            self._learn(photo, sha)
        return True

    # -- sync lane -----------------------------------------------------------------------

    async def _sync_lane(self) -> None:
        """Syncs, ``sync`` commands and download retries, one at a time; a newer sync that
        arrives meanwhile replaces an older one not yet started."""
        while True:
            await self.sync_wanted.wait()
            self.sync_wanted.clear()
            sync, self.pending_sync = self.pending_sync, None
            commands, self.sync_commands = self.sync_commands, []
            known: set[str] | None = None
            if sync is not None:
                if self.state.sync is not None:
                    known = {photo.file_id for photo in self.playlist}
                await self._take(sync)
            await self._converge(announce=sync is not None, commands=commands)
            if known is not None:
                await self._show_newest(known)

    async def _show_newest(self, known: set[str]) -> None:
        """A sync brought photos this frame did not have (added while it was off, or whose
        live ``photo_added`` it missed): show the newest one now, as ``photo_added`` would."""
        fresh = [photo for photo in self.playlist if photo.file_id not in known]
        for photo in reversed(fresh):
            if photo.sha256 and photo.sha256 in self.cache:
                await self._show(photo.file_id)
                return

    async def _take(self, sync: wire.FrameSync) -> None:
        if sync != self.state.sync:
            # Different contents: the hub has folded the live changes into this sync.
            self.state.added, self.state.removed = [], []
        self.state.sync = sync
        self._configure(sync)
        self._refresh()
        await self._save()
        await self._follow_albums(sync.album_ids)

    async def _follow_albums(self, album_ids: list[str]) -> None:
        """Subscribe to the sync's new albums, unsubscribe from dropped ones. Offline or on
        failure, the next connect subscribes to exactly the sync's albums."""
        client = self.client
        if client is None:
            return
        wanted = set(album_ids)
        new, gone = wanted - self.albums_followed, self.albums_followed - wanted
        try:
            if new:
                await client.subscribe([(wire.album_topic(a, "#"), 1) for a in sorted(new)])
            if gone:
                await client.unsubscribe([wire.album_topic(a, "#") for a in sorted(gone)])
        except aiomqtt.MqttError as error:
            log.info("frame %s could not follow its albums: %s", self.id, error)
            return
        self.albums_followed = wanted

    async def _converge(self, *, announce: bool, commands: list[str]) -> None:
        """Make the cache hold exactly the playlist; report ``synced`` once it does.

        A ``sync`` command re-hashes the cache first. Photos that fail are reported as
        ``error`` and retried on the next heartbeat.
        """
        if commands:
            await self.cache.verify({p.sha256 for p in self.playlist if p.sha256})
        missing = self._missing()
        results = await asyncio.gather(*(self._download(photo) for photo in missing))
        failed = results.count(False)
        keep = {p.sha256 for p in self.playlist if p.sha256}
        if self.requested_sha is not None:
            keep.add(self.requested_sha)
        await self.cache.keep_only(keep)
        self._refresh()
        sync = self.state.sync
        if sync is None or failed:
            await self._save()
            problem = (
                "no sync received yet"
                if sync is None
                else f"{failed} of {len(missing)} missing photos could not be downloaded"
            )
            for command_id in commands:
                await self._report("error", command_id=command_id, error=problem)
            return
        self.state.applied_version = sync.version
        await self._save()
        for command_id in commands:
            await self._report("synced", command_id=command_id, sync_version=sync.version)
        if not commands and (announce or missing):
            await self._report("synced", sync_version=sync.version)

    # -- album lane ----------------------------------------------------------------------

    async def _album_lane(self) -> None:
        while True:
            update = await self.album_updates.get()
            if update.album_id not in self._album_ids():
                log.debug("frame %s ignores album %s", self.id, update.album_id)
                continue
            if isinstance(update, wire.PhotoAdded):
                await self._photo_added(update)
            else:
                await self._photo_removed(update)

    async def _photo_added(self, update: wire.PhotoAdded) -> None:
        """Download the new photo and show it now: the family expects it on the wall."""
        key = (update.album_id, update.file_id)
        self.state.removed = [removed for removed in self.state.removed if removed != key]
        if not any(photo.key == key for photo in self.state.playlist()):
            self.state.added.append(
                Photo(
                    file_id=update.file_id,
                    album_id=update.album_id,
                    url=self._frame_url(update.file_id),
                    sha256=self._sha_of(update.file_id) or "",
                )
            )
        self._refresh()
        await self._save()
        photo = next(p for p in self.playlist if p.key == key)
        if photo.sha256 not in self.cache and not await self._download(photo):
            return
        await self._save()
        await self._show(update.file_id)

    async def _photo_removed(self, update: wire.PhotoRemoved) -> None:
        """Forget the photo in this album; its file goes unless another album has it. If it
        was on the screen, the rotation replaces it at once."""
        key = (update.album_id, update.file_id)
        gone = [photo for photo in self.playlist if photo.key == key]
        self.state.added = [photo for photo in self.state.added if photo.key != key]
        in_sync = self.state.sync is not None and any(
            (p.album_id, p.file_id) == key for p in self.state.sync.photos
        )
        if in_sync and key not in self.state.removed:
            self.state.removed.append(key)
        self._refresh()
        await self._save()
        still_used = {photo.sha256 for photo in self.playlist}
        await self.cache.discard(p.sha256 for p in gone if p.sha256 not in still_used)

    # -- command lane --------------------------------------------------------------------

    async def _command_lane(self) -> None:
        """Commands in order. A redelivered command (same ``command_id``) gets its answer
        again and is not executed twice."""
        while True:
            command = await self.commands.get()
            command_id = command.command_id
            answer = self.state.answer_to(command_id)
            if command.command in FIRMWARE_COMMANDS:
                assert self.ota is not None
                await self.ota.receive(command)
            elif answer is not None:
                await self._send_status(answer)
            elif command_id in self.running_commands or command_id == self.state.restart_command_id:
                log.info("frame %s: command %s is already running", self.id, command_id)
            else:
                await self._execute(command)

    async def _execute(self, command: wire.FrameCommand) -> None:
        command_id = command.command_id
        match command.command:
            case "next":
                file_id = self.schedule.next_photo()
                if file_id is None:
                    await self._report("error", command_id=command_id, error="no photo to show")
                else:
                    await self._show(file_id, command_id=command_id)
            case "show":
                await self._show_on_request(command.args.file_id, command_id)
            case "sync":
                self.running_commands.add(command_id)
                self.sync_commands.append(command_id)
                self.sync_wanted.set()
            case "restart":
                self.running_commands.add(command_id)
                self.state.restart_command_id = command_id
                await self._save()
                await self._reboot()

    async def _show_on_request(self, file_id: str | None, command_id: str) -> None:
        """Show a photo of the playlist, or any photo the hub will make for this frame."""
        if file_id is None:
            await self._report("error", command_id=command_id, error="show needs args.file_id")
            return
        sha = self._sha_of(file_id)
        if sha is None or sha not in self.cache:
            photo = next((p for p in self.playlist if p.file_id == file_id), None)
            url, expected = (photo.url, photo.sha256) if photo else (self._frame_url(file_id), "")
            try:
                sha = await self._fetch(url, expected)
            except DownloadFailed as failure:
                await self._report(
                    "error", file_id=file_id, command_id=command_id, error=str(failure)
                )
                return
            if photo is not None and not photo.sha256:
                self._learn(photo, sha)
        await self._show(file_id, sha, command_id=command_id)
        if not any(p.file_id == file_id for p in self.playlist):
            self.requested_sha = sha

    # -- screen --------------------------------------------------------------------------

    async def _rotation_lane(self) -> None:
        while True:
            self.schedule_changed.clear()
            step = self.schedule.due()
            if step is None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.schedule.seconds_until_due()):
                        await self.schedule_changed.wait()
                continue
            file_id = self.schedule.current if isinstance(step, ScreenOff) else step.file_id
            if not await self._show(file_id):
                await asyncio.sleep(ERROR_PAUSE_S)

    async def _show(
        self, file_id: str | None, sha: str | None = None, *, command_id: str | None = None
    ) -> bool:
        """Put ``file_id`` on the screen (None: blank) and report it; in quiet hours the
        screen goes dark instead and the photo waits for the morning."""
        async with self.display_lock:
            dark = self.schedule.quiet()
            on_screen = self.schedule.screen_on and self.schedule.current == file_id
            if on_screen and not dark and file_id is not None and command_id is None:
                return True  # already up (the rotation got there first); nothing to redraw
            if file_id is not None and sha is None:
                sha = self._sha_of(file_id)
            if not dark and file_id is not None and (sha is None or sha not in self.cache):
                await self._report(
                    "error", file_id=file_id, command_id=command_id, error="photo is not cached"
                )
                return False
            try:
                await self._draw(None if dark else sha)
            except (OSError, ValueError, Image.DecompressionBombError) as error:
                if sha is not None:
                    await self.cache.discard([sha])
                    self._refresh()
                await self._report(
                    "error", file_id=file_id, command_id=command_id, error=f"cannot draw: {error}"
                )
                return False
            if dark:
                self.schedule.went_dark(file_id)
            else:
                self.schedule.shown(file_id)
                self.requested_sha = None
            self.screen_updated.set()
            self.schedule_changed.set()
            self.state.current_file_id = file_id
            if command_id is None:  # an answer to a command is saved with the answer
                await self._save()
            status = "screen_off" if dark else "displayed"
            await self._report(status, file_id=file_id, command_id=command_id)
            return True

    async def _draw(self, sha: str | None) -> None:
        if not self.config.render:
            return
        width, height = self.panel
        source = self.cache.path(sha) if sha is not None else None
        png = await self.frame.renderer.png(source, sha or "", width, height)
        path = self.config.data_dir / DISPLAY_FILE
        await asyncio.to_thread(write_atomically, path, png, durable=False)

    # -- reports -------------------------------------------------------------------------

    async def _report(
        self,
        status: str,
        *,
        file_id: str | None = None,
        command_id: str | None = None,
        error: str | None = None,
        sync_version: int | None = None,
    ) -> None:
        """Publish a status (and its event). An answer to a command is remembered first."""
        message = wire.FrameStatus(
            frame_id=self.id,
            status=status,
            timestamp=utc_timestamp(),
            file_id=file_id,
            command_id=command_id,
            error=error,
            sync_version=sync_version,
        )
        if error is not None:
            log.warning("frame %s: %s", self.id, error)
        if command_id is not None:
            self.state.remember(message)
            self.running_commands.discard(command_id)
            self.frame.stats.commands_answered += 1
            await self._save()
        await self._send_status(message)

    async def _send_status(self, message: wire.FrameStatus) -> None:
        await self._publish(self._topic("status"), _encode(message), qos=0)
        self.frame.emit(
            EVENT_OF_STATUS.get(message.status, message.status),
            file_id=message.file_id,
            command_id=message.command_id,
            sync_version=message.sync_version,
        )

    def _heartbeat_s(self) -> float:
        sync = self.state.sync
        interval = sync.heartbeat_interval_s if sync is not None else self.config.heartbeat_s
        return max(MIN_HEARTBEAT_S, float(interval))

    async def _heartbeat_lane(self) -> None:
        """Heartbeats and telemetry; each beat also retries photos that failed to download."""
        while True:
            await asyncio.sleep(self._heartbeat_s())
            await self._heartbeat()
            if self._missing():
                self.sync_wanted.set()

    async def _heartbeat(self) -> None:
        if self.client is None:
            return
        free_bytes = shutil.disk_usage(self.config.data_dir).free
        beat = wire.Heartbeat(
            frame_id=self.id,
            firmware_version=self.firmware_version,
            uptime_s=round(time.monotonic() - self.started, 3),
            free_bytes=free_bytes,
            timestamp=utc_timestamp(),
            interval_s=self._heartbeat_s(),
            sync_version=self.state.applied_version,
            current_file_id=self.schedule.current,
            cached_photos=len(self.cache),
        )
        if not await self._publish(self._topic("heartbeat"), _encode(beat), qos=0, retain=True):
            return
        self.heartbeat_sent.set()
        self.heartbeats += 1
        if self.heartbeats % max(1, self.config.telemetry_every) == 0:
            metrics = self.sensors.read(screen_on=self.schedule.screen_on)
            metrics["free_bytes"] = float(free_bytes)
            sample = wire.Telemetry(frame_id=self.id, metrics=metrics, timestamp=utc_timestamp())
            await self._publish(self._topic("telemetry"), _encode(sample), qos=1)


def photo_path(data_dir: Path, sha256: str) -> Path:
    """Where a frame with ``data_dir`` keeps the photo with this hash (for tests and tools)."""
    return data_dir / PHOTOS_DIR / sha256
