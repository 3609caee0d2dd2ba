"""The hub's API routes beyond the gateway's own: photos, albums, playlists, schedules, devices,
firmware and campaigns, telemetry and alerts, notifications, metrics, the console's page.

Each route only translates HTTP into a message for the actor that owns the data; each module
is built with the refs of the actors it asks (``api_routes``).
"""

from ._devices import NewDevice, PairedDevice
from ._photos import UploadedFile
from ._routes import ApiPeers, api_routes

__all__ = ["ApiPeers", "NewDevice", "PairedDevice", "UploadedFile", "api_routes"]
