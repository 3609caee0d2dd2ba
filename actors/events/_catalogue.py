"""Every journal event, named as in CONTRACTS.md, as frozen msgspec Structs in one tagged union.

The tag is the event name (``"file.uploaded"``), stored in the ``event`` field, so the journal
decodes stored bytes straight into the right class. Every event carries the same envelope:
a unique id, when it happened, who caused it (``audit``) and a ``correlation_id`` that follows
one upload, campaign or alert through every event it causes.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Literal

import msgspec

import wire


def utc_now() -> str:
    """Now as an RFC 3339 UTC timestamp with milliseconds (``2026-11-21T23:00:00.000Z``)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def rfc3339(epoch: float) -> str:
    """A Unix time as an RFC 3339 UTC timestamp with milliseconds, like ``utc_now``."""
    return (
        datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def new_id() -> str:
    """128 random bits as 32 hex digits (as ``uuid4().hex`` without the version bits' cost)."""
    return os.urandom(16).hex()


class Audit(msgspec.Struct, frozen=True, kw_only=True):
    """Who caused a change: a user, a frame, or the hub itself (``id`` names the part)."""

    kind: Literal["user", "frame", "system"]
    id: str

    @classmethod
    def user(cls, user_id: str) -> Audit:
        return cls(kind="user", id=user_id)

    @classmethod
    def frame(cls, frame_id: str) -> Audit:
        return cls(kind="frame", id=frame_id)

    @classmethod
    def system(cls, part: str) -> Audit:
        return cls(kind="system", id=part)

    @classmethod
    def user_or_system(cls, user_id: str | None, part: str) -> Audit:
        """The user who asked, or the hub's ``part`` itself when nobody did."""
        return cls.system(part) if user_id is None else cls.user(user_id)


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="event"):
    """The envelope every event shares. Subclasses add the fields of their kind."""

    audit: Audit
    correlation_id: str = msgspec.field(default_factory=new_id)
    event_id: str = msgspec.field(default_factory=new_id)
    occurred_at: str = msgspec.field(default_factory=utc_now)

    @property
    def event_name(self) -> str:
        return _NAMES[type(self)]


class Face(msgspec.Struct, frozen=True, kw_only=True):
    x: int
    y: int
    width: int
    height: int


class AiMetadata(msgspec.Struct, frozen=True, kw_only=True):
    """What analysis found in a photo (seed fields ``labels``, ``faces``, ``objects``)."""

    labels: list[str] = []
    faces: list[Face] = []
    objects: list[str] = []
    width: int | None = None
    height: int | None = None
    taken_at: str | None = None
    camera: str | None = None
    gps: tuple[float, float] | None = None
    orientation: int | None = None
    palette: list[str] = []
    phash: str | None = None


# -- uploader (seed storage_service) ---------------------------------------------------------


class FileUploaded(Event, frozen=True, kw_only=True, tag="file.uploaded"):
    file_id: str
    user_id: str
    file_name: str
    file_size: int
    content_type: str
    storage_path: str
    sha256: str
    metadata: dict[str, str] = {}


class FileUploadedWithAi(Event, frozen=True, kw_only=True, tag="file.uploaded.with_ai"):
    file_id: str
    user_id: str
    file_name: str
    file_size: int
    content_type: str
    storage_path: str
    sha256: str
    metadata: dict[str, str] = {}
    ai_metadata: AiMetadata


class FileDeleted(Event, frozen=True, kw_only=True, tag="file.deleted"):
    file_id: str
    user_id: str


# -- album -----------------------------------------------------------------------------------


class AlbumCreated(Event, frozen=True, kw_only=True, tag="album.created"):
    album_id: str
    owner_id: str
    name: str


class AlbumPhotoAdded(Event, frozen=True, kw_only=True, tag="album.photo_added"):
    album_id: str
    file_id: str
    file_name: str = ""
    content_type: str = ""
    ai_labels: list[str] = []
    """What frames are told of the photo (``photo_added``'s ``photo_metadata``)."""


