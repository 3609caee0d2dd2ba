"""The wire contract between the hub and its frames: MQTT topics and payloads, pairing.

This package imports only msgspec. The hub's actors and the frame program (``frame_device``)
both use it, and it is what a firmware author reads: every payload a frame sends or receives
is a Struct here, encoded and decoded as JSON by msgspec. Field names marked "seed" in
CONTRACTS.md keep their names; fields may be added, never renamed. Unknown fields in a
payload are ignored, so an older frame keeps working with a newer hub.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from ._asyncapi import asyncapi_document, asyncapi_json

MAX_PAYLOAD_BYTES = 256 * 1024
"""Largest payload of a frame's own messages (and of album and command messages); anything
bigger is dropped unread."""
MAX_SYNC_BYTES = 32 * 1024 * 1024
"""Largest ``frames/<id>/sync`` a frame accepts: a sync lists every photo (about 250 bytes
each), so a frame showing 100,000 photos still gets its sync."""

Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
"""An integer a frame reports: 64-bit signed, as the hub stores it. JSON numbers have no
bound, so a payload with a larger one is malformed rather than a value the hub cannot keep."""
SAMPLE_LIMIT = 1e300
Sample = Annotated[float, msgspec.Meta(ge=-SAMPLE_LIMIT, le=SAMPLE_LIMIT)]
"""A number a frame reports as a telemetry sample: within +-1e300, so that the hub's sums of a
minute's samples stay finite (two samples near the largest double would add up to infinity);
a payload with a larger one is malformed."""

HUB_AVAILABILITY = "hub/availability"
ONLINE = "online"
OFFLINE = "offline"

FRAME_LEAVES_IN = ("status", "heartbeat", "telemetry", "ota", "availability")
"""What a frame publishes under ``frames/<id>/`` (the hub subscribes to these)."""
FRAME_LEAVES_OUT = ("sync", "command")
"""What the hub publishes under ``frames/<id>/`` (the frame subscribes to these)."""

CommandName = Literal["next", "show", "restart", "sync", "update_firmware", "rollback_firmware"]
COMMANDS: tuple[CommandName, ...] = (
    "next",
    "show",
    "restart",
    "sync",
    "update_firmware",
    "rollback_firmware",
)


def frame_topic(frame_id: str, leaf: str) -> str:
    return f"frames/{frame_id}/{leaf}"


def album_topic(album_id: str, leaf: str) -> str:
    return f"albums/{album_id}/{leaf}"


def split_frame_topic(topic: str) -> tuple[str, str] | None:
    """``(frame_id, leaf)`` of ``frames/<frame_id>/<leaf>``; None for any other shape."""
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != "frames" or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def split_album_topic(topic: str) -> tuple[str, str] | None:
    """``(album_id, leaf)`` of ``albums/<album_id>/<leaf>``; None for any other shape."""
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != "albums" or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


# -- hub -> frames -----------------------------------------------------------------------------


class PhotoMetadata(msgspec.Struct, frozen=True, kw_only=True):
    """seed: ``photo_metadata`` of ``photo_added``."""

    file_name: str
    content_type: str
    ai_labels: list[str] = []
    timestamp: str = ""


class PhotoAdded(msgspec.Struct, frozen=True, kw_only=True):
    """seed: ``albums/<album_id>/photo_added`` (QoS 1).

    ``media_service_url`` is the absolute URL of ``GET /api/v1/photos/{file_id}``; a frame
    downloads its own version from ``GET /api/v1/files/download/{file_id}?size=frame``.
    """

    event_type: Literal["photo_added"] = "photo_added"
    album_id: str
    file_id: str
    photo_metadata: PhotoMetadata
    media_service_url: str
    timestamp: str


class PhotoRemoved(msgspec.Struct, frozen=True, kw_only=True):
    """``albums/<album_id>/photo_removed`` (QoS 1)."""

    event_type: Literal["photo_removed"] = "photo_removed"
    album_id: str
    file_id: str
    timestamp: str


class SyncPhoto(msgspec.Struct, frozen=True, kw_only=True):
    """One photo of a sync: ``url`` downloads the version made for the frame's panel, whose
    bytes hash to ``sha256``."""

    file_id: str
    album_id: str
    sha256: str
    url: str
    width: int = 0
    height: int = 0


class DisplaySettings(msgspec.Struct, frozen=True, kw_only=True):
    """How the frame rotates photos. ``quiet_start``/``quiet_end`` ("HH:MM", local time of
    the frame, possibly crossing midnight) bound the hours the screen is off."""

    interval_s: int = 60
    shuffle: bool = False
    quiet_start: str | None = None
    quiet_end: str | None = None


class FrameSync(msgspec.Struct, frozen=True, kw_only=True):
    """seed: ``frames/<frame_id>/sync`` (QoS 2, retained): everything the frame should show.

    ``version`` grows with every change of what the frame should show; the frame reports the
    version it has applied in its heartbeat, so the hub knows when it has converged.
    """

    event_type: Literal["album_sync"] = "album_sync"
    frame_id: str
    photos: list[SyncPhoto]
    total_photos: int
    timestamp: str
    version: int = 0
    album_ids: list[str] = []
    display: DisplaySettings = DisplaySettings()
    heartbeat_interval_s: int = 30
    panel_width: int = 0
    panel_height: int = 0
    """The panel as the frame hangs (0: unknown); every ``url`` serves exactly this size."""


class CommandArgs(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Arguments of a command; which ones apply depends on the command.

    ``update_firmware``: ``url`` (absolute; download with the frame's token, ``Range``
    resumes), ``sha256`` and ``size`` of the image, ``version`` to install, ``campaign_id``
    and ``signature``. ``rollback_firmware``: ``version`` to go back to (the frame's previous
    slot), ``campaign_id`` and ``signature``. The signature is the hub's Ed25519 signature
    (base64) over ``signed_command_bytes``; a frame refuses a firmware command whose signature,
    version or SHA-256 does not verify.
    """

    file_id: str | None = None
    """``show``: the photo to show."""
    url: str | None = None
    sha256: str | None = None
    version: str | None = None
    campaign_id: str | None = None
    signature: str | None = None
    size: int | None = None


