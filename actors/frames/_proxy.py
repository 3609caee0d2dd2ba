"""A frame's proxy: one actor per paired frame, the frame's twin in the hub.

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

The actor is the wiring: its state, its transactions and what it asks. The rest of the
package holds the parts: the messages (``_messages``), the tables (``_tables``), working out
what the frame should show (``_desired``), the commands and their deadlines (``_commands``)
and the health score (``_health``).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections import deque
from typing import TYPE_CHECKING, Any

import msgspec
import trio

import wire
from actors.events import Audit, DeviceOffline, DeviceOnline, FrameSyncRequested, utc_now
from actors.http import PublicUrl
from actors.media import VersionBlob
from actors.store import Store, Transaction
from config import FramesSettings
from supervision import Actor, ActorRef, ActorStopped, DeferredReply, MailboxFull, Timer

from ._commands import CommandDeadline, Commands, new_command
from ._desired import ProxyPeers, Refreshed, digest, open_version, refresh
from ._health import health_score
from ._messages import (
    Availability,
    CommandView,
    Desired,
    FrameInbound,
    FrameSeen,
    GetCommand,
    GetSync,
    GetTwin,
    OpenFrameVersion,
    Outcome,
    Refresh,
    Reported,
    SendCommand,
    Twin,
)
from ._tables import SELECT_TWIN, TWINS, SavedTwin, write_twin

if TYPE_CHECKING:
    from ._fleet import FleetMessage

log = logging.getLogger("framehub.frames")

REFRESH_EVERY_TICKS = 10
"""Safety-net refresh: every this many heartbeat intervals."""


class _Tick(msgspec.Struct, frozen=True):
    pass


ProxyMessage = (
    FrameInbound
    | GetSync
    | Refresh
    | GetTwin
    | SendCommand
    | GetCommand
    | OpenFrameVersion
    | _Tick
    | Refreshed
    | CommandDeadline
)


class FrameProxy(Actor[ProxyMessage]):
    """A frame's proxy: see the module's docstring."""

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
        self._commands = Commands(frame_id, store, settings.command_timeout_s, self._send_after)
        self._reissue_due = False
        """The frame said it is online: send the pending commands again at its next beat."""

    # -- lifecycle -----------------------------------------------------------------------------

    async def on_start(self) -> None:
        row = await self._store.fetch_one(SELECT_TWIN, (self._frame_id,))
        if row is not None:
            saved = TWINS.of(row)
            self._version = saved.desired_version
            self._digest = saved.sync_digest
            self._reported_version = saved.reported_version
            self._online = saved.online
            self._last_seen = saved.last_seen
            self._firmware = saved.firmware_version
            self._current_file = saved.current_file_id
            self._free_bytes = saved.free_bytes
        await self._commands.restore()
        # An answer may have been lost with the previous incarnation: ask again at the next beat.
        self._reissue_due = bool(self._commands)
        if self._online:
            # Heard of before the restart: silence from now on still makes it offline.
            self._heard_at = trio.current_time()
        self.context.send_every(self._interval, _Tick())
        await self._start_refresh()

    def _send_after(self, delay: float, message: CommandDeadline) -> Timer:
        return self.context.send_after(delay, message)

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
                return await self._commands.find(command_id)
            case OpenFrameVersion(file_id=file_id):
                answer = self.context.defer_reply(message)
                await self.context.start_service(self._open_version, file_id, answer)
            case _Tick():
                await self._tick()
            case Refreshed():
                await self._refreshed(message)
            case CommandDeadline(command_id=command_id):
                await self._finish_command(command_id, "timed_out", "no answer from the frame")
        return None

    async def _open_version(
        self,
        file_id: str,
        answer: DeferredReply[VersionBlob],
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        task_status.started()
        try:
            version = await open_version(self._frame_id, self._peers, file_id)
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
        refreshed = await refresh(
            self._frame_id, self._peers, self._public_url, self._interval, known
        )
        if self.context.ref.alive:
            self.context.ref.nudge(refreshed)

    async def _refreshed(self, message: Refreshed) -> None:
        self._refreshing = False
        sync = message.sync
        if sync is not None:
            self._versions = message.versions
            sync_digest = digest(sync)
            if sync_digest != self._digest or self._sync is None:
                changed = sync_digest != self._digest
                version = self._version + 1 if changed else self._version
                sync = msgspec.structs.replace(sync, version=version, timestamp=utc_now())
                if changed:
                    async with self._store.transaction() as tx:
                        self._write_twin(tx, desired_version=version, sync_digest=sync_digest)
                        self._request_sync(tx, version)
                    self._version = version
                    self._digest = sync_digest
                self._sync = sync
                self._sync_bytes = msgspec.json.encode(sync)
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
        if status.command_id is not None and status.command_id in self._commands:
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

    def _write_twin(
        self,
        tx: Transaction,
        *,
        desired_version: int | None = None,
        sync_digest: str | None = None,
    ) -> None:
        saved = SavedTwin(
            desired_version=self._version if desired_version is None else desired_version,
            sync_digest=self._digest if sync_digest is None else sync_digest,
            reported_version=self._reported_version,
            online=self._online,
            last_seen=self._last_seen,
            firmware_version=self._firmware,
            current_file_id=self._current_file,
            free_bytes=self._free_bytes,
        )
        write_twin(tx, self._frame_id, saved)

    def _seen(self) -> None:
        """Hand the sighting to the fleet to write. Never waits: the fleet asks proxies too,
        so a full fleet mailbox misses this sighting, and the next heartbeat brings a newer."""
        assert self._last_seen is not None
        seen = FrameSeen(
            frame_id=self._frame_id, last_seen=self._last_seen, free_bytes=self._free_bytes
        )
        with contextlib.suppress(MailboxFull, ActorStopped):
            self._fleet.tell_nowait(seen)

    def _twin(self) -> Twin:
        sync = self._sync
        return Twin(
            frame_id=self._frame_id,
            online=self._online,
            last_seen=self._last_seen,
            firmware_version=self._firmware,
            current_file_id=self._current_file,
            health_score=health_score(
                now=trio.current_time(),
                beats=list(self._beats),
                errors=self._errors,
                heartbeat_interval_s=self._interval,
                free_bytes=self._free_bytes,
                online=self._online,
            ),
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
            pending_commands=len(self._commands),
        )

    # -- commands ------------------------------------------------------------------------------

    async def _send_command(self, message: SendCommand) -> CommandView:
        view = new_command(self._frame_id, message, shown=self._versions)
        audit = Audit.system("frames") if message.user_id is None else Audit.user(message.user_id)
        async with self._store.transaction() as tx:
            self._commands.issue(tx, view, audit, message.correlation_id)
        self._commands.wait_for(view)
        return view

    async def _reissue_commands(self) -> None:
        """Publish every pending command again, with its own id (see the module's docstring)."""
        if not self._commands:
            return
        async with self._store.transaction() as tx:
            self._commands.reissue(tx)

    async def _finish_command(self, command_id: str, outcome: Outcome, error: str) -> None:
        view = self._commands.get(command_id)
        if view is None:
            return  # answered already, or timed out before the answer came
        finished_at = utc_now()
        async with self._store.transaction() as tx:
            self._commands.finish(tx, view, outcome, error, finished_at)
            if outcome != "timed_out":
                self._write_twin(tx)
        self._commands.forget(command_id)
