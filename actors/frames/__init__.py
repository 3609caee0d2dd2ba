"""The frames on the wall: one proxy actor per frame, named by the frame's id, kept by the
fleet beside them; ``FrameDirectory`` finds a frame's proxy."""

from ._directory import FRAME_ID, FrameDirectory
from ._fleet import FLEET_NAME, FleetMessage, FrameFleet, ListFrameIds
from ._messages import Availability, FrameInbound, FrameSeen, GetSync
from ._proxy import (
    FRAMES_MIGRATIONS,
    USER_COMMANDS,
    CommandView,
    Desired,
    FrameProxy,
    GetCommand,
    GetTwin,
    OpenFrameVersion,
    ProxyMessage,
    ProxyPeers,
    Refresh,
    Reported,
    SendCommand,
    Twin,
)
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
