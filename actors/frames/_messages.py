"""What the MQTT bridge hands a frame's proxy (what the frame published, and asks for its
sync) and what a proxy tells the fleet (its frame's sightings)."""

from __future__ import annotations

import msgspec

import wire
from supervision import Request


class Availability(msgspec.Struct, frozen=True):
    """``frames/<id>/availability``: the frame's own ``online`` or its last will."""

    online: bool


class FrameInbound(msgspec.Struct, frozen=True):
    """Told to a frame's proxy: what the frame published (status, heartbeat, availability),
    already decoded and checked against its topic."""

    payload: wire.FrameStatus | wire.Heartbeat | Availability


class FrameSeen(msgspec.Struct, frozen=True, kw_only=True):
    """Told to the fleet by a frame's proxy: a heartbeat that changed nothing else worth its
    own write. The fleet writes the newest sighting of every frame in one transaction."""

    frame_id: str
    last_seen: str
    free_bytes: int | None


class GetSync(Request[bytes | None], frozen=True):
    """The proxy's current ``wire.FrameSync`` as JSON bytes, or None if it has nothing to
    send yet (asked by the bridge when it publishes the frame's sync)."""
