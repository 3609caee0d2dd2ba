"""``/frames/<frame_id>``: one proxy actor per paired frame, the frame's twin in the hub.

The twin is what the frame *should* show (desired: its albums' photos, each as the version
made for its panel with that version's SHA-256, and its display settings; versioned) next to
what it *reports* (online, last seen, firmware, photo on screen, free storage, the sync
version it applied). The proxy is the only actor that knows both.

* **Desired state** is rebuilt by a refresh job (outside the mailbox, so heartbeats and the
  bridge's questions are answered meanwhile): it asks the registry for the frame's albums and
  panel, the album actor for their photos, the media cache for the panel-sized versions and
  the frame's schedule. When the result differs from the last sync, the version goes up and
  ``frame.sync_requested`` is committed with the new version; the bridge then asks for the
  sync and publishes it (QoS 2, retained). A refresh is wanted when the fleet says the frame's
  albums changed, at start and every few minutes as a safety net.
* **Reported state** comes from the bridge (``FrameInbound``). Availability (the frame's own
  ``online`` or its last will) and heartbeat silence (``offline_after_missed`` intervals) make
  it online or offline (``device.online`` / ``device.offline``). A frame that comes online is
  sent its sync again; one that keeps reporting an older sync version than desired is too.
* **Commands** (``next``, ``show``, ``restart``, ``sync``) are stored with a ``command_id``
  and published through the journal (``frame.command_issued``); the frame confirms with a
  status carrying that id, or the command times out (``frame.command_finished``). A frame
  that comes online again gets its pending commands once more, with its first heartbeat
  after (which it sends once subscribed): a broker that restarted lost its session, and
  with it what was published to it meanwhile. The frame answers a command id it knows again
  instead of running it twice.
* **Health score** (0..100): heartbeat regularity (half), free storage (a quarter) and the
  absence of recent errors (a quarter); an offline frame scores at most half.

Durable state (``frame_twins``, ``frame_commands``) is written on changes that matter (online,
sync versions, photo on screen, firmware, commands). A heartbeat that changes nothing else is
told to the fleet (``FrameSeen``), which writes the newest ``last_seen`` and free storage of
every frame together about once a minute, so a thousand heartbeating frames do not mean a
thousand commits a minute. The twin's ``last_seen`` is always the proxy's own; the table's
may be a minute older (or more, if the fleet was too busy to take a sighting).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import math
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import msgspec
import trio

import wire
from actors.album import AlbumMessage, GetAlbumContents
from actors.devices import DeviceMessage, GetDevice
from actors.errors import Invalid, NotFound
from actors.events import (
    Audit,
    DeviceOffline,
    DeviceOnline,
    FrameCommandFinished,
    FrameCommandIssued,
    FrameSyncRequested,
    new_id,
    utc_now,
)
from actors.http import PublicUrl
from actors.media import GetFrameSchedule, GetFrameVersion, MediaMessage, Schedule, VersionBlob
from actors.store import Rows, Store, Transaction
from config import FramesSettings
from supervision import (
    Actor,
    ActorRef,
    ActorStopped,
    AskTimeout,
    DeferredReply,
    DomainError,
    MailboxFull,
    Request,
)

from ._messages import Availability, FrameInbound, FrameSeen, GetSync

if TYPE_CHECKING:
    from ._fleet import FleetMessage

log = logging.getLogger("framehub.frames")

FRAMES_MIGRATIONS = (
    """
    CREATE TABLE frame_twins (
        frame_id TEXT PRIMARY KEY,
        desired_version INTEGER NOT NULL DEFAULT 0,
        sync_digest TEXT NOT NULL DEFAULT '',
        reported_version INTEGER NOT NULL DEFAULT 0,
        online INTEGER NOT NULL DEFAULT 0,
        last_seen TEXT,
        firmware_version TEXT,
        current_file_id TEXT,
        free_bytes INTEGER,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE frame_commands (
        command_id TEXT PRIMARY KEY,
        frame_id TEXT NOT NULL,
        command TEXT NOT NULL,
        args TEXT NOT NULL,
        state TEXT NOT NULL,
        error TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        deadline REAL NOT NULL,
        finished_at TEXT
    );
    CREATE INDEX frame_commands_frame ON frame_commands (frame_id, created_at);
    """,
)
"""The ``frames`` schema, migrated once by the fleet before any proxy starts."""

USER_COMMANDS = ("next", "show", "restart", "sync")
"""Commands the API sends; firmware commands come from OTA campaigns."""
REFRESH_EVERY_TICKS = 10
"""Safety-net refresh: every this many heartbeat intervals."""
VERSION_ASK_TIMEOUT_S = 60.0
"""Making a panel-sized version can queue behind other renders: be patient."""
LOW_STORAGE_BYTES = 512 * 1024 * 1024
"""Free storage below this lowers the health score."""
ERROR_WINDOW_S = 3600.0
MAX_KEPT_COMMANDS = 200
"""Finished commands kept per frame (older ones are deleted)."""


# -- messages ----------------------------------------------------------------------------------


class Refresh(msgspec.Struct, frozen=True):
    """Rebuild the desired state (albums or their photos changed); idempotent, coalesced."""


class GetTwin(Request["Twin"], frozen=True):
    """Answers ``Twin``."""


class SendCommand(Request["CommandView"], frozen=True, kw_only=True):
    """Send the frame a command; answers ``CommandView`` (``Invalid`` for a bad command,
    ``NotFound`` when ``show`` names a photo the frame does not have)."""

    command: str
    file_id: str | None = None
    user_id: str | None = None
    correlation_id: str | None = None


class GetCommand(Request["CommandView"], frozen=True, kw_only=True):
    """Answers ``CommandView`` (``NotFound`` if this frame never had it)."""

    command_id: str


class OpenFrameVersion(Request[VersionBlob], frozen=True, kw_only=True):
    """The version of ``file_id`` made for this frame's panel, for the frame to download;
    ``NotFound`` unless the photo is in one of the frame's albums (any other photo is as
    unknown to the frame as one that does not exist). Answered off the mailbox: rendering a
    version never holds up the frame's heartbeats and commands."""

    file_id: str