class SignedCommand(msgspec.Struct, frozen=True, kw_only=True):
    """What the hub signs for a firmware command: the command bound to one frame and one
    command id, so a signed command cannot be replayed to another frame or re-sent as new."""

    frame_id: str
    command_id: str
    command: str
    url: str | None
    sha256: str | None
    size: int | None
    version: str | None
    campaign_id: str | None


def signed_command_bytes(frame_id: str, command_id: str, command: str, args: CommandArgs) -> bytes:
    """The exact bytes an Ed25519 signature of a firmware command covers (compact JSON of
    ``SignedCommand``, fields in declaration order). ``args.signature`` is not part of it."""
    return msgspec.json.encode(
        SignedCommand(
            frame_id=frame_id,
            command_id=command_id,
            command=command,
            url=args.url,
            sha256=args.sha256,
            size=args.size,
            version=args.version,
            campaign_id=args.campaign_id,
        )
    )


class FrameCommand(msgspec.Struct, frozen=True, kw_only=True):
    """``frames/<frame_id>/command`` (QoS 2). The frame confirms it by publishing a
    ``status`` that carries the same ``command_id``."""

    command_id: str
    command: CommandName
    args: CommandArgs = CommandArgs()
    timestamp: str


class MetadataUpdated(msgspec.Struct, frozen=True, kw_only=True):
    """``photos/<file_id>/metadata_updated`` (QoS 1)."""

    file_id: str
    ai_metadata: msgspec.Raw
    timestamp: str


# -- frames -> hub -----------------------------------------------------------------------------


