"""What a frame is told and what it keeps on disk across reboots.

``FrameConfig`` is how it was set up (pairing and panel); ``FrameState`` is what it has
learnt since (the last sync, live album changes, the photo on screen, commands it answered),
saved to ``state.json`` after every change so a reboot continues where it stopped. The
firmware's own state (slots, boot state, OTA answers) lives apart, in ``firmware/``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, get_args

import msgspec

import wire

log = logging.getLogger("frame_device")

DEFAULT_HUB_URL = "http://127.0.0.1:8080"
DEFAULT_MQTT_PORT = 1884
REMEMBERED_ANSWERS = 100


def utc_timestamp() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


OtaFaultKind = Literal["corrupt_download", "failed_install", "crash_after_boot", "never_answers"]
OTA_FAULT_KINDS: tuple[OtaFaultKind, ...] = get_args(OtaFaultKind)


@dataclass(frozen=True, kw_only=True)
class OtaFault:
    """A simulator switch that spoils firmware updates on purpose.

    ``corrupt_download``: the downloaded bytes are damaged (the SHA-256 check fails);
    ``failed_install``: writing the inactive slot fails; ``crash_after_boot``: the new
    firmware crashes after its first boot (the health check fails, the frame rolls back);
    ``never_answers``: firmware commands are received and ignored, nothing is published.
    ``times`` is how many update attempts it spoils (None: all); the count is kept on the
    frame's disk, so it holds across restarts.
    """

    kind: OtaFaultKind
    times: int | None = None

    @classmethod
    def parse(cls, text: str) -> OtaFault:
        """``KIND`` or ``KIND:TIMES``; ValueError for anything else."""
        kind, _, times = text.partition(":")
        for known in OTA_FAULT_KINDS:
            if kind == known:
                break
        else:
            raise ValueError(f"unknown OTA fault {kind!r} (one of {', '.join(OTA_FAULT_KINDS)})")
        if not times:
            return cls(kind=known)
        if not times.isdigit() or int(times) < 1:
            raise ValueError(f"OTA fault {text!r}: TIMES must be a positive number")
        return cls(kind=known, times=int(times))


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
    public_key: str = ""
    """The hub's Ed25519 public key (base64 of the raw 32 bytes) from the pairing; firmware
    commands must be signed with it. Empty: every firmware command is refused."""
    health_check_s: float = 30.0
    """How long a newly installed firmware must run healthily before it is committed."""
    ota_faults: tuple[OtaFault, ...] = ()
    """Fault switches for firmware updates (simulations and tests)."""

    @property
    def client_id(self) -> str:
        return self.mqtt_client_id or f"frame-{self.device_id}"


class FrameEvent(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One observable outcome, for tests and benchmarks to wait on (``--events`` prints
    them as JSON lines). ``event`` is ``connected``, ``synced``, ``displayed``,
    ``screen_off``, ``command`` (a command done without another status), ``error`` or
    ``ota``.

    An ``ota`` event is a firmware transition: ``state`` is what the frame published on
    ``frames/<id>/ota`` (``downloading`` with ``progress``, ``downloaded``, ``installing``,
    ``completed``, ``failed``, ``rolled_back``; again when a redelivered command gets its
    final answer once more) or ``health_check``, when a frame has booted a new firmware on
    trial; ``version`` is the firmware the command is about, ``error`` why it failed."""

    t: float
    frame_id: str
    event: str
    file_id: str | None = None
    command_id: str | None = None
    sync_version: int | None = None
    state: str | None = None
    version: str | None = None
    progress: float | None = None
    error: str | None = None


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
