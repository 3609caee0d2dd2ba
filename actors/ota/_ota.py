"""The OTA actor (seed ota_service): firmware images and staged update campaigns.

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
download's percentage) is kept in memory only. The state changes that frames' reports cause,
and the events they publish, are committed in groups (``actors.store.GroupCommit``, with no
window): those of every report already waiting in the mailbox go in one transaction, the
next group fills while it commits, and every other message waits until all of them are
committed, so what an operator reads or does, a deadline and a journal event all come after
them. 200 frames reporting at once cost a few commits, not one each. Like any report not yet
handled, a report whose group had not committed is lost with the incarnation: its command is
still in flight in the tables, so it is sent again and the frame answers it again.

Journal consumer ``ota``: ``device.online``, ``device.offline``, ``device.registered``
(presence), ``device.deleted`` (the frame leaves its open campaigns, cancelled with "device
deleted") and ``firmware.uploaded`` (with ``auto_campaign``, a started campaign to every
compatible frame).

The actor is the wiring: its messages, its transactions and what it asks other actors. The
rest of the package holds the parts: the firmware catalogue (``_firmware``), input checks
(``_checks``), planning a campaign (``_planning``), the campaigns and their changes
(``_campaigns``, over the rollout model and its batch decisions in ``_rollout``), operators'
actions (``_lifecycle``), the rules of states (``_states``), frames' reports and their
silence (``_progress``), the commands in flight and their deadlines (``_commands``), and the
tables (``_tables``).
"""

from __future__ import annotations

from typing import Any

import msgspec
import trio

import wire
from actors.blobs import BlobStore
from actors.devices import Device, DeviceMessage, ListAllDevices
from actors.errors import NotFound
from actors.events import (
    Audit,
    DeviceDeleted,
    DeviceOffline,
    DeviceOnline,
    DeviceRegistered,
    Event,
    FirmwareUploaded,
)
from actors.frames import FrameDirectory, GetTwin
from actors.http import PublicUrl
from actors.journal import Consumer, Journal, JournalNudge
from actors.store import Entry, GroupCommit, Store, Transaction
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

from . import _lifecycle, _planning, _progress
from ._campaigns import Campaigns
from ._commands import Commands, DeadlinesDue
from ._firmware import FirmwareCatalogue
from ._messages import (
    CampaignAction,
    CampaignDeviceHistory,
    CampaignView,
    CancelCampaign,
    CreateCampaign,
    FrameProgress,
    GetCampaign,
    GetCampaignDevice,
    GetFirmware,
    GetFirmwareStaging,
    GetOtaStats,
    GetPublicKey,
    ListCampaigns,
    ListFirmware,
    OpenFirmware,
    PauseCampaign,
    ResumeCampaign,
    RetryFailed,
    RollbackCampaign,
    StartCampaign,
    StoreFirmware,
)
from ._signing import SigningKey
from ._tables import OTA_MIGRATIONS, Changes, history, load

VERSION_ASK_S = 1.0
"""How long a frame's twin (or the registry) may take to say which firmware it runs."""
REPORTS_PER_COMMIT = 500
"""Reports whose changes start a commit at once, without waiting for the mailbox's turn."""
MAX_REPORTS_BUFFERED = 5000
"""Past this many reports not committed, handling the next waits for the commit in flight."""


class _PublicUrlReady(msgspec.Struct, frozen=True):
    """The gateway bound its port: commands (which carry download links) can go out."""


class _ReportsDue(msgspec.Struct, frozen=True):
    """Commit what the reports handled since the last group changed."""


class _ReportsCommitted(msgspec.Struct, frozen=True):
    """A group of reports' changes committed: the next may go."""


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
    | DeadlinesDue
    | _PublicUrlReady
    | _ReportsDue
    | _ReportsCommitted
)

_GROUPED = (FrameProgress, _ReportsDue, _ReportsCommitted)
"""What may be handled while reports' changes are still being committed."""


