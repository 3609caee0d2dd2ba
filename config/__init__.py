"""The hub's settings: typed, frozen, validated, loaded from defaults, a TOML file and env vars.

This package's only public surface is what ``__all__`` lists; the underscore modules may change.
"""

from config._loader import SettingsError, load_settings
from config._settings import (
    ConsoleSettings,
    FramesSettings,
    HttpSettings,
    JournalSettings,
    MqttSettings,
    NotifierSettings,
    OtaSettings,
    RuntimeSettings,
    Settings,
    TelemetrySettings,
)

__all__ = [
    "ConsoleSettings",
    "FramesSettings",
    "HttpSettings",
    "JournalSettings",
    "MqttSettings",
    "NotifierSettings",
    "OtaSettings",
    "RuntimeSettings",
    "Settings",
    "SettingsError",
    "TelemetrySettings",
    "load_settings",
]