class FrameStatus(msgspec.Struct, frozen=True, kw_only=True):
    """seed: ``frames/<frame_id>/status`` (QoS 0).

    ``status`` is ``displayed`` (``file_id`` is on the screen), ``downloading``, ``synced``
    (``sync_version`` applied), ``screen_off``, ``command_done`` or ``error``. A status that
    answers a command carries its ``command_id``; ``error`` explains a failure.
    """

    frame_id: str
    status: str
    timestamp: str
    file_id: str | None = None
    command_id: str | None = None
    error: str | None = None
    sync_version: Int64 | None = None


class Heartbeat(msgspec.Struct, frozen=True, kw_only=True):
    """seed topic ``frames/<frame_id>/heartbeat`` (QoS 0, retained)."""

    frame_id: str
    firmware_version: str
    uptime_s: Sample
    free_bytes: Int64
    timestamp: str
    interval_s: float = 30.0
    sync_version: Int64 = 0
    current_file_id: str | None = None
    cached_photos: Int64 = 0


class Telemetry(msgspec.Struct, frozen=True, kw_only=True):
    """``frames/<frame_id>/telemetry`` (QoS 1): named numeric samples."""

    frame_id: str
    metrics: dict[str, Sample]
    timestamp: str


OtaState = Literal["downloading", "downloaded", "installing", "completed", "failed", "rolled_back"]


class OtaProgress(msgspec.Struct, frozen=True, kw_only=True):
    """``frames/<frame_id>/ota`` (QoS 1): how a firmware command is going.

    ``update_firmware``: ``downloading`` (``progress`` 0..1) → ``downloaded`` (SHA-256 and
    signature verified) → ``installing`` (written to the inactive slot; the frame restarts
    into it and reports the new ``firmware_version`` in its heartbeat) → ``completed`` (the
    health check passed and the slot is committed) or ``rolled_back`` (it failed; the frame is
    back on its previous slot) or ``failed`` (refused or broken before the restart; ``error``
    says why). ``rollback_firmware``: ``rolled_back`` once the frame runs its previous slot
    again, ``failed`` if there is none. ``command_id``, ``campaign_id`` and ``version`` repeat
    the command's; ``version`` is the firmware the command was about.
    """

    frame_id: str
    state: OtaState
    timestamp: str
    campaign_id: str | None = None
    command_id: str | None = None
    version: str | None = None
    progress: float | None = None
    error: str | None = None


# -- pairing (HTTP) ----------------------------------------------------------------------------


class MqttCredentials(msgspec.Struct, frozen=True, kw_only=True):
    host: str
    port: int
    client_id: str
    username: str
    password: str


class PairingRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Body of ``POST /api/v1/devices`` (an admin pairs a frame)."""

    name: str
    model: str
    hw_version: str
    width: int
    height: int
    orientation: Literal["landscape", "portrait"] = "landscape"


class Pairing(msgspec.Struct, frozen=True, kw_only=True):
    """Answer of ``POST /api/v1/devices``, shown once: the frame's HTTP token, its MQTT
    credentials and the hub's public signing key (base64 Ed25519) for firmware commands."""

    device_id: str
    token: str
    mqtt: MqttCredentials
    public_key: str = ""


__all__ = [
    "COMMANDS",
    "FRAME_LEAVES_IN",
    "FRAME_LEAVES_OUT",
    "HUB_AVAILABILITY",
    "MAX_PAYLOAD_BYTES",
    "MAX_SYNC_BYTES",
    "OFFLINE",
    "ONLINE",
    "SAMPLE_LIMIT",
    "CommandArgs",
    "CommandName",
    "DisplaySettings",
    "FrameCommand",
    "FrameStatus",
    "FrameSync",
    "Heartbeat",
    "Int64",
    "MetadataUpdated",
    "MqttCredentials",
    "OtaProgress",
    "OtaState",
    "Pairing",
    "PairingRequest",
    "PhotoAdded",
    "PhotoMetadata",
    "PhotoRemoved",
    "Sample",
    "SignedCommand",
    "SyncPhoto",
    "Telemetry",
    "album_topic",
    "asyncapi_document",
    "asyncapi_json",
    "frame_topic",
    "signed_command_bytes",
    "split_album_topic",
    "split_frame_topic",
]
