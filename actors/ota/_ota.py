"""``/domain/ota`` (seed ota_service): firmware images and staged update campaigns.

**Firmware.** An admin uploads an image with its semantic version, model, minimum hardware
version and notes. The image is a blob in the firmware store (named by its SHA-256), the
record a row of ``firmware``; ``firmware.uploaded`` commits with it. A model has each version
once.

**Campaigns.** A campaign rolls one firmware out to its targets (frames of some models and/or
named frames that the firmware suits), in batches of ``batch_size`` in rollout order. Each
target moves through ``queued`` → ``notified`` → ``downloading`` → ``downloaded`` →
``installing`` → ``completed`` | ``failed`` | ``rolled_back`` (or ``cancelled``), every state
with a timestamped row in ``campaign_history``:

* A target of a released batch is *notified* when its frame is online (``device.online`` /
  ``device.offline``, kept in ``ota_presence``): the transaction that marks it publishes
  ``frame.command_issued`` with an ``update_firmware`` command signed by the hub's key
  (``wire.signed_command_bytes``), which the MQTT bridge delivers. An offline frame stays
  queued, with no timer running, until it returns.
* The frame's reports (``frames/<id>/ota``, ``wire.OtaProgress``) are matched by command id
  and frame; a report of a command not in flight, or one that would move the target back, is
  ignored and counted. ``completed`` publishes ``update.completed`` (the registry records the
  version), ``failed`` and ``rolled_back`` publish ``update.failed``. A frame that reports
  nothing for ``progress_timeout_s`` fails ("no progress"); going offline does not fail it
  (frames restart to install).
* After every change the campaign is evaluated: unacknowledged failures at or above the
  failure threshold (a count, or a percentage of the released frames) pause it
  (``campaign.paused``, automatic, with the numbers); once ``success_threshold`` of the
  current batch completed, or all of it finished with its failures acknowledged, the next
  batch is released; a batch that finished short of the threshold with failures nobody
  acknowledged pauses it too; when the last batch is released and every target finished,
  the campaign is completed (``campaign.completed`` with the counts).
* Operators start, pause, resume (acknowledging the failures so far), cancel (queued targets
  are cancelled, updates in flight are followed to their end), retry the failed targets, or
  roll back: each target that completed (and each that completes later) gets a signed
  ``rollback_firmware`` command to the version it ran when it was notified (its twin's
  report, else the registry's record) and reports ``rolled_back`` (``update.rolled_back``).
  A cancelled campaign publishes ``campaign.completed`` once its last update in flight
  ended, a rolled-back one once every target is back (state ``rolled_back``).

Everything is in the tables (``campaigns``, ``campaign_devices``); ``on_start`` rebuilds the
campaigns, the commands in flight and their timers from them, so a restarted hub carries on
where it was (a command in flight gets a whole timeout again). It also sends every command in
flight again, with the same command id: reports the frame had sent (and the broker had
acknowledged) may have been lost with the previous incarnation, and a frame answers a
redelivered command with its final answer again, or goes on with it. Progress within a state (a
download's percentage) is kept in memory only. The state changes that frames' reports cause
are committed in groups: those of every report already waiting in the mailbox go in one
transaction, written before any other message is handled, so 200 frames reporting at once
cost a few commits, not one each.

Journal consumer ``ota``: ``device.online``, ``device.offline``, ``device.registered``
(presence), ``device.deleted`` (the frame leaves its open campaigns, cancelled with "device
deleted") and ``firmware.uploaded`` (with ``auto_campaign``, a started campaign to every
compatible frame).
"""

from __future__ import annotations

import logging
import math
import re
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import trio

import wire
from actors.blobs import BlobStore
from actors.devices import (
    MAX_TEXT_LENGTH,
    Device,
    DeviceMessage,
    ListAllDevices,
    version_key,
)
from actors.errors import Conflict, Invalid, NotFound, TooLarge
from actors.events import (
    Audit,
    CampaignCompleted,
    CampaignCreated,
    CampaignPaused,
    CampaignStarted,
    DeviceDeleted,
    DeviceOffline,
    DeviceOnline,
    DeviceRegistered,
    Event,
    FirmwareUploaded,
    FrameCommandIssued,
    RollbackInitiated,
    UpdateCancelled,
    UpdateCompleted,
    UpdateFailed,
    UpdateRolledBack,
    new_id,
    utc_now,
)
from actors.frames import FrameDirectory, GetTwin
from actors.http import PublicUrl
from actors.journal import Consumer, Journal, JournalNudge
from actors.paging import page_of
from actors.store import Entry, Store, StoreError, Transaction
from config import OtaSettings
from supervision import (
    Actor,
    ActorNotFound,
    ActorRef,
    ActorStopped,
    AskTimeout,
    DomainError,
    Timer,
)

from ._messages import (
    CampaignAction,
    CampaignDeviceHistory,
    CampaignPage,
    CampaignState,
    CampaignView,
    CancelCampaign,
    CreateCampaign,
    DeviceState,
    Firmware,
    FirmwareFile,
    FirmwarePage,
    FirmwareStaging,
    FrameProgress,
    GetCampaign,
    GetCampaignDevice,
    GetFirmware,
    GetFirmwareStaging,
    GetOtaStats,
    GetPublicKey,
    HistoryEntry,
    ListCampaigns,
    ListFirmware,
    OpenFirmware,
    OtaStats,
    PauseCampaign,
    ResumeCampaign,
    RetryFailed,
    RollbackCampaign,
    StartCampaign,
    StoreFirmware,
)
from ._rollout import FAILURES, RANK, ROLLBACK, UPDATE, Campaign, Target
from ._signing import SigningKey
from ._tables import INSERT_FIRMWARE, OTA_MIGRATIONS, Changes, firmware_row, load

