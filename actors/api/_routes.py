"""The API's routes, each module built with the refs of the actors it asks."""

from __future__ import annotations

from dataclasses import dataclass

from actors.album import AlbumMessage
from actors.console import ConsoleMessage
from actors.devices import DeviceMessage
from actors.frames import FleetMessage, FrameDirectory
from actors.http import ApiRoute
from actors.media import MediaMessage
from actors.mqtt import BridgeMessage
from actors.notifier import NotifierMessage
from actors.ota import OtaMessage
from actors.telemetry import TelemetryMessage
from actors.uploader import UploaderMessage
from supervision import ActorRef

from ._albums import AlbumRoutes
from ._console_page import ConsolePageRoutes
from ._devices import DeviceRoutes
from ._metrics import MetricsRoutes
from ._notifications import NotificationRoutes
from ._ota import OtaRoutes
from ._photos import PhotoRoutes
from ._playlists import PlaylistRoutes
from ._telemetry import TelemetryRoutes


@dataclass(frozen=True, slots=True)
class ApiPeers:
    """The actors the API asks, as the hub hands them over."""

    uploader: ActorRef[UploaderMessage]
    album: ActorRef[AlbumMessage]
    media: ActorRef[MediaMessage]
    devices: ActorRef[DeviceMessage]
    fleet: ActorRef[FleetMessage]
    frames: FrameDirectory
    ota: ActorRef[OtaMessage]
    telemetry: ActorRef[TelemetryMessage]
    notifier: ActorRef[NotifierMessage]
    mqtt: ActorRef[BridgeMessage]
    console: ActorRef[ConsoleMessage]


def api_routes(peers: ApiPeers) -> tuple[ApiRoute, ...]:
    """Every route of the API beyond the gateway's own, each module given what it asks."""
    return (
        *PhotoRoutes(peers.uploader, peers.media, peers.devices, peers.frames).routes(),
        *AlbumRoutes(peers.album).routes(),
        *PlaylistRoutes(peers.media, peers.devices).routes(),
        *DeviceRoutes(peers.devices, peers.fleet, peers.frames, peers.ota, peers.mqtt).routes(),
        *OtaRoutes(peers.ota).routes(),
        *TelemetryRoutes(peers.telemetry).routes(),
        *NotificationRoutes(peers.notifier).routes(),
        *MetricsRoutes(peers.telemetry, peers.notifier, peers.mqtt).routes(),
        *ConsolePageRoutes(peers.console).routes(),
    )
