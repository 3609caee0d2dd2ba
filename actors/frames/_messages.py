"""The frames' messages: what a frame's proxy accepts (from the MQTT bridge, the API, the
console, OTA and the fleet) and answers with, and what a proxy tells the fleet (its frame's
sightings)."""

from __future__ import annotations

from typing import Literal

import msgspec

import wire
from actors.media import VersionBlob
from supervision import Request

USER_COMMANDS = ("next", "show", "restart", "sync")
"""Commands the API sends; firmware commands come from OTA campaigns."""

CommandState = Literal["pending", "done", "failed", "timed_out"]
Outcome = Literal["done", "failed", "timed_out"]


# -- from the MQTT bridge ----------------------------------------------------------------------


class Availability(msgspec.Struct, frozen=True):
    """``frames/<id>/availability``: the frame's own ``online`` or its last will."""

    online: bool


class FrameInbound(msgspec.Struct, frozen=True):
    """Told to a frame's proxy: what the frame published (status, heartbeat, availability),
    already decoded and checked against its topic."""

    payload: wire.FrameStatus | wire.Heartbeat | Availability


class GetSync(Request[bytes | None], frozen=True):
    """The proxy's current ``wire.FrameSync`` as JSON bytes, or None if it has nothing to
    send yet (asked by the bridge when it publishes the frame's sync)."""


# -- to a frame's proxy ------------------------------------------------------------------------


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


# -- what a frame's proxy answers --------------------------------------------------------------


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


# -- to the fleet ------------------------------------------------------------------------------


class FrameSeen(msgspec.Struct, frozen=True, kw_only=True):
    """Told to the fleet by a frame's proxy: a heartbeat that changed nothing else worth its
    own write. The fleet writes the newest sighting of every frame in one transaction."""

    frame_id: str
    last_seen: str
    free_bytes: int | None
