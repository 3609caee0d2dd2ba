"""Frames paired with the hub (seed device_service): ``DeviceRegistry`` (``/domain/devices``)
and its messages."""

from ._devices import (
    DEVICE_MIGRATIONS,
    DEVICES_PATH,
    MAX_PANEL_SIDE,
    MAX_TEXT_LENGTH,
    ORIENTATIONS,
    DeleteDevice,
    Device,
    DeviceMessage,
    DevicePage,
    DeviceRegistry,
    GetDevice,
    ListDevices,
    Orientation,
    RegisterDevice,
)

__all__ = [
    "DEVICES_PATH",
    "DEVICE_MIGRATIONS",
    "MAX_PANEL_SIDE",
    "MAX_TEXT_LENGTH",
    "ORIENTATIONS",
    "DeleteDevice",
    "Device",
    "DeviceMessage",
    "DevicePage",
    "DeviceRegistry",
    "GetDevice",
    "ListDevices",
    "Orientation",
    "RegisterDevice",
]