class AlbumPhotoRemoved(Event, frozen=True, kw_only=True, tag="album.photo_removed"):
    album_id: str
    file_id: str


class AlbumDeleted(Event, frozen=True, kw_only=True, tag="album.deleted"):
    album_id: str


# -- media cache (seed media_service) --------------------------------------------------------


class MediaVersionCreated(Event, frozen=True, kw_only=True, tag="media.version_created"):
    file_id: str
    size: str
    width: int
    height: int
    sha256: str


class MediaCacheReady(Event, frozen=True, kw_only=True, tag="media.cache_ready"):
    file_id: str
    sizes: list[str]


class PhotoMetadataUpdated(Event, frozen=True, kw_only=True, tag="photo.metadata_updated"):
    file_id: str
    ai_metadata: AiMetadata


# -- device registry (seed device_service) ---------------------------------------------------


class DeviceRegistered(Event, frozen=True, kw_only=True, tag="device.registered"):
    device_id: str
    name: str
    model: str
    hw_version: str
    width: int
    height: int
    orientation: str


class DeviceUpdated(Event, frozen=True, kw_only=True, tag="device.updated"):
    device_id: str
    changes: dict[str, str] = {}


class DeviceDeleted(Event, frozen=True, kw_only=True, tag="device.deleted"):
    device_id: str


class DeviceOnline(Event, frozen=True, kw_only=True, tag="device.online"):
    device_id: str


class DeviceOffline(Event, frozen=True, kw_only=True, tag="device.offline"):
    device_id: str
    reason: str = ""


# -- frame proxies (the MQTT bridge publishes what they ask for) ---------------------------------


class FrameSyncRequested(Event, frozen=True, kw_only=True, tag="frame.sync_requested"):
    """What ``frame_id`` should show changed (or it reconnected): the bridge publishes the
    proxy's current sync, retained. The sync itself is not in the journal: it may list
    thousands of photos, and only the latest one matters."""

    frame_id: str
    version: int


class FrameCommandIssued(Event, frozen=True, kw_only=True, tag="frame.command_issued"):
    """A command for a frame; the bridge publishes it on ``frames/<id>/command`` (QoS 2)."""

    frame_id: str
    command_id: str
    command: str
    args: wire.CommandArgs = wire.CommandArgs()


class FrameCommandFinished(Event, frozen=True, kw_only=True, tag="frame.command_finished"):
    """The frame confirmed a command (``outcome`` "done" or "failed") or it timed out."""

    frame_id: str
    command_id: str
    command: str
    outcome: Literal["done", "failed", "timed_out"]
    error: str = ""


# -- OTA -------------------------------------------------------------------------------------


class FirmwareUploaded(Event, frozen=True, kw_only=True, tag="firmware.uploaded"):
    firmware_id: str
    version: str
    model: str
    min_hw_version: str
    sha256: str
    size: int
    notes: str = ""


class CampaignCreated(Event, frozen=True, kw_only=True, tag="campaign.created"):
    """``device_ids`` are the compatible targets in rollout order (batch by batch)."""

    campaign_id: str
    firmware_id: str
    device_ids: list[str]
    name: str = ""
    version: str = ""


class CampaignStarted(Event, frozen=True, kw_only=True, tag="campaign.started"):
    """Started, or ``resumed`` after a pause."""

    campaign_id: str
    resumed: bool = False


class CampaignPaused(Event, frozen=True, kw_only=True, tag="campaign.paused"):
    """Paused by an operator, or ``automatic`` when a threshold was crossed (``reason``)."""

    campaign_id: str
    reason: str
    automatic: bool = False


class CampaignCompleted(Event, frozen=True, kw_only=True, tag="campaign.completed"):
    """Every target reached a final state (or the campaign was cancelled and the last
    update in flight ended): the counts of each outcome."""

    campaign_id: str
    completed: int
    failed: int
    cancelled: int
    rolled_back: int = 0