class _Tick(msgspec.Struct, frozen=True):
    pass


class _Refreshed(msgspec.Struct, frozen=True, kw_only=True):
    sync: wire.FrameSync | None
    versions: dict[str, VersionBlob]


class _CommandDeadline(msgspec.Struct, frozen=True):
    command_id: str


ProxyMessage = (
    FrameInbound
    | GetSync
    | Refresh
    | GetTwin
    | SendCommand
    | GetCommand
    | OpenFrameVersion
    | _Tick
    | _Refreshed
    | _CommandDeadline
)

CommandState = Literal["pending", "done", "failed", "timed_out"]
Outcome = Literal["done", "failed", "timed_out"]


class CommandView(msgspec.Struct, frozen=True, kw_only=True):
    command_id: str
    frame_id: str
    command: str
    args: dict[str, str]
    state: CommandState
    error: str
    created_at: str
    finished_at: str | None


class Desired(msgspec.Struct, frozen=True, kw_only=True):
    version: int
    album_ids: list[str]
    photos: int
    display: wire.DisplaySettings


class Reported(msgspec.Struct, frozen=True, kw_only=True):
    sync_version: int
    current_file_id: str | None
    firmware_version: str | None
    free_bytes: int | None
    uptime_s: float | None
    cached_photos: int | None


class Twin(msgspec.Struct, frozen=True, kw_only=True):
    frame_id: str
    online: bool
    last_seen: str | None
    firmware_version: str | None
    current_file_id: str | None
    health_score: int
    in_sync: bool
    """The frame reported the desired sync version."""
    desired: Desired
    reported: Reported
    pending_commands: int


# -- the actor ---------------------------------------------------------------------------------


