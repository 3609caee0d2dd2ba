"""The OTA actor's messages and the views it answers with."""

from __future__ import annotations

from typing import Literal

import msgspec

import wire
from actors.store import DEFAULT_PAGE
from supervision import Request

DeviceState = Literal[
    "queued",
    "notified",
    "downloading",
    "downloaded",
    "installing",
    "completed",
    "failed",
    "rolled_back",
    "cancelled",
    "rolling_back",
]
DEVICE_STATES: tuple[DeviceState, ...] = (
    "queued",
    "notified",
    "downloading",
    "downloaded",
    "installing",
    "completed",
    "failed",
    "rolled_back",
    "cancelled",
    "rolling_back",
)
"""A frame's part in a campaign. ``queued`` → ``notified`` (the signed command is out) →
``downloading`` → ``downloaded`` → ``installing`` → ``completed``, ``failed`` or
``rolled_back``; ``cancelled`` when it left the campaign before its update began.
``rolling_back``: a campaign rollback sent it back to its previous firmware."""

CampaignState = Literal[
    "draft", "running", "paused", "completed", "cancelled", "rolling_back", "rolled_back"
]


# -- firmware ----------------------------------------------------------------------------------


class GetPublicKey(Request["str"], frozen=True):
    """The hub's public signing key (base64 of the raw Ed25519 key), handed over at pairing;
    answers ``str``."""


class GetFirmwareStaging(Request["FirmwareStaging"], frozen=True):
    """Where an incoming firmware upload is staged and its size limit; answers
    ``FirmwareStaging``."""


class FirmwareStaging(msgspec.Struct, frozen=True, kw_only=True):
    directory: str
    """On the firmware blobs' filesystem: ``StoreFirmware`` renames the file into place."""
    max_bytes: int


class StoreFirmware(Request["Firmware"], frozen=True, kw_only=True):
    """Keep a staged firmware image; answers ``Firmware`` and publishes ``firmware.uploaded``.

    The fields come from the upload form as sent: ``Invalid`` for a missing or malformed one
    (``version`` must be a semantic version), ``TooLarge`` past the limit, ``Conflict`` when
    the model already has that version. The staged file is consumed only on success.
    """

    staged_path: str
    file_name: str
    size: int
    sha256: str
    version: str | None
    model: str | None
    min_hw_version: str | None
    notes: str | None = None
    user_id: str | None = None
    correlation_id: str | None = None


class ListFirmware(Request["FirmwarePage"], frozen=True, kw_only=True):
    """Every firmware image, newest first; answers ``FirmwarePage``."""

    limit: int = DEFAULT_PAGE
    cursor: str | None = None


class GetFirmware(Request["Firmware"], frozen=True, kw_only=True):
    """Answers ``Firmware`` (``NotFound`` if unknown)."""

    firmware_id: str


class OpenFirmware(Request["FirmwareFile"], frozen=True, kw_only=True):
    """The image's file, for a download; answers ``FirmwareFile`` (``NotFound`` if unknown)."""

    firmware_id: str


class Firmware(msgspec.Struct, frozen=True, kw_only=True):
    firmware_id: str
    version: str
    model: str
    min_hw_version: str
    notes: str
    sha256: str
    size: int
    file_name: str
    uploaded_at: str
    uploaded_by: str | None


class FirmwarePage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[Firmware]
    next_cursor: str | None


class FirmwareFile(msgspec.Struct, frozen=True, kw_only=True):
    path: str
    sha256: str
    size: int
    file_name: str


# -- campaigns ---------------------------------------------------------------------------------


class CreateCampaign(Request["CampaignView"], frozen=True, kw_only=True):
    """Plan a rollout of ``firmware_id``; answers ``CampaignView``, publishes
    ``campaign.created`` (and ``campaign.started`` with ``start``).

    The targets are the frames of ``models`` and those named in ``device_ids`` (the union),
    kept if the firmware suits them (its model, at least its minimum hardware version) and
    they do not already run it; in pairing order, or in the order of ``device_ids`` when only
    ids are given. ``NotFound`` for an unknown firmware or device, ``Invalid`` when no target
    is left (the reason says why each was dropped) or for a bad setting.

    ``batch_size`` frames are updated at a time; the next batch is released once
    ``success_threshold`` (a fraction) of the current one completed. ``failure_threshold``
    (a count) or ``failure_threshold_percent`` (of the frames released so far) failures
    pause the campaign; None turns that test off.
    """

    name: str
    firmware_id: str
    models: list[str] = []
    device_ids: list[str] = []
    batch_size: int
    success_threshold: float = 1.0
    failure_threshold: int | None = None
    failure_threshold_percent: float | None = 20.0
    start: bool = False
    user_id: str | None = None
    correlation_id: str | None = None


class ListCampaigns(Request["CampaignPage"], frozen=True, kw_only=True):
    """Every campaign, newest first; answers ``CampaignPage``."""

    limit: int = DEFAULT_PAGE
    cursor: str | None = None


class GetCampaign(Request["CampaignView"], frozen=True, kw_only=True):
    """Answers ``CampaignView`` (``NotFound`` if unknown)."""

    campaign_id: str