class UpdateCancelled(Event, frozen=True, kw_only=True, tag="update.cancelled"):
    """A whole campaign (``device_id`` None) or one frame's update was cancelled."""

    campaign_id: str
    device_id: str | None = None


class RollbackInitiated(Event, frozen=True, kw_only=True, tag="rollback.initiated"):
    campaign_id: str
    device_ids: list[str]


class UpdateCompleted(Event, frozen=True, kw_only=True, tag="update.completed"):
    campaign_id: str
    device_id: str
    firmware_version: str


class UpdateFailed(Event, frozen=True, kw_only=True, tag="update.failed"):
    """An update failed: refused, broken, timed out, or ``rolled_back`` by the frame itself
    after its health check failed (it then still runs ``firmware_version``)."""

    campaign_id: str
    device_id: str
    error: str
    rolled_back: bool = False
    firmware_version: str | None = None


class UpdateRolledBack(Event, frozen=True, kw_only=True, tag="update.rolled_back"):
    """A campaign's rollback brought the frame back to ``firmware_version``."""

    campaign_id: str
    device_id: str
    firmware_version: str


# -- telemetry -------------------------------------------------------------------------------


class TelemetryDataReceived(Event, frozen=True, kw_only=True, tag="telemetry.data.received"):
    """Coalesced: at most one per frame per configured interval; ``samples`` since the last."""

    device_id: str
    samples: int
    last_sample_at: str


class MetricDefined(Event, frozen=True, kw_only=True, tag="metric.defined"):
    name: str
    unit: str
    kind: str
    retention_days: float | None = None


class AlertRuleCreated(Event, frozen=True, kw_only=True, tag="alert.rule.created"):
    rule_id: str
    metric: str
    comparison: str
    threshold: float
    severity: str
    device_id: str | None = None
    model: str | None = None
    for_seconds: float = 0.0
    clear_threshold: float | None = None


class AlertTriggered(Event, frozen=True, kw_only=True, tag="alert.triggered"):
    alert_id: str
    rule_id: str
    device_id: str
    metric: str
    value: float
    severity: str


class AlertAcknowledged(Event, frozen=True, kw_only=True, tag="alert.acknowledged"):
    alert_id: str
    rule_id: str
    device_id: str


class AlertResolved(Event, frozen=True, kw_only=True, tag="alert.resolved"):
    """Resolved by a person (``note``) or ``automatic`` when the clear condition held."""

    alert_id: str
    rule_id: str
    device_id: str
    note: str = ""
    automatic: bool = False


AnyEvent = (
    FileUploaded
    | FileUploadedWithAi
    | FileDeleted
    | AlbumCreated
    | AlbumPhotoAdded
    | AlbumPhotoRemoved
    | AlbumDeleted
    | MediaVersionCreated
    | MediaCacheReady
    | PhotoMetadataUpdated
    | DeviceRegistered
    | DeviceUpdated
    | DeviceDeleted
    | DeviceOnline
    | DeviceOffline
    | FrameSyncRequested
    | FrameCommandIssued
    | FrameCommandFinished
    | FirmwareUploaded
    | CampaignCreated
    | CampaignStarted
    | CampaignPaused
    | CampaignCompleted
    | UpdateCancelled
    | RollbackInitiated
    | UpdateCompleted
    | UpdateFailed
    | UpdateRolledBack
    | TelemetryDataReceived
    | MetricDefined
    | AlertRuleCreated
    | AlertTriggered
    | AlertAcknowledged
    | AlertResolved
)

EVENT_TYPES: dict[str, type[Event]] = {cls.__struct_config__.tag: cls for cls in AnyEvent.__args__}

_NAMES: dict[type[Event], str] = {cls: name for name, cls in EVENT_TYPES.items()}