class OtaCampaigns(Actor[OtaMessage]):
    """The OTA actor: see the module's docstring."""

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
        self._firmware = FirmwareCatalogue(self._store, self._blobs, self._settings)
        self._campaigns = Campaigns(
            Commands(self._key, self._settings, self._send_after),
            self._public_url,
            self._running_versions,
        )
        self._reload = False
        """A journal handler failed after changing memory: rebuild it from the tables."""
        self._reported = Changes()
        """What the reports handled since the last group was built changed."""
        self._reports: GroupCommit[wire.OtaProgress, OtaMessage] = GroupCommit(
            self,
            store,
            self._write_reports,
            window_s=0.0,
            batch_size=REPORTS_PER_COMMIT,
            max_buffered=MAX_REPORTS_BUFFERED,
            window_ended=_ReportsDue(),
            committed=_ReportsCommitted(),
        )
        self._resend = False
        """The commands in flight are to be sent again (this incarnation started with some)."""

    # -- lifecycle -----------------------------------------------------------------------------

    async def on_start(self) -> None:
        await self._store.migrate("ota", OTA_MIGRATIONS)
        await self._load()
        self._resend = bool(self._campaigns.commands)  # once the public URL is known
        await self._firmware.sweep_staging()
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
        # The group in flight is in the store's queue already; commit the rest after it.
        await self._reports.close()

    async def _load(self) -> None:
        loaded = await load(self._store)
        self._firmware.restore(loaded.firmware)
        online = {device_id for device_id, online in loaded.presence.items() if online}
        for device in await self._devices():
            # Frames paired before this actor first heard of them: the registry knows best.
            if device.device_id not in loaded.presence and device.active:
                online.add(device.device_id)
        self._campaigns.restore(loaded.campaigns, online)

    async def _announce_public_url(
        self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        await self._public_url.wait()
        if self.context.ref.alive:
            self.context.ref.nudge(_PublicUrlReady())

    def _send_after(self, delay: float, message: DeadlinesDue) -> Timer:
        return self.context.send_after(delay, message)

    async def receive(self, message: OtaMessage) -> Any:
        assert self._consumer is not None
        self._reports.check()
        if not isinstance(message, _GROUPED) or not self._consumer.caught_up:
            # Before anything else reads or writes: the reports' changes come first, in order.
            await self._reports.settle()
        await self._consumer.drain()
        if self._reload:
            self._reload = False
            await self._load()
        if await self._reports.took(message):
            return None
        match message:
            case JournalNudge():
                return None
            case FrameProgress(progress=report):
                if await _progress.on_report(self._campaigns, report, self._reported):
                    self._reports.add(report)
                    await self._reports.added()
            case GetPublicKey():
                return self._key.public_key
            case GetFirmwareStaging():
                return self._firmware.staging()
            case StoreFirmware():
                return await self._firmware.store(message)
            case ListFirmware(limit=limit, cursor=cursor):
                return self._firmware.page(limit, cursor)
            case GetFirmware(firmware_id=firmware_id):
                return self._firmware.get(firmware_id)
            case OpenFirmware(firmware_id=firmware_id):
                return self._firmware.open(firmware_id)
            case CreateCampaign():
                return await self._create(message)
            case ListCampaigns(limit=limit, cursor=cursor):
                return self._campaigns.page(limit, cursor)
            case GetCampaign(campaign_id=campaign_id):
                return self._campaigns.get(campaign_id).view()
            case GetCampaignDevice():
                return await self._device_history(message)
            case CampaignAction():
                return await self._act(message)
            case GetOtaStats():
                return self._campaigns.commands.stats()
            case DeadlinesDue(generation=generation):
                await self._deadlines_due(generation)
            case _PublicUrlReady():
                async with self._store.transaction() as tx:
                    changes = Changes()
                    await self._campaigns.public_url_known(self._resend, changes)
                    changes.write(tx)
                self._resend = False
        return None

    # -- operators -----------------------------------------------------------------------------

    async def _create(self, message: CreateCampaign) -> CampaignView:
        firmware = self._firmware.get(message.firmware_id)
        name = _planning.check_request(message)
        campaign = _planning.requested(message, name, firmware, await self._devices())
        audit = Audit.user_or_system(message.user_id, "ota")
        async with self._store.transaction() as tx:
            changes = Changes()
            self._campaigns.add(campaign, changes, audit)
            if message.start:
                await _lifecycle.start(self._campaigns, campaign, changes, audit)
            changes.write(tx)
        return campaign.view()

    async def _act(self, message: CampaignAction) -> CampaignView:
        c = self._campaigns.get(message.campaign_id)
        async with self._store.transaction() as tx:
            changes = Changes()
            await _lifecycle.act(
                self._campaigns, c, message, changes, Audit.user_or_system(message.user_id, "ota")
            )
            changes.write(tx)
        return c.view()

    async def _device_history(self, message: GetCampaignDevice) -> CampaignDeviceHistory:
        c = self._campaigns.get(message.campaign_id)
        target = c.by_device.get(message.device_id)
        if target is None:
            raise NotFound(f"frame {message.device_id} is not in campaign {c.campaign_id}")
        return CampaignDeviceHistory(
            **msgspec.structs.asdict(target.view(c.batch_size)),
            campaign_id=c.campaign_id,
            history=await history(self._store, c.campaign_id, target.device_id),
        )

    # -- progress reports and their timeout ----------------------------------------------------

    def _write_reports(self, tx: Transaction, reports: list[wire.OtaProgress]) -> None:
        """A group of ``reports``: what they changed, as it is now (``GroupCommit``)."""
        self._reported.write(tx)

    async def _deadlines_due(self, generation: int) -> None:
        commands = self._campaigns.commands
        expired = commands.expired(generation)
        if expired is None:
            return  # a timer replaced after it fired
        if expired:
            async with self._store.transaction() as tx:
                changes = Changes()
                await _progress.time_out(
                    self._campaigns, expired, self._settings.progress_timeout_s, changes
                )
                changes.write(tx)
        commands.rearm()

    # -- other actors --------------------------------------------------------------------------

    async def _devices(self) -> list[Device]:
        """Every paired frame, in pairing order (asked of the registry)."""
        return await self._registry.ask(ListAllDevices())

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

    # -- journal handlers ----------------------------------------------------------------------

    async def _on_event(self, entry: Entry, tx: Transaction) -> None:
        try:
            changes = Changes()
            await self._handle(entry.event, changes)
            changes.write(tx)
        except Exception:
            self._reload = True  # memory may hold what will not commit
            raise

    async def _handle(self, event: Event, changes: Changes) -> None:
        match event:
            case DeviceOnline(device_id=device_id):
                await self._campaigns.frame_online(device_id, changes)
            case DeviceOffline(device_id=device_id) | DeviceRegistered(device_id=device_id):
                self._campaigns.frame_offline(device_id, changes)
            case DeviceDeleted(device_id=device_id):
                await self._campaigns.frame_deleted(device_id, changes)
            case FirmwareUploaded() as uploaded if self._settings.auto_campaign:
                await self._auto_campaign(uploaded, changes)
            case _:
                pass

    async def _auto_campaign(self, event: FirmwareUploaded, changes: Changes) -> None:
        firmware = self._firmware.find(event.firmware_id)
        if firmware is None:
            return
        campaign = _planning.automatic(
            firmware,
            await self._devices(),
            self._settings.auto_campaign_batch_size,
            event.correlation_id,
        )
        if campaign is None:
            return
        system = Audit.system("ota")
        self._campaigns.add(campaign, changes, system)
        await _lifecycle.start(self._campaigns, campaign, changes, system)