_encode = msgspec.json.encode
_COMMANDS = Rows(CommandView)
"""A ``frame_commands`` row is a ``CommandView``, then its ``deadline``."""


@dataclass(frozen=True, slots=True)
class ProxyPeers:
    """The actors a frame's proxy asks when it works out what its frame should show."""

    devices: ActorRef[DeviceMessage]
    album: ActorRef[AlbumMessage]
    media: ActorRef[MediaMessage]


class FrameProxy(Actor[ProxyMessage]):
    """``/frames/<frame_id>``: see the module's docstring."""

    def __init__(
        self,
        frame_id: str,
        store: Store,
        public_url: PublicUrl,
        settings: FramesSettings,
        peers: ProxyPeers,
        fleet: ActorRef[FleetMessage],
    ) -> None:
        self._frame_id = frame_id
        self._peers = peers
        self._fleet = fleet
        self._store = store
        self._public_url = public_url
        self._settings = settings
        self._interval = settings.heartbeat_interval_s
        # desired
        self._version = 0
        self._digest = ""
        self._sync: wire.FrameSync | None = None
        self._sync_bytes: bytes | None = None
        self._versions: dict[str, VersionBlob] = {}
        self._refreshing = False
        self._refresh_again = False
        self._sync_requested_at = -math.inf
        # reported
        self._online = False
        self._last_seen: str | None = None
        self._heard_at = -math.inf
        self._firmware: str | None = None
        self._current_file: str | None = None
        self._free_bytes: int | None = None
        self._uptime: float | None = None
        self._cached: int | None = None
        self._reported_version = 0
        self._beats: deque[float] = deque(maxlen=10)
        self._errors: deque[float] = deque(maxlen=50)
        self._ticks = 0
        # commands
        self._pending: dict[str, CommandView] = {}
        self._reissue_due = False
        """The frame said it is online: send the pending commands again at its next beat."""

    # -- lifecycle -----------------------------------------------------------------------------

    async def on_start(self) -> None:
        row = await self._store.fetch_one(
            "SELECT desired_version, sync_digest, reported_version, online, last_seen, "
            "firmware_version, current_file_id, free_bytes FROM frame_twins WHERE frame_id = ?",
            (self._frame_id,),
        )
        if row is not None:
            (
                self._version,
                self._digest,
                self._reported_version,
                online,
                self._last_seen,
                self._firmware,
                self._current_file,
                self._free_bytes,
            ) = row
            self._online = bool(online)
        now = time.time()
        for row in await self._store.fetch_all(
            f"SELECT {_COMMANDS.columns}, deadline FROM frame_commands "
            "WHERE frame_id = ? AND state = 'pending'",
            (self._frame_id,),
        ):
            view = _COMMANDS.of(row)
            self._pending[view.command_id] = view
            deadline = row[len(_COMMANDS)]
            self.context.send_after(max(0.0, deadline - now), _CommandDeadline(view.command_id))
        # An answer may have been lost with the previous incarnation: ask again at the next beat.
        self._reissue_due = bool(self._pending)
        if self._online:
            # Heard of before the restart: silence from now on still makes it offline.
            self._heard_at = trio.current_time()
        self.context.send_every(self._interval, _Tick())
        await self._start_refresh()

    async def receive(self, message: ProxyMessage) -> Any:
        match message:
            case FrameInbound(payload=payload):
                await self._inbound(payload)
            case GetSync():
                return self._sync_bytes
            case Refresh():
                await self._start_refresh()
            case GetTwin():
                return self._twin()
            case SendCommand():
                return await self._send_command(message)
            case GetCommand(command_id=command_id):
                return await self._command(command_id)
            case OpenFrameVersion(file_id=file_id):
                answer = self.context.defer_reply(message)
                await self.context.start_service(self._open_version, file_id, answer)
            case _Tick():
                await self._tick()
            case _Refreshed():
                await self._refreshed(message)
            case _CommandDeadline(command_id=command_id):
                await self._finish_command(command_id, "timed_out", "no answer from the frame")
        return None

    async def _open_version(
        self,
        file_id: str,
        answer: DeferredReply[VersionBlob],
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        task_status.started()
        peers = self._peers
        try:
            device = await peers.devices.ask(GetDevice(device_id=self._frame_id))
            shown = await peers.album.ask(GetAlbumContents(album_ids=device.album_ids))
            if not any(file_id in photos for photos in shown.photos.values()):
                raise NotFound(f"no photo {file_id}")
            width, height = device.panel
            version = await peers.media.ask(
                GetFrameVersion(
                    file_id=file_id,
                    width=width,
                    height=height,
                    fill=True,
                    frame_id=self._frame_id,
                )
            )
        except Exception as error:  # the asker gets it as if it had asked itself
            answer.fail(error)
        else:
            answer.set(version)

    # -- desired state -------------------------------------------------------------------------

    async def _start_refresh(self) -> None:
        if self._refreshing:
            self._refresh_again = True
            return
        self._refreshing = True
        self._refresh_again = False
        await self.context.start_service(self._refresh_job, dict(self._versions))

    async def _refresh_job(
        self,
        known: dict[str, VersionBlob],
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        task_status.started()
        peers = self._peers
        sync: wire.FrameSync | None = None
        versions: dict[str, VersionBlob] = {}
        try:
            device = await peers.devices.ask(GetDevice(device_id=self._frame_id))
            contents = await peers.album.ask(GetAlbumContents(album_ids=device.album_ids))
            media = peers.media
            schedule: Schedule | None = await media.ask(GetFrameSchedule(frame_id=self._frame_id))
            width, height = device.panel
            base_url = await self._public_url.wait()
            photos: list[wire.SyncPhoto] = []
            for album_id in device.album_ids:
                for file_id in contents.photos.get(album_id, []):
                    if file_id in versions:
                        continue
                    blob = known.get(file_id)
                    if blob is None or (blob.width, blob.height) != (width, height):
                        try:
                            blob = await media.ask(
                                GetFrameVersion(
                                    file_id=file_id,
                                    width=width,
                                    height=height,
                                    fill=True,
                                    frame_id=self._frame_id,
                                ),
                                timeout=VERSION_ASK_TIMEOUT_S,
                            )
                        except DomainError as error:
                            log.info("frame %s skips %s: %s", self._frame_id, file_id, error)
                            continue
                    assert blob is not None
                    versions[file_id] = blob
                    photos.append(
                        wire.SyncPhoto(
                            file_id=file_id,
                            album_id=album_id,
                            sha256=blob.sha256,
                            url=f"{base_url}/api/v1/files/download/{file_id}"
                            f"?size=frame&frame_id={self._frame_id}",
                            width=blob.width,
                            height=blob.height,
                        )
                    )
            sync = wire.FrameSync(
                frame_id=self._frame_id,
                photos=photos,
                total_photos=len(photos),
                timestamp="",
                album_ids=device.album_ids,
                display=_display(schedule),
                heartbeat_interval_s=max(1, round(self._interval)),
                panel_width=width,
                panel_height=height,
            )
        except NotFound:
            sync = None  # the frame was unpaired: the fleet stops this proxy
        except (AskTimeout, DomainError) as error:
            log.warning("frame %s: refresh failed (%r); retried later", self._frame_id, error)
            sync = None
        if self.context.ref.alive:
            self.context.ref.nudge(_Refreshed(sync=sync, versions=versions))

    async def _refreshed(self, message: _Refreshed) -> None:
        self._refreshing = False
        sync = message.sync
        if sync is not None:
            self._versions = message.versions
            digest = _digest(sync)
            if digest != self._digest or self._sync is None:
                changed = digest != self._digest
                version = self._version + 1 if changed else self._version
                sync = msgspec.structs.replace(sync, version=version, timestamp=utc_now())
                if changed:
                    async with self._store.transaction() as tx:
                        self._write_twin(tx, desired_version=version, sync_digest=digest)
                        self._request_sync(tx, version)
                    self._version = version
                    self._digest = digest
                self._sync = sync
                self._sync_bytes = _encode(sync)
                if not changed and self._reported_version != version:
                    await self._resync()  # first refresh after a restart, frame behind
        if self._refresh_again:
            await self._start_refresh()

    async def _resync(self) -> None:
        """Publish the current sync again (the frame reconnected or fell behind)."""
        if self._sync is None:
            return
        async with self._store.transaction() as tx:
            self._request_sync(tx, self._version)

    def _request_sync(self, tx: Transaction, version: int) -> None:
        tx.publish(
            FrameSyncRequested(
                audit=Audit.system("frames"), frame_id=self._frame_id, version=version
            )
        )
        self._sync_requested_at = trio.current_time()

    # -- reported state ------------------------------------------------------------------------

    async def _inbound(self, payload: Any) -> None:
        match payload:
            case Availability(online=online):
                self._reissue_due = online
                if online:
                    self._heard_at = trio.current_time()
                    await self._set_online(True, "", resync=True)
                else:
                    await self._set_online(False, "the frame's connection ended")
            case wire.Heartbeat() as beat:
                await self._heartbeat(beat)
            case wire.FrameStatus() as status:
                await self._status(status)
            case _:
                pass  # telemetry and OTA progress go to their own actors, not here

    def _heard(self) -> None:
        self._heard_at = trio.current_time()
        self._last_seen = utc_now()

    async def _heartbeat(self, beat: wire.Heartbeat) -> None:
        if self._reissue_due:
            self._reissue_due = False
            await self._reissue_commands()
        now = trio.current_time()
        self._heard()
        self._beats.append(now)
        changed = (
            beat.firmware_version != self._firmware
            or beat.sync_version != self._reported_version
            or beat.current_file_id != self._current_file
        )
        self._firmware = beat.firmware_version
        self._free_bytes = beat.free_bytes
        self._uptime = beat.uptime_s
        self._cached = beat.cached_photos
        self._reported_version = beat.sync_version
        if beat.current_file_id is not None:
            self._current_file = beat.current_file_id
        if not self._online:
            await self._set_online(True, "", resync=True)
        elif changed:
            async with self._store.transaction() as tx:
                self._write_twin(tx)
        else:
            self._seen()
        if (
            self._sync is not None
            and beat.sync_version != self._version
            and now - self._sync_requested_at > 2 * self._interval
        ):
            await self._resync()

    async def _status(self, status: wire.FrameStatus) -> None:
        self._heard()
        if status.status == "displayed" and status.file_id:
            self._current_file = status.file_id
        elif status.status == "synced" and status.sync_version is not None:
            self._reported_version = status.sync_version
        elif status.status == "error":
            self._errors.append(trio.current_time())
        if status.command_id is not None and status.command_id in self._pending:
            if status.status == "error":
                await self._finish_command(status.command_id, "failed", status.error or "")
            else:
                await self._finish_command(status.command_id, "done", "")
        elif status.status in ("displayed", "synced"):
            async with self._store.transaction() as tx:
                self._write_twin(tx)
        if not self._online:
            await self._set_online(True, "", resync=True)

    async def _set_online(self, online: bool, reason: str, *, resync: bool = False) -> None:
        if online == self._online:
            if resync:
                await self._resync()
            return
        audit = Audit.frame(self._frame_id)
        async with self._store.transaction() as tx:
            self._online = online
            self._write_twin(tx)
            if online:
                tx.publish(DeviceOnline(audit=audit, device_id=self._frame_id))
                if resync and self._sync is not None:
                    self._request_sync(tx, self._version)
            else:
                tx.publish(DeviceOffline(audit=audit, device_id=self._frame_id, reason=reason))
        log.info(
            "frame %s is %s%s",
            self._frame_id,
            "online" if online else "offline",
            f" ({reason})" if reason else "",
        )

    async def _tick(self) -> None:
        self._ticks += 1
        silence = trio.current_time() - self._heard_at
        limit = self._settings.offline_after_missed * self._interval
        if self._online and silence > limit:
            await self._set_online(False, f"no heartbeat for {silence:.0f}s")
        if self._ticks % REFRESH_EVERY_TICKS == 0:
            await self._start_refresh()

    def _write_twin(self, tx: Transaction, **desired: Any) -> None:
        version = desired.get("desired_version", self._version)
        digest = desired.get("sync_digest", self._digest)
        tx.execute(
            "INSERT INTO frame_twins (frame_id, desired_version, sync_digest, reported_version, "
            "online, last_seen, firmware_version, current_file_id, free_bytes, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (frame_id) DO UPDATE SET "
            "desired_version = excluded.desired_version, sync_digest = excluded.sync_digest, "
            "reported_version = excluded.reported_version, online = excluded.online, "
            "last_seen = excluded.last_seen, firmware_version = excluded.firmware_version, "
            "current_file_id = excluded.current_file_id, free_bytes = excluded.free_bytes, "
            "updated_at = excluded.updated_at",
            (
                self._frame_id,
                version,
                digest,
                self._reported_version,
                int(self._online),
                self._last_seen,
                self._firmware,
                self._current_file,
                self._free_bytes,
                utc_now(),
            ),
        )

    def _seen(self) -> None:
        """Hand the sighting to the fleet to write. Never waits: the fleet asks proxies too,
        so a full fleet mailbox misses this sighting, and the next heartbeat brings a newer."""
        assert self._last_seen is not None
        seen = FrameSeen(
            frame_id=self._frame_id, last_seen=self._last_seen, free_bytes=self._free_bytes
        )
        with contextlib.suppress(MailboxFull, ActorStopped):
            self._fleet.tell_nowait(seen)

    def _health(self) -> int:
        now = trio.current_time()
        beats = list(self._beats)
        if len(beats) >= 2:
            gaps = [b - a for a, b in itertools.pairwise(beats)]
            gaps.append(max(0.0, now - beats[-1]))
            regularity = sum(min(1.0, self._interval / max(g, 1e-3)) for g in gaps) / len(gaps)
        else:
            regularity = 1.0 if self._online else 0.0
        storage = (
            1.0 if self._free_bytes is None else min(1.0, self._free_bytes / LOW_STORAGE_BYTES)
        )
        recent = sum(1 for t in self._errors if now - t <= ERROR_WINDOW_S)
        errors = max(0.0, 1.0 - recent / 10)
        score = 100 * (0.5 * regularity + 0.25 * storage + 0.25 * errors)
        if not self._online:
            score = min(score, 50.0)
        return round(score)

    def _twin(self) -> Twin:
        sync = self._sync
        return Twin(
            frame_id=self._frame_id,
            online=self._online,
            last_seen=self._last_seen,
            firmware_version=self._firmware,
            current_file_id=self._current_file,
            health_score=self._health(),
            in_sync=self._reported_version == self._version and sync is not None,
            desired=Desired(
                version=self._version,
                album_ids=[] if sync is None else sync.album_ids,
                photos=0 if sync is None else sync.total_photos,
                display=wire.DisplaySettings() if sync is None else sync.display,
            ),
            reported=Reported(
                sync_version=self._reported_version,
                current_file_id=self._current_file,
                firmware_version=self._firmware,
                free_bytes=self._free_bytes,
                uptime_s=self._uptime,
                cached_photos=self._cached,
            ),
            pending_commands=len(self._pending),
        )

    # -- commands ------------------------------------------------------------------------------

    async def _send_command(self, message: SendCommand) -> CommandView:
        if message.command not in USER_COMMANDS:
            raise Invalid(f"command must be one of {', '.join(USER_COMMANDS)}")
        args: dict[str, str] = {}
        if message.command == "show":
            if not message.file_id:
                raise Invalid("show needs args.file_id")
            if message.file_id not in self._versions:
                raise NotFound(f"photo {message.file_id} is not in this frame's albums")
            args["file_id"] = message.file_id
        elif message.file_id is not None:
            raise Invalid(f"{message.command} takes no file_id")
        view = CommandView(
            command_id=new_id(),
            frame_id=self._frame_id,
            command=message.command,
            args=args,
            state="pending",
            error="",
            created_at=utc_now(),
            finished_at=None,
        )
        timeout = self._settings.command_timeout_s
        audit = Audit.system("frames") if message.user_id is None else Audit.user(message.user_id)
        async with self._store.transaction() as tx:
            tx.execute(
                f"INSERT INTO frame_commands ({_COMMANDS.columns}, deadline) "
                f"VALUES ({_COMMANDS.placeholders}, ?)",
                (*_COMMANDS.values(view), time.time() + timeout),
            )
            tx.publish(
                FrameCommandIssued(
                    audit=audit,
                    correlation_id=message.correlation_id or new_id(),
                    frame_id=self._frame_id,
                    command_id=view.command_id,
                    command=view.command,
                    args=wire.CommandArgs(file_id=args.get("file_id")),
                )
            )
        self._pending[view.command_id] = view
        self.context.send_after(timeout, _CommandDeadline(view.command_id))
        return view

    async def _reissue_commands(self) -> None:
        """Publish every pending command again, with its own id (see the module's docstring)."""
        if not self._pending:
            return
        async with self._store.transaction() as tx:
            for view in self._pending.values():
                tx.publish(
                    FrameCommandIssued(
                        audit=Audit.system("frames"),
                        frame_id=self._frame_id,
                        command_id=view.command_id,
                        command=view.command,
                        args=wire.CommandArgs(file_id=view.args.get("file_id")),
                    )
                )

    async def _finish_command(self, command_id: str, outcome: Outcome, error: str) -> None:
        view = self._pending.get(command_id)
        if view is None:
            return  # answered already, or timed out before the answer came
        finished_at = utc_now()
        async with self._store.transaction() as tx:
            tx.execute(
                "UPDATE frame_commands SET state = ?, error = ?, finished_at = ? "
                "WHERE command_id = ?",
                (outcome, error, finished_at, command_id),
            )
            tx.execute(
                "DELETE FROM frame_commands WHERE frame_id = ? AND state != 'pending' AND "
                "command_id NOT IN (SELECT command_id FROM frame_commands WHERE frame_id = ? "
                "ORDER BY created_at DESC LIMIT ?)",
                (self._frame_id, self._frame_id, MAX_KEPT_COMMANDS),
            )
            tx.publish(
                FrameCommandFinished(
                    audit=Audit.frame(self._frame_id),
                    frame_id=self._frame_id,
                    command_id=command_id,
                    command=view.command,
                    outcome=outcome,
                    error=error,
                )
            )
            if outcome != "timed_out":
                self._write_twin(tx)
        del self._pending[command_id]

    async def _command(self, command_id: str) -> CommandView:
        view = self._pending.get(command_id)
        if view is not None:
            return view
        row = await self._store.fetch_one(
            f"SELECT {_COMMANDS.columns} FROM frame_commands WHERE command_id = ? AND frame_id = ?",
            (command_id, self._frame_id),
        )
        if row is None:
            raise NotFound(f"no command {command_id} for frame {self._frame_id}")
        return _COMMANDS.of(row)


def _display(schedule: Schedule | None) -> wire.DisplaySettings:
    if schedule is None:
        return wire.DisplaySettings()
    return wire.DisplaySettings(
        interval_s=schedule.interval_s,
        shuffle=schedule.shuffle,
        quiet_start=schedule.quiet_start,
        quiet_end=schedule.quiet_end,
    )


def _digest(sync: wire.FrameSync) -> str:
    """What the frame is told, without the version and timestamp: equal digests, same sync."""
    content = msgspec.structs.replace(sync, version=0, timestamp="")
    return hashlib.sha256(_encode(content)).hexdigest()
