"""The hub's API routes beyond accounts: photos, albums, playlists, schedules and devices.

Each route only translates HTTP into a message for the actor that owns the data.
"""

from ._albums import ALBUM_ROUTES
from ._console_page import CONSOLE_PAGE_ROUTES
from ._devices import DEVICE_ROUTES, NewDevice, PairedDevice
from ._metrics import METRICS_ROUTES
from ._notifications import NOTIFICATIONS_ROUTES
from ._ota import OTA_ROUTES
from ._peers import Api, ApiPeers
from ._photos import PHOTO_ROUTES, UploadedFile
from ._playlists import PLAYLIST_ROUTES
from ._telemetry import TELEMETRY_ROUTES

ROUTES = (
    *PHOTO_ROUTES,
    *ALBUM_ROUTES,
    *PLAYLIST_ROUTES,
    *DEVICE_ROUTES,
    *OTA_ROUTES,
    *TELEMETRY_ROUTES,
    *NOTIFICATIONS_ROUTES,
    *METRICS_ROUTES,
    *CONSOLE_PAGE_ROUTES,
)

__all__ = [
    "ALBUM_ROUTES",
    "CONSOLE_PAGE_ROUTES",
    "DEVICE_ROUTES",
    "METRICS_ROUTES",
    "NOTIFICATIONS_ROUTES",
    "OTA_ROUTES",
    "PHOTO_ROUTES",
    "PLAYLIST_ROUTES",
    "ROUTES",
    "TELEMETRY_ROUTES",
    "Api",
    "ApiPeers",
    "NewDevice",
    "PairedDevice",
    "UploadedFile",
]
