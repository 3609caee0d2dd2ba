"""Frames paired with the hub (seed device_service): ``DeviceRegistry`` (``/domain/devices``)
and its messages."""

from ._devices import (
    DEVICE_MIGRATIONS,
    DEVICES_PATH,
    MAX_ALBUMS,
    MAX_PANEL_SIDE,
    MAX_TEXT_LENGTH,
    ORIENTATIONS,
    DeleteDevice,
    Device,
    DeviceMessage,
    DevicePage,
    DeviceRegistry,
    GetDevice,
    ListDeviceAccess,
    ListDevices,
    Orientation,
    RegisterDevice,
    Registered,
    SetDeviceAlbums,
)

__all__ = [
    "DEVICES_PATH",
    "DEVICE_MIGRATIONS",
    "MAX_ALBUMS",
    "MAX_PANEL_SIDE",
    "MAX_TEXT_LENGTH",
    "ORIENTATIONS",
    "DeleteDevice",
    "Device",
    "DeviceMessage",
    "DevicePage",
    "DeviceRegistry",
    "GetDevice",
    "ListDeviceAccess",
    "ListDevices",
    "Orientation",
    "RegisterDevice",
    "Registered",
    "SetDeviceAlbums",
]