log = logging.getLogger("framehub.ota")


STAGING_TTL_S = 3600.0
"""Staged firmware uploads older than this, left by a crash, are removed at start."""
VERSION_ASK_S = 1.0
"""How long a frame's twin (or the registry) may take to say which firmware it runs."""
MAX_NAME_LENGTH = 100
MAX_NOTES_LENGTH = 4000
MAX_VERSION_LENGTH = 48
MAX_FILE_NAME_LENGTH = 200
MAX_BATCH_SIZE = 10_000

SEMVER = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(-(0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(\.(0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*)?"
    r"(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?"
)
"""A semantic version (semver.org 2.0.0): ``1.2.3``, ``1.2.3-rc.1``, ``1.2.3+build.5``."""

_UNPRINTABLE = {"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"}
_SENDING: tuple[CampaignState, ...] = ("running", "rolling_back")


class _DeadlinesDue(msgspec.Struct, frozen=True):
    generation: int


class _PublicUrlReady(msgspec.Struct, frozen=True):
    """The gateway bound its port: commands (which carry download links) can go out."""


class _Flush(msgspec.Struct, frozen=True):
    """Commit what the progress reports handled since the last commit changed."""


OtaMessage = (
    JournalNudge
    | FrameProgress
    | GetPublicKey
    | GetFirmwareStaging
    | StoreFirmware
    | ListFirmware
    | GetFirmware
    | OpenFirmware
    | CreateCampaign
    | ListCampaigns
    | GetCampaign
    | GetCampaignDevice
    | StartCampaign
    | PauseCampaign
    | ResumeCampaign
    | CancelCampaign
    | RollbackCampaign
    | RetryFailed
    | GetOtaStats
    | _DeadlinesDue
    | _PublicUrlReady
    | _Flush
)


# -- checks ------------------------------------------------------------------------------------


def check_version(value: str | None) -> str:
    """``value`` stripped if it is a semantic version, else ``Invalid`` saying so."""
    version = (value or "").strip()
    if not version:
        raise Invalid("version is required (a semantic version such as 1.2.3)")
    if len(version) > MAX_VERSION_LENGTH or SEMVER.fullmatch(version) is None:
        raise Invalid(
            f"version must be a semantic version such as 1.2.3, 1.2.3-rc.1 or 1.2.3+build.5 "
            f"(at most {MAX_VERSION_LENGTH} characters), got {version[:80]!r}"
        )
    return version


def _text(value: str | None, what: str, longest: int) -> str:
    text = (value or "").strip()
    if not text:
        raise Invalid(f"{what} is required")
    if len(text) > longest:
        raise Invalid(f"{what} must be at most {longest} characters long")
    for char in text:
        if unicodedata.category(char) in _UNPRINTABLE:
            raise Invalid(f"{what} must not contain control characters (U+{ord(char):04X})")
    return text


def _audit(user_id: str | None) -> Audit:
    return Audit.system("ota") if user_id is None else Audit.user(user_id)


def _refusal(c: Campaign, action: str, allowed: tuple[CampaignState, ...]) -> Conflict:
    states = ", ".join(allowed[:-1]) + (" or " if len(allowed) > 1 else "") + allowed[-1]
    return Conflict(
        f"campaign {c.campaign_id} is {c.state}; {action} applies to a {states} campaign"
    )


# -- the actor ---------------------------------------------------------------------------------


class OtaCampaigns(Actor[OtaMessage]):
    """``/domain/ota``: see the module's docstring."""

    def __init__(
        self,
        store: Store,
        journal: Journal,
        firmware: BlobStore,
        signing_key: SigningKey,
        settings: OtaSettings,
        public_url: PublicUrl,
        *,
        registry: ActorRef[DeviceMessage],
        frames: FrameDirectory,
    ) -> None:
        self._registry = registry
        self._frames = frames
        self._store = store
        self._journal = journal
        self._blobs = firmware
        self._key = signing_key
        self._settings = settings
        self._public_url = public_url
        self._consumer: Consumer | None = None
        self._firmware: dict[str, Firmware] = {}
        self._campaigns: dict[str, Campaign] = {}
        self._commands: dict[str, tuple[Campaign, Target]] = {}
        """Targets with a command in flight, by command id."""
        self._online: set[str] = set()
        self._timer: Timer | None = None
        self._timer_at = math.inf
        self._timer_generation = 0
        self._accepted = 0
        self._ignored: Counter[str] = Counter()
        self._reload = False
        """A journal handler failed after changing memory: rebuild it from the tables."""
        self._pending: Changes | None = None
        """What the progress reports handled since the last ``_Flush`` changed."""
        self._resend = False
        """The commands in flight are to be sent again (this incarnation started with some)."""

    # -- lifecycle -----------------------------------------------------------------------------

    async def on_start(self) -> None:
        await self._store.migrate("ota", OTA_MIGRATIONS)
        await self._load()
        self._resend = bool(self._commands)  # once the public URL is known: _PublicUrlReady
        swept = await self._blobs.sweep_staging(STAGING_TTL_S)
        if swept:
            log.info("removed %d stale staged firmware uploads", swept)
        await self.context.start_service(self._announce_public_url)
        self._consumer = await self._journal.consume(
            "ota",
            [
                "device.online",
                "device.offline",
                "device.registered",
                "device.deleted",
                "firmware.uploaded",
            ],
            self.context,
            self._on_event,
        )

    async def on_stop(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
        await self._flush()

    async def _load(self) -> None:
        loaded = await load(self._store)
        self._firmware = {f.firmware_id: f for f in loaded.firmware}
        self._campaigns = {c.campaign_id: c for c in loaded.campaigns}
        self._online = {device_id for device_id, online in loaded.presence.items() if online}
        for device in await self._devices():
            # Frames paired before this actor first heard of them: the registry knows best.
            if device.device_id not in loaded.presence and device.active:
                self._online.add(device.device_id)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_at = math.inf
        self._commands.clear()
        deadline = trio.current_time() + self._settings.progress_timeout_s
        for c in self._campaigns.values():
            c.waiting.clear()
            for t in c.targets:
                if t.in_flight:
                    assert t.command_id is not None
                    self._commands[t.command_id] = (c, t)
                    t.deadline = deadline
                elif t.state == "rolling_back":
                    c.waiting.add(t.device_id)
            if c.state in ("running", "paused"):
                end = (c.current_batch + 1) * c.batch_size
                c.waiting.update(t.device_id for t in c.targets[:end] if t.state == "queued")
        if self._commands:
            self._arm(deadline)

    async def _announce_public_url(
        self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        await self._public_url.wait()
        if self.context.ref.alive:
            self.context.ref.nudge(_PublicUrlReady())

    async def receive(self, message: OtaMessage) -> Any:
        assert self._consumer is not None
        if self._pending is not None and (
            not isinstance(message, FrameProgress) or not self._consumer.caught_up
        ):
            # Before anything else reads or writes: progress comes first, in order.
            await self._flush()
        await self._consumer.drain()
        if self._reload:
            self._reload = False
            await self._load()
        match message:
            case JournalNudge():
                return None
            case FrameProgress(progress=progress):
                await self._progress(progress)
            case GetPublicKey():
                return self._key.public_key
            case GetFirmwareStaging():
                return FirmwareStaging(
                    directory=str(self._blobs.staging),
                    max_bytes=self._settings.max_firmware_bytes,
                )
            case StoreFirmware():
                return await self._store_firmware(message)
            case ListFirmware(limit=limit, cursor=cursor):
                images, next_cursor = page_of(
                    self._firmware.values(),
                    lambda f: (f.uploaded_at, f.firmware_id),
                    limit,
                    cursor,
                    newest_first=True,
                )
                return FirmwarePage(items=images, next_cursor=next_cursor)
            case GetFirmware(firmware_id=firmware_id):
                return self._firmware_of(firmware_id)
            case OpenFirmware(firmware_id=firmware_id):
                firmware = self._firmware_of(firmware_id)
                return FirmwareFile(
                    path=str(self._blobs.path(firmware.sha256)),
                    sha256=firmware.sha256,
                    size=firmware.size,
                    file_name=firmware.file_name,
                )
            case CreateCampaign():
                return await self._create(message)
            case ListCampaigns(limit=limit, cursor=cursor):
                campaigns, next_cursor = page_of(
                    self._campaigns.values(),
                    lambda c: (c.created_at, c.campaign_id),
                    limit,
                    cursor,
                    newest_first=True,
                )
                return CampaignPage(items=[c.summary() for c in campaigns], next_cursor=next_cursor)
            case GetCampaign(campaign_id=campaign_id):
                return self._campaign(campaign_id).view()
            case GetCampaignDevice():
                return await self._device_history(message)
            case CampaignAction():
                return await self._act(message)
            case GetOtaStats():
                return OtaStats(
                    in_flight=len(self._commands),
                    accepted_progress=self._accepted,
                    ignored_progress=dict(self._ignored),
                )
            case _DeadlinesDue(generation=generation):
                await self._deadlines_due(generation)
            case _Flush():
                return None  # flushed above
            case _PublicUrlReady():
                async with self._store.transaction() as tx:
                    changes = Changes(tx)
                    if self._resend:
                        self._resend_in_flight(changes)
                    for c in list(self._campaigns.values()):
                        await self._evaluate(c, changes)
                    changes.flush()
                self._resend = False
        return None

    # -- firmware ------------------------------------------------------------------------------

    def _firmware_of(self, firmware_id: str) -> Firmware:
        firmware = self._firmware.get(firmware_id)
        if firmware is None:
            raise NotFound(f"no firmware {firmware_id}")
        return firmware

    async def _store_firmware(self, message: StoreFirmware) -> Firmware:
        version = check_version(message.version)
        model = _text(message.model, "model", MAX_TEXT_LENGTH)
        min_hw_version = _text(message.min_hw_version, "min_hw_version", MAX_TEXT_LENGTH)
        notes = (message.notes or "").strip()
        if len(notes) > MAX_NOTES_LENGTH:
            raise Invalid(f"notes must be at most {MAX_NOTES_LENGTH} characters long")
        limit = self._settings.max_firmware_bytes
        if message.size > limit:
            raise TooLarge(f"the firmware image is larger than the limit of {limit} bytes")
        if message.size <= 0:
            raise Invalid("the firmware image is empty")
        for known in self._firmware.values():
            if (known.model, known.version) == (model, version):
                raise Conflict(
                    f"model {model} already has firmware {version} ({known.firmware_id})"
                )
        staged = Path(message.staged_path)
        if not await trio.to_thread.run_sync(self._is_staged, staged):
            raise Invalid("the upload is not a staged firmware file")
        sha256 = await self._blobs.put_file(staged)
        firmware = Firmware(
            firmware_id=new_id(),
            version=version,
            model=model,
            min_hw_version=min_hw_version,
            notes=notes,
            sha256=sha256,
            size=await self._blobs.size(sha256),
            file_name=(message.file_name or f"{model}-{version}.bin")[-MAX_FILE_NAME_LENGTH:],
            uploaded_at=utc_now(),
            uploaded_by=message.user_id,
        )
        tx = Transaction()
        tx.execute(INSERT_FIRMWARE, firmware_row(firmware))
        tx.publish(
            FirmwareUploaded(
                audit=_audit(message.user_id),
                correlation_id=message.correlation_id or new_id(),
                firmware_id=firmware.firmware_id,
                version=version,
                model=model,
                min_hw_version=min_hw_version,
                sha256=sha256,
                size=firmware.size,
                notes=notes,
            )
        )
        try:
            await self._store.commit(tx)
        except StoreError:
            # Not kept (a full disk answers 507): neither is its image, unless another
            # firmware has the same bytes.
            if all(known.sha256 != sha256 for known in self._firmware.values()):
                await self._blobs.delete(sha256)
            raise
        self._firmware[firmware.firmware_id] = firmware
        log.info("firmware %s %s stored (%d bytes)", model, version, firmware.size)
        return firmware

    def _is_staged(self, path: Path) -> bool:
        """Only a file right in the staging directory may be moved on a caller's say-so."""
        return (
            path.parent.resolve() == self._blobs.staging.resolve()
            and not path.is_symlink()
            and path.is_file()
        )

    # -- campaigns: planning -------------------------------------------------------------------

    def _campaign(self, campaign_id: str) -> Campaign:
        campaign = self._campaigns.get(campaign_id)
        if campaign is None:
            raise NotFound(f"no campaign {campaign_id}")
        return campaign

    async def _devices(self) -> list[Device]:
        """Every paired frame, in pairing order (asked of the registry)."""
        return await self._registry.ask(ListAllDevices())

    @staticmethod
    def _compatible(firmware: Firmware, devices: list[Device]) -> tuple[list[Device], str]:
        """The frames ``firmware`` suits (its model, at least its minimum hardware version)
        that do not run it already, and why the others were left out."""
        floor = version_key(firmware.min_hw_version)
        kept: list[Device] = []
        other_model = too_old = current = 0
        for device in devices:
            if device.model != firmware.model:
                other_model += 1
            elif version_key(device.hw_version) < floor:
                too_old += 1
            elif device.firmware_version == firmware.version:
                current += 1
            else:
                kept.append(device)
        reasons: list[str] = []
        if other_model:
            reasons.append(f"{other_model} of another model than {firmware.model}")
        if too_old:
            reasons.append(f"{too_old} with hardware older than {firmware.min_hw_version}")
        if current:
            reasons.append(f"{current} already running {firmware.version}")
        return kept, "; ".join(reasons) or "no paired frame matches the targets"

    async def _create(self, message: CreateCampaign) -> CampaignView:
        firmware = self._firmware_of(message.firmware_id)
        name = _text(message.name, "name", MAX_NAME_LENGTH)
        if not 1 <= message.batch_size <= MAX_BATCH_SIZE:
            raise Invalid(f"batch_size must be between 1 and {MAX_BATCH_SIZE}")
        if not 0.0 <= message.success_threshold <= 1.0:
            raise Invalid("success_threshold must be a fraction between 0 and 1")
        if message.failure_threshold is not None and message.failure_threshold < 1:
            raise Invalid("failure_threshold must be at least 1 (or null for none)")
        percent = message.failure_threshold_percent
        if percent is not None and not 0.0 <= percent <= 100.0:
            raise Invalid("failure_threshold_percent must be between 0 and 100 (or null)")
        if not message.models and not message.device_ids:
            raise Invalid("name the targets: models and/or device_ids")
        devices = await self._devices()
        known = {d.device_id: d for d in devices}
        missing = [i for i in dict.fromkeys(message.device_ids) if i not in known]
        if missing:
            raise NotFound(f"no device {', '.join(missing[:5])}{' ...' * (len(missing) > 5)}")
        if message.models:
            models, named = set(message.models), set(message.device_ids)
            chosen = [d for d in devices if d.model in models or d.device_id in named]
        else:
            chosen = [known[i] for i in dict.fromkeys(message.device_ids)]
        targets, why = self._compatible(firmware, chosen)
        if not targets:
            raise Invalid(
                f"no frame to update to {firmware.model} {firmware.version} among the "
                f"{len(chosen)} targeted: {why}"
            )
        campaign = self._new_campaign(
            name=name,
            firmware=firmware,
            devices=targets,
            batch_size=message.batch_size,
            success_threshold=message.success_threshold,
            failure_threshold=message.failure_threshold,
            failure_threshold_percent=percent,
            correlation_id=message.correlation_id or new_id(),
            created_by=message.user_id,
        )
        audit = _audit(message.user_id)
        async with self._store.transaction() as tx:
            changes = Changes(tx)
            self._add(campaign, changes, audit)
            if message.start:
                await self._start(campaign, changes, audit)
            changes.flush()
        return campaign.view()

    def _new_campaign(
        self,
        *,
        name: str,
        firmware: Firmware,
        devices: list[Device],
        batch_size: int,
        success_threshold: float,
        failure_threshold: int | None,
        failure_threshold_percent: float | None,
        correlation_id: str,
        created_by: str | None,
    ) -> Campaign:
        now = utc_now()
        campaign = Campaign(
            campaign_id=new_id(),
            name=name,
            firmware=firmware,
            state="draft",
            batch_size=batch_size,
            current_batch=0,
            success_threshold=success_threshold,
            failure_threshold=failure_threshold,
            failure_threshold_percent=failure_threshold_percent,
            correlation_id=correlation_id,
            created_by=created_by,
            created_at=now,
            updated_at=now,
        )
        for position, device in enumerate(devices):
            campaign.add(Target(device_id=device.device_id, position=position, updated_at=now))
        return campaign

    def _add(self, c: Campaign, changes: Changes, audit: Audit) -> None:
        self._campaigns[c.campaign_id] = c
        for t in c.targets:
            changes.target(c, t)
        changes.publish(
            CampaignCreated(
                audit=audit,
                correlation_id=c.correlation_id,
                campaign_id=c.campaign_id,
                firmware_id=c.firmware.firmware_id,
                device_ids=[t.device_id for t in c.targets],
                name=c.name,
                version=c.firmware.version,
            )
        )
        log.info(
            "campaign %s (%s) created: %s %s to %d frames in batches of %d",
            c.campaign_id,
            c.name,
            c.firmware.model,
            c.firmware.version,
            len(c.targets),
            c.batch_size,
        )

    async def _device_history(self, message: GetCampaignDevice) -> CampaignDeviceHistory:
        c = self._campaign(message.campaign_id)
        target = c.by_device.get(message.device_id)
        if target is None:
            raise NotFound(f"frame {message.device_id} is not in campaign {c.campaign_id}")
        rows = await self._store.fetch_all(
            "SELECT at, state, progress, error, command_id FROM campaign_history "
            "WHERE campaign_id = ? AND device_id = ? ORDER BY id",
            (c.campaign_id, target.device_id),
        )
        return CampaignDeviceHistory(
            **msgspec.structs.asdict(target.view(c.batch_size)),
            campaign_id=c.campaign_id,
            history=[
                HistoryEntry(at=at, state=state, progress=progress, error=error, command_id=cid)
                for at, state, progress, error, cid in rows
            ],
        )

    # -- campaigns: operators ------------------------------------------------------------------

    async def _act(self, message: CampaignAction) -> CampaignView:
        c = self._campaign(message.campaign_id)
        audit = _audit(message.user_id)
        async with self._store.transaction() as tx:
            changes = Changes(tx)
            match message:
                case StartCampaign():
                    await self._start(c, changes, audit)
                case PauseCampaign():
                    if c.state != "running":
                        raise _refusal(c, "pause", ("running",))
                    self._pause(c, changes, audit, "paused by an operator", automatic=False)
                case ResumeCampaign():
                    await self._resume(c, changes, audit)
                case CancelCampaign():
                    await self._cancel(c, changes, audit)
                case RollbackCampaign():
                    await self._rollback(c, changes, audit)
                case RetryFailed():
                    await self._retry(c, changes, audit)
            changes.flush()
        return c.view()

    async def _start(self, c: Campaign, changes: Changes, audit: Audit) -> None:
        if c.state != "draft":
            raise _refusal(c, "start", ("draft",))
        c.state = "running"
        c.started_at = c.updated_at = utc_now()
        c.release(0)
        changes.campaign(c)
        changes.publish(
            CampaignStarted(audit=audit, correlation_id=c.correlation_id, campaign_id=c.campaign_id)
        )
        log.info("campaign %s started", c.campaign_id)
        await self._evaluate(c, changes)

    async def _resume(self, c: Campaign, changes: Changes, audit: Audit) -> None:
        if c.state != "paused":
            raise _refusal(c, "resume", ("paused",))
        for t in c.acknowledge_failures():
            changes.target(c, t, history=False)
        self._run_again(c, changes, audit)
        await self._evaluate(c, changes)

    def _run_again(self, c: Campaign, changes: Changes, audit: Audit) -> None:
        c.state = "running"
        c.pause_reason = ""
        c.finished_at = None
        c.updated_at = utc_now()
        changes.campaign(c)
        changes.publish(
            CampaignStarted(
                audit=audit,
                correlation_id=c.correlation_id,
                campaign_id=c.campaign_id,
                resumed=True,
            )
        )
        log.info("campaign %s runs again", c.campaign_id)

    async def _cancel(self, c: Campaign, changes: Changes, audit: Audit) -> None:
        if c.state not in ("draft", "running", "paused"):
            raise _refusal(c, "cancel", ("draft", "running", "paused"))
        for t in c.targets:
            if t.state == "queued":
                self._move(c, t, "cancelled", changes, error="the campaign was cancelled")
        c.waiting.clear()
        c.state = "cancelled"
        c.pause_reason = ""
        changes.campaign(c)
        changes.publish(
            UpdateCancelled(audit=audit, correlation_id=c.correlation_id, campaign_id=c.campaign_id)
        )
        log.info("campaign %s cancelled", c.campaign_id)
        await self._evaluate(c, changes)

    async def _rollback(self, c: Campaign, changes: Changes, audit: Audit) -> None:
        if c.state not in ("running", "paused", "completed", "cancelled"):
            raise _refusal(c, "rollback", ("running", "paused", "completed", "cancelled"))
        completed = [t for t in c.targets if t.state == "completed"]
        queued = [t for t in c.targets if t.state == "queued"]
        for t in queued:
            self._move(c, t, "cancelled", changes, error="the campaign was rolled back")
        c.waiting.clear()
        c.state = "rolling_back"
        c.pause_reason = ""
        c.finished_at = None
        changes.campaign(c)
        changes.publish(
            RollbackInitiated(
                audit=audit,
                correlation_id=c.correlation_id,
                campaign_id=c.campaign_id,
                device_ids=[t.device_id for t in completed],
            )
        )
        if queued:
            changes.publish(
                UpdateCancelled(
                    audit=audit, correlation_id=c.correlation_id, campaign_id=c.campaign_id
                )
            )
        for t in completed:
            self._order_rollback(c, t, changes)
        log.info("campaign %s rolls back %d frames", c.campaign_id, len(completed))
        await self._evaluate(c, changes)

    async def _retry(self, c: Campaign, changes: Changes, audit: Audit) -> None:
        if c.state not in ("running", "paused", "completed"):
            raise _refusal(c, "retry-failed", ("running", "paused", "completed"))
        failed = [t for t in c.targets if t.state in FAILURES]
        if not failed:
            raise Conflict(f"campaign {c.campaign_id} has no failed frames to retry")
        for t in failed:
            self._move(c, t, "queued", changes, error="")
            c.waiting.add(t.device_id)
        if c.state != "running":
            self._run_again(c, changes, audit)
        await self._evaluate(c, changes)

    # -- campaigns: the rollout ----------------------------------------------------------------

    async def _evaluate(self, c: Campaign, changes: Changes) -> None:
        """Apply the thresholds after a change, release batches, send what is owed."""
        if c.state == "running":
            while True:
                reason = c.failure_reason()
                if reason is not None:
                    self._pause(c, changes, Audit.system("ota"), reason, automatic=True)
                    return
                step, why = c.batch_step()
                if step == "release":
                    c.release(c.current_batch + 1)
                    changes.campaign(c)
                    log.info(
                        "campaign %s released batch %d of %d",
                        c.campaign_id,
                        c.current_batch + 1,
                        c.batches,
                    )
                    continue
                if step == "complete":
                    self._finish(c, "completed", changes)
                    return
                if step == "stall":
                    self._pause(c, changes, Audit.system("ota"), why, automatic=True)
                    return
                break
            await self._send_commands(c, changes)
        elif c.state == "rolling_back":
            if c.all_final():
                self._finish(c, "rolled_back", changes)
            else:
                await self._send_commands(c, changes)
        elif c.state == "cancelled" and c.finished_at is None and c.all_final():
            self._finish(c, "cancelled", changes)

    def _pause(
        self, c: Campaign, changes: Changes, audit: Audit, reason: str, *, automatic: bool
    ) -> None:
        c.state = "paused"
        c.pause_reason = reason
        c.updated_at = utc_now()
        changes.campaign(c)
        changes.publish(
            CampaignPaused(
                audit=audit,
                correlation_id=c.correlation_id,
                campaign_id=c.campaign_id,
                reason=reason,
                automatic=automatic,
            )
        )
        log.info("campaign %s paused: %s", c.campaign_id, reason)

    def _finish(self, c: Campaign, state: CampaignState, changes: Changes) -> None:
        c.state = state
        c.finished_at = c.updated_at = utc_now()
        c.pause_reason = ""
        c.waiting.clear()
        changes.campaign(c)
        counts = c.counts
        changes.publish(
            CampaignCompleted(
                audit=Audit.system("ota"),
                correlation_id=c.correlation_id,
                campaign_id=c.campaign_id,
                completed=counts["completed"],
                failed=counts["failed"],
                cancelled=counts["cancelled"],
                rolled_back=counts["rolled_back"],
            )
        )
        log.info("campaign %s is %s: %s", c.campaign_id, state, dict(+counts))

    async def _send_commands(self, c: Campaign, changes: Changes) -> None:
        """Send the commands ``c`` owes to frames that are online, in rollout order."""
        if c.state not in _SENDING or not c.waiting:
            return
        base_url = self._public_url.value
        if not base_url:
            return  # the gateway is not listening yet: _PublicUrlReady sends them
        ready = sorted(
            (c.by_device[d] for d in c.waiting if d in self._online), key=lambda t: t.position
        )
        updates = [t.device_id for t in ready if c.state == "running" and t.state == "queued"]
        running = await self._running_versions(updates) if updates else {}
        for t in ready:
            c.waiting.discard(t.device_id)
            if c.state == "running" and t.state == "queued":
                self._send_update(c, t, base_url, running.get(t.device_id), changes)
            elif c.state == "rolling_back" and t.state == "rolling_back" and not t.in_flight:
                self._send_rollback(c, t, changes)

    def _send_update(
        self, c: Campaign, t: Target, base_url: str, running: str | None, changes: Changes
    ) -> None:
        """Notify ``t``; ``running`` is the firmware it runs now (a rollback returns to it)."""
        firmware = c.firmware
        if t.previous_version is None or running not in (None, firmware.version):
            t.previous_version = running
        t.command, t.command_id = UPDATE, new_id()
        t.attempts += 1
        t.progress = None
        self._move(c, t, "notified", changes, error="")
        self._issue(c, t, self._signed(c, t, base_url), changes)

    def _signed(self, c: Campaign, t: Target, base_url: str) -> wire.CommandArgs:
        """The arguments of ``t``'s command, signed for its frame and command id."""
        assert t.command is not None and t.command_id is not None
        if t.command == UPDATE:
            firmware = c.firmware
            args = wire.CommandArgs(
                url=f"{base_url}/api/v1/firmware/{firmware.firmware_id}/download",
                sha256=firmware.sha256,
                size=firmware.size,
                version=firmware.version,
                campaign_id=c.campaign_id,
            )
        else:
            args = wire.CommandArgs(version=t.previous_version, campaign_id=c.campaign_id)
        signature = self._key.sign(t.device_id, t.command_id, t.command, args)
        return msgspec.structs.replace(args, signature=signature)

    def _resend_in_flight(self, changes: Changes) -> None:
        """Send every command in flight again, same id (see the module's docstring)."""
        base_url = self._public_url.value
        for c, t in sorted(self._commands.values(), key=lambda ct: ct[1].position):
            self._issue(c, t, self._signed(c, t, base_url), changes)
        if self._commands:
            log.info("sent %d firmware commands in flight again", len(self._commands))

    def _order_rollback(self, c: Campaign, t: Target, changes: Changes) -> None:
        """``t`` completed the update in a campaign being rolled back: it is owed a rollback."""
        self._move(c, t, "rolling_back", changes)
        c.waiting.add(t.device_id)

    def _send_rollback(self, c: Campaign, t: Target, changes: Changes) -> None:
        t.command, t.command_id = ROLLBACK, new_id()
        t.progress = None
        self._move(c, t, "rolling_back", changes)
        self._issue(c, t, self._signed(c, t, self._public_url.value), changes)

    def _issue(self, c: Campaign, t: Target, args: wire.CommandArgs, changes: Changes) -> None:
        assert t.command is not None and t.command_id is not None
        changes.publish(
            FrameCommandIssued(
                audit=Audit.system("ota"),
                correlation_id=c.correlation_id,
                frame_id=t.device_id,
                command_id=t.command_id,
                command=t.command,
                args=args,
            )
        )

    async def _running_versions(self, device_ids: list[str]) -> dict[str, str | None]:
        """The firmware each frame runs: what it last reported (its twin), else what the
        registry recorded; None where neither knows. A twin too busy to answer in time
        makes the rest of this round rely on the registry, so a batch is never held up
        for long."""
        versions: dict[str, str | None] = {}
        patient = True
        for device_id in device_ids:
            versions[device_id] = None
            if not patient:
                continue
            proxy = self._frames.find(device_id)
            if proxy is None:
                continue
            try:
                twin = await proxy.ask(GetTwin(), timeout=VERSION_ASK_S)
            except AskTimeout:
                patient = False
            except (ActorNotFound, ActorStopped, DomainError):
                pass
            else:
                versions[device_id] = twin.firmware_version
        if all(versions.values()):
            return versions
        try:
            recorded = {d.device_id: d.firmware_version for d in await self._devices()}
        except (ActorNotFound, ActorStopped, AskTimeout, DomainError):
            return versions
        return {d: version or recorded.get(d) for d, version in versions.items()}

    def _move(
        self,
        c: Campaign,
        t: Target,
        state: DeviceState,
        changes: Changes,
        *,
        error: str | None = None,
    ) -> None:
        """Put ``t`` in ``state`` (with a history entry) and follow its command."""
        c.set_state(t, state)
        if error is not None:
            t.error = error
        t.updated_at = c.updated_at = utc_now()
        if t.in_flight:
            assert t.command_id is not None
            self._commands[t.command_id] = (c, t)
            self._extend(t)
        else:
            if t.command_id is not None:
                self._commands.pop(t.command_id, None)
            t.deadline = None
        changes.target(c, t)

    # -- progress and its timeout --------------------------------------------------------------

    async def _progress(self, report: wire.OtaProgress) -> None:
        found = self._commands.get(report.command_id) if report.command_id else None
        if found is None:
            self._ignored["unknown_command"] += 1
            return
        c, t = found
        if t.device_id != report.frame_id:
            self._ignored["wrong_frame"] += 1
            return
        if t.command == ROLLBACK:
            await self._rollback_progress(c, t, report)
            return
        if RANK[report.state] <= RANK[t.state]:
            if (
                report.state == t.state
                and report.progress is not None
                and (t.progress is None or report.progress > t.progress)
            ):
                # Progress within a state: remembered, not written; the frame is alive.
                t.progress = min(1.0, max(0.0, report.progress))
                self._extend(t)
                self._accepted += 1
            else:
                self._ignored["not_forward"] += 1
            return
        self._accepted += 1
        firmware = c.firmware
        frame = Audit.frame(t.device_id)
        changes = self._grouped()
        if report.state in ("downloading", "downloaded", "installing"):
            if report.state == "downloading":
                progress = report.progress if report.progress is not None else 0.0
                t.progress = min(1.0, max(0.0, progress))
            else:
                t.progress = 1.0
            self._move(c, t, report.state, changes)
        elif report.state == "completed" and report.version not in (None, firmware.version):
            self._fail(
                c,
                t,
                changes,
                frame,
                f"the frame reports version {report.version} after the update to "
                f"{firmware.version}",
            )
        elif report.state == "completed":
            t.progress = 1.0
            self._move(c, t, "completed", changes, error="")
            changes.publish(
                UpdateCompleted(
                    audit=frame,
                    correlation_id=c.correlation_id,
                    campaign_id=c.campaign_id,
                    device_id=t.device_id,
                    firmware_version=firmware.version,
                )
            )
            if c.state == "rolling_back":
                self._order_rollback(c, t, changes)
        elif report.state == "failed":
            self._fail(c, t, changes, frame, report.error or "the frame reported a failure")
        else:
            self._fail(
                c,
                t,
                changes,
                frame,
                report.error or "the frame went back to its previous firmware",
                rolled_back=True,
            )
        await self._evaluate(c, changes)

    def _fail(
        self,
        c: Campaign,
        t: Target,
        changes: Changes,
        audit: Audit,
        error: str,
        *,
        rolled_back: bool = False,
        running: str | None = None,
    ) -> None:
        self._move(c, t, "rolled_back" if rolled_back else "failed", changes, error=error)
        changes.publish(
            UpdateFailed(
                audit=audit,
                correlation_id=c.correlation_id,
                campaign_id=c.campaign_id,
                device_id=t.device_id,
                error=error,
                rolled_back=rolled_back,
                firmware_version=running or t.previous_version,
            )
        )

    async def _rollback_progress(self, c: Campaign, t: Target, report: wire.OtaProgress) -> None:
        if report.state not in ("rolled_back", "failed"):
            self._extend(t)  # on its way back
            self._accepted += 1
            return
        self._accepted += 1
        frame = Audit.frame(t.device_id)
        changes = self._grouped()
        if report.state == "rolled_back":
            version = report.version or t.previous_version or "unknown"
            self._move(c, t, "rolled_back", changes, error="")
            changes.publish(
                UpdateRolledBack(
                    audit=frame,
                    correlation_id=c.correlation_id,
                    campaign_id=c.campaign_id,
                    device_id=t.device_id,
                    firmware_version=version,
                )
            )
        else:
            self._fail(
                c,
                t,
                changes,
                frame,
                f"rollback failed: {report.error or 'no reason given'}",
                running=c.firmware.version,
            )
        await self._evaluate(c, changes)

    def _grouped(self) -> Changes:
        """Where a progress report's changes go: committed together with those of the
        reports already waiting in the mailbox, by the ``_Flush`` queued behind them (or
        before any other message is handled). Under load one commit covers many reports."""
        if self._pending is None:
            self._pending = Changes(Transaction())
            self.context.ref.nudge(_Flush())
        return self._pending

    async def _flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.flush()
            await self._store.commit(pending.tx)

    def _extend(self, t: Target) -> None:
        """The frame showed progress: it has a whole timeout again."""
        t.deadline = trio.current_time() + self._settings.progress_timeout_s
        self._arm(t.deadline)

    def _arm(self, deadline: float) -> None:
        """Make sure a ``_DeadlinesDue`` comes by ``deadline`` (one timer for all targets)."""
        if self._timer is not None and self._timer_at <= deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_generation += 1
        self._timer_at = deadline
        self._timer = self.context.send_after(
            max(0.0, deadline - trio.current_time()), _DeadlinesDue(self._timer_generation)
        )

    async def _deadlines_due(self, generation: int) -> None:
        if generation != self._timer_generation:
            return  # a timer replaced after it fired
        self._timer = None
        self._timer_at = math.inf
        now = trio.current_time()
        expired = [
            (c, t)
            for c, t in self._commands.values()
            if t.deadline is not None and t.deadline <= now
        ]
        if expired:
            silence = f"no progress for {self._settings.progress_timeout_s:g} s"
            system = Audit.system("ota")
            async with self._store.transaction() as tx:
                changes = Changes(tx)
                touched: dict[str, Campaign] = {}
                for c, t in expired:
                    if t.command == ROLLBACK:
                        self._fail(
                            c,
                            t,
                            changes,
                            system,
                            f"rollback failed: {silence}",
                            running=c.firmware.version,
                        )
                    else:
                        self._fail(c, t, changes, system, silence)
                    touched[c.campaign_id] = c
                for c in touched.values():
                    await self._evaluate(c, changes)
                changes.flush()
        deadlines = [t.deadline for _, t in self._commands.values() if t.deadline is not None]
        if deadlines:
            self._arm(min(deadlines))

    # -- journal handlers ----------------------------------------------------------------------

    async def _on_event(self, entry: Entry, tx: Transaction) -> None:
        try:
            changes = Changes(tx)
            await self._handle(entry.event, changes)
            changes.flush()
        except Exception:
            self._reload = True  # memory may hold what will not commit
            raise

    async def _handle(self, event: Event, changes: Changes) -> None:
        match event:
            case DeviceOnline(device_id=device_id):
                self._online.add(device_id)
                changes.presence(device_id, True)
                for c in list(self._campaigns.values()):
                    if device_id in c.waiting:
                        await self._send_commands(c, changes)
            case DeviceOffline(device_id=device_id) | DeviceRegistered(device_id=device_id):
                self._online.discard(device_id)
                changes.presence(device_id, False)
            case DeviceDeleted(device_id=device_id):
                self._online.discard(device_id)
                changes.presence(device_id, None)
                for c in list(self._campaigns.values()):
                    t = c.by_device.get(device_id)
                    if t is None or t.final or not c.open:
                        continue
                    self._move(c, t, "cancelled", changes, error="device deleted")
                    c.waiting.discard(device_id)
                    changes.publish(
                        UpdateCancelled(
                            audit=Audit.system("ota"),
                            correlation_id=c.correlation_id,
                            campaign_id=c.campaign_id,
                            device_id=device_id,
                        )
                    )
                    await self._evaluate(c, changes)
            case FirmwareUploaded() as uploaded if self._settings.auto_campaign:
                await self._auto_campaign(uploaded, changes)
            case _:
                pass

    async def _auto_campaign(self, event: FirmwareUploaded, changes: Changes) -> None:
        firmware = self._firmware.get(event.firmware_id)
        if firmware is None:
            return
        devices = [d for d in await self._devices() if d.model == firmware.model]
        targets, why = self._compatible(firmware, devices)
        if not targets:
            log.info("no automatic campaign for %s %s: %s", firmware.model, firmware.version, why)
            return
        campaign = self._new_campaign(
            name=f"automatic: {firmware.model} {firmware.version}",
            firmware=firmware,
            devices=targets,
            batch_size=self._settings.auto_campaign_batch_size,
            success_threshold=1.0,
            failure_threshold=None,
            failure_threshold_percent=20.0,
            correlation_id=event.correlation_id,
            created_by=None,
        )
        system = Audit.system("ota")
        self._add(campaign, changes, system)
        await self._start(campaign, changes, system)
