"""A frame as the API and the console show it: the registry's record joined with its twin."""

from __future__ import annotations

import msgspec

import wire
from actors.devices import Device
from supervision import Request

from ._messages import Desired, Reported, Twin


class DeviceView(Device, frozen=True, kw_only=True):
    """A frame: what the registry records (``Device``) and what its proxy knows (the twin).
    ``last_seen`` and ``firmware_version`` are the newer of the two."""

    online: bool
    current_file_id: str | None
    health_score: int
    in_sync: bool
    desired: Desired
    reported: Reported
    pending_commands: int


class DeviceViewPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[DeviceView]
    next_cursor: str | None = None


class GetDeviceView(Request[DeviceView], frozen=True, kw_only=True):
    """One frame's view (``NotFound`` if the registry does not know it)."""

    device_id: str


class ListDeviceViews(Request[DeviceViewPage], frozen=True, kw_only=True):
    """The frames' views, oldest pairing first, a page at a time (``limit`` None: all)."""

    limit: int | None = None
    cursor: str | None = None


NO_TWIN = Twin(
    frame_id="",
    online=False,
    last_seen=None,
    firmware_version=None,
    current_file_id=None,
    health_score=0,
    in_sync=False,
    desired=Desired(version=0, album_ids=[], photos=0, display=wire.DisplaySettings()),
    reported=Reported(
        sync_version=0,
        current_file_id=None,
        firmware_version=None,
        free_bytes=None,
        uptime_s=None,
        cached_photos=None,
    ),
    pending_commands=0,
)
"""The twin of a frame whose proxy is not running yet (paired a moment ago)."""


def device_view(device: Device, twin: Twin) -> DeviceView:
    seen = [t for t in (device.last_seen, twin.last_seen) if t]
    record = msgspec.structs.asdict(device)
    record.update(
        last_seen=max(seen) if seen else None,
        firmware_version=twin.firmware_version or device.firmware_version,
    )
    return DeviceView(
        **record,
        online=twin.online,
        current_file_id=twin.current_file_id,
        health_score=twin.health_score,
        in_sync=twin.in_sync,
        desired=twin.desired,
        reported=twin.reported,
        pending_commands=twin.pending_commands,
    )