class GetCampaignDevice(Request["CampaignDeviceHistory"], frozen=True, kw_only=True):
    """One frame's part in a campaign with its timestamped history; answers
    ``CampaignDeviceHistory`` (``NotFound`` if the campaign or the frame is not in it)."""

    campaign_id: str
    device_id: str


class CampaignAction(Request["CampaignView"], frozen=True, kw_only=True):
    """An operator's change to a campaign; answers the ``CampaignView`` after it.
    ``Conflict`` when the campaign's state does not allow it (the message says which do)."""

    campaign_id: str
    user_id: str | None = None
    correlation_id: str | None = None


class StartCampaign(CampaignAction, frozen=True, kw_only=True):
    """A draft campaign starts: its first batch is released (``campaign.started``)."""


class PauseCampaign(CampaignAction, frozen=True, kw_only=True):
    """A running campaign sends no more commands; updates in flight go on and are recorded
    (``campaign.paused``)."""


class ResumeCampaign(CampaignAction, frozen=True, kw_only=True):
    """A paused campaign runs again; the failures so far are acknowledged, so they no longer
    count against the thresholds (``campaign.started`` with ``resumed``)."""


class CancelCampaign(CampaignAction, frozen=True, kw_only=True):
    """Queued frames are cancelled (``update.cancelled``); updates in flight are followed to
    their end."""


class RollbackCampaign(CampaignAction, frozen=True, kw_only=True):
    """Every frame that completed the update is sent back to the firmware it ran before
    (``rollback.initiated``, then ``update.rolled_back`` per frame); queued frames are
    cancelled, and frames still updating are rolled back once they complete."""


class RetryFailed(CampaignAction, frozen=True, kw_only=True):
    """Failed and rolled-back frames are queued again (a new command, one more attempt); the
    campaign runs again if it was paused or completed."""


class GetOtaStats(Request["OtaStats"], frozen=True):
    """Answers ``OtaStats``."""


class OtaStats(msgspec.Struct, frozen=True, kw_only=True):
    in_flight: int
    """Frames with a firmware command out and not yet finished."""
    accepted_progress: int
    ignored_progress: dict[str, int]
    """Progress reports ignored, by reason: ``unknown_command`` (not a command in flight:
    stale, finished or never sent), ``wrong_frame``, ``not_forward`` (a duplicate or a step
    back)."""


class CampaignDevice(msgspec.Struct, frozen=True, kw_only=True):
    device_id: str
    batch: int
    """1-based, in rollout order."""
    state: DeviceState
    progress: float | None
    error: str
    attempts: int
    """Update commands sent to the frame in this campaign."""
    command_id: str | None
    previous_version: str | None
    """The firmware the frame ran when it was notified (a rollback goes back to it)."""
    updated_at: str


class CampaignSummary(msgspec.Struct, frozen=True, kw_only=True):
    campaign_id: str
    name: str
    firmware_id: str
    version: str
    model: str
    state: CampaignState
    batch_size: int
    batches: int
    current_batch: int
    """1-based: batches 1 to ``current_batch`` are released (once the campaign started)."""
    success_threshold: float
    failure_threshold: int | None
    failure_threshold_percent: float | None
    pause_reason: str
    targets: int
    counts: dict[str, int]
    """Frames in each ``DeviceState``."""
    created_at: str
    started_at: str | None
    updated_at: str
    finished_at: str | None


class CampaignView(CampaignSummary, frozen=True, kw_only=True):
    devices: list[CampaignDevice]


class CampaignPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[CampaignSummary]
    next_cursor: str | None


class HistoryEntry(msgspec.Struct, frozen=True, kw_only=True):
    at: str
    state: DeviceState
    progress: float | None
    error: str
    command_id: str | None


class CampaignDeviceHistory(CampaignDevice, frozen=True, kw_only=True):
    campaign_id: str
    history: list[HistoryEntry]


__all__ = [
    "DEVICE_STATES",
    "CampaignAction",
    "CampaignDevice",
    "CampaignDeviceHistory",
    "CampaignPage",
    "CampaignState",
    "CampaignSummary",
    "CampaignView",
    "CancelCampaign",
    "CreateCampaign",
    "DeviceState",
    "Firmware",
    "FirmwareFile",
    "FirmwarePage",
    "FirmwareStaging",
    "GetCampaign",
    "GetCampaignDevice",
    "GetFirmware",
    "GetFirmwareStaging",
    "GetOtaStats",
    "GetPublicKey",
    "HistoryEntry",
    "ListCampaigns",
    "ListFirmware",
    "OpenFirmware",
    "OtaStats",
    "PauseCampaign",
    "ResumeCampaign",
    "RetryFailed",
    "RollbackCampaign",
    "StartCampaign",
    "StoreFirmware",
]


class FrameProgress(msgspec.Struct, frozen=True):
    """Told by the MQTT bridge: an update's progress as a frame reported it
    (``frames/<id>/ota``), already decoded and checked against its topic."""

    progress: wire.OtaProgress
