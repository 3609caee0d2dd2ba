"""What a frame is told and what it keeps on disk across reboots.

``FrameConfig`` is how it was set up (pairing and panel); ``FrameState`` is what it has
learnt since (the last sync, live album changes, the photo on screen, commands it answered),
saved to ``state.json`` after every change so a reboot continues where it stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec

import wire

log = logging.getLogger("frame_device")

DEFAULT_HUB_URL = "http://127.0.0.1:8080"
DEFAULT_MQTT_PORT = 1884
REMEMBERED_ANSWERS = 100


@dataclass(frozen=True, kw_only=True)
class FrameConfig:
    """How a frame was paired and built. Panel size and heartbeat interval hold until a sync
    says otherwise."""

    device_id: str
    token: str
    """The frame's HTTP API token (downloads)."""
    mqtt_username: str
    mqtt_password: str
    data_dir: Path
    hub_url: str = DEFAULT_HUB_URL
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = DEFAULT_MQTT_PORT
    mqtt_client_id: str = ""
    """The MQTT client id of the persistent session; empty: ``frame-<device_id>``."""
    panel_width: int = 1024
    panel_height: int = 600
    heartbeat_s: float = 30.0
    telemetry_every: int = 10
    """Publish telemetry with every N-th heartbeat."""
    firmware_version: str = "1.0.0"
    render: bool = True
    """Write ``display.png``; off, the frame does everything else (large simulations)."""
    ignore_commands: bool = False
    """Fault switch: receive commands and never answer them."""

    @property
    def client_id(self) -> str:
        return self.mqtt_client_id or f"frame-{self.device_id}"


class FrameEvent(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One observable outcome, for tests and benchmarks to wait on (``--events`` prints
    them as JSON lines). ``event`` is ``connected``, ``synced``, ``displayed``,
    ``screen_off``, ``command`` (a command done without another status) or ``error``."""

    t: float
    frame_id: str
    event: str
    file_id: str | None = None
    command_id: str | None = None
    sync_version: int | None = None


EventSink = Callable[[FrameEvent], None]


@dataclass
class FrameStats:
    """Counters a test or the simulator can read; they survive reboots."""

    connects: int = 0
    dropped_payloads: int = 0
    downloads: int = 0
    download_failures: int = 0
    commands_answered: int = 0
    boots: int = 0
    crashes: int = 0


class Photo(msgspec.Struct, frozen=True, kw_only=True):
    """A playlist entry: a photo of one album and where its frame-sized version is.

    ``sha256`` is empty for a photo announced live (``photo_added``) until it has been
    downloaded, because only its bytes tell it.
    """

    file_id: str
    album_id: str
    url: str
    sha256: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.album_id, self.file_id)


class FrameState(msgspec.Struct, kw_only=True):
    """Everything the frame keeps across a reboot.

    The playlist is the last sync plus the album changes heard live since (``added``,
    ``removed``); a sync with different contents replaces both, because the hub has folded
    those changes into it.
    """

    sync: wire.FrameSync | None = None
    applied_version: int = 0
    """The last sync version whose photos were all cached (reported in heartbeats)."""
    added: list[Photo] = []
    removed: list[tuple[str, str]] = []
    """(album_id, file_id) of sync photos removed live."""
    current_file_id: str | None = None
    answers: list[wire.FrameStatus] = []
    """The last answers to commands, so a redelivered command is answered, not redone."""
    restart_command_id: str | None = None
    """A restart in progress, answered once the frame is back on MQTT."""

    def playlist(self) -> list[Photo]:
        removed = set(self.removed)
        photos = [
            Photo(file_id=p.file_id, album_id=p.album_id, url=p.url, sha256=p.sha256)
            for p in (self.sync.photos if self.sync is not None else [])
            if (p.album_id, p.file_id) not in removed
        ]
        in_sync = {photo.key for photo in photos}
        return photos + [photo for photo in self.added if photo.key not in in_sync]

    def answer_to(self, command_id: str) -> wire.FrameStatus | None:
        return next((a for a in self.answers if a.command_id == command_id), None)

    def remember(self, answer: wire.FrameStatus) -> None:
        self.answers = [*self.answers, answer][-REMEMBERED_ANSWERS:]


_encode = msgspec.json.Encoder().encode
_decode_state = msgspec.json.Decoder(FrameState).decode


def load_state(path: Path) -> FrameState:
    """The saved state, or a fresh one when there is none or it cannot be read."""
    try:
        return _decode_state(path.read_bytes())
    except FileNotFoundError:
        return FrameState()
    except (OSError, msgspec.DecodeError) as error:
        log.warning("state file %s unreadable (%s); starting afresh", path, error)
        return FrameState()


def encode_state(state: FrameState) -> bytes:
    return _encode(state)
