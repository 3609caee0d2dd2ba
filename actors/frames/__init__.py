"""The frames on the wall: one proxy actor per frame, named by the frame's id, kept by the
fleet beside them; ``FrameDirectory`` finds a frame's proxy."""

from ._desired import ProxyPeers
from ._directory import FRAME_ID, FrameDirectory
from ._fleet import FLEET_NAME, FleetMessage, FrameFleet, ListFrameIds
from ._messages import (
    USER_COMMANDS,
    Availability,
    CommandView,
    Desired,
    FrameInbound,
    FrameSeen,
    GetCommand,
    GetSync,
    GetTwin,
    OpenFrameVersion,
    Refresh,
    Reported,
    SendCommand,
    Twin,
)
from ._proxy import FrameProxy, ProxyMessage
from ._tables import FRAMES_MIGRATIONS
from ._views import (
    DeviceView,
    DeviceViewPage,
    GetDeviceView,
    ListDeviceViews,
)

__all__ = [
    "FLEET_NAME",
    "FRAMES_MIGRATIONS",
    "FRAME_ID",
    "USER_COMMANDS",
    "Availability",
    "CommandView",
    "Desired",
    "DeviceView",
    "DeviceViewPage",
    "FleetMessage",
    "FrameDirectory",
    "FrameFleet",
    "FrameInbound",
    "FrameProxy",
    "FrameSeen",
    "GetCommand",
    "GetDeviceView",
    "GetSync",
    "GetTwin",
    "ListDeviceViews",
    "ListFrameIds",
    "OpenFrameVersion",
    "ProxyMessage",
    "ProxyPeers",
    "Refresh",
    "Reported",
    "SendCommand",
    "Twin",
]
