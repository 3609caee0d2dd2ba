"""The actors the API's routes ask, as typed refs: what the hub hands the gateway."""

from __future__ import annotations

from dataclasses import dataclass

from actors.accounts import AccountsMessage
from actors.album import AlbumMessage
from actors.console import ConsoleMessage
from actors.devices import DeviceMessage
from actors.frames import FleetMessage, FrameDirectory
from actors.http import RequestContext
from actors.media import MediaMessage
from actors.mqtt import BridgeMessage
from actors.notifier import NotifierMessage
from actors.ota import OtaMessage
from actors.telemetry import TelemetryMessage
from actors.uploader import UploaderMessage
from supervision import ActorRef


@dataclass(frozen=True, slots=True)
class ApiPeers:
    accounts: ActorRef[AccountsMessage]
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


Api = RequestContext[ApiPeers]
"""What an API handler sees: the request, its caller and ``peers``."""
