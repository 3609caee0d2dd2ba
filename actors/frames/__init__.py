"""The frames on the wall: one proxy actor per frame (``/frames/<id>``), kept by the fleet
(``/frames/fleet``)."""

from ._fleet import FLEET_NAME, FRAMES_PATH, FrameFleet, ListFrameIds
from ._proxy import (
    FRAMES_MIGRATIONS,
    USER_COMMANDS,
    CommandView,
    Desired,
    FrameProxy,
    GetCommand,
    GetTwin,
    Refresh,
    Reported,
    SendCommand,
    Twin,
)

__all__ = [
    "FLEET_NAME",
    "FRAMES_MIGRATIONS",
    "FRAMES_PATH",
    "USER_COMMANDS",
    "CommandView",
    "Desired",
    "FrameFleet",
    "FrameProxy",
    "GetCommand",
    "GetTwin",
    "ListFrameIds",
    "Refresh",
    "Reported",
    "SendCommand",
    "Twin",
]
