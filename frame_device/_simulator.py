"""A fleet of frames in one process, paired through the hub's API like real ones.

Each simulated frame is a full ``Frame`` with its own MQTT connection and data directory;
they share one HTTP client and one ``Renderer``, so a photo that fifty frames show is
encoded once. Pairings are kept in ``<data_dir>/frames.json``: a restarted simulator brings
back the same frames (and their caches, firmware slots and fault counters) instead of
pairing new ones. A frame's index is its place in that file (pairing order), which is how
OTA fault switches pick frames.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx
import msgspec

import wire

from ._cache import write_atomically
from ._display import Renderer
from ._frame import HTTP_TIMEOUT_S, Frame
from ._state import DEFAULT_HUB_URL, EventSink, FrameConfig, OtaFault

log = logging.getLogger("frame_device")

PAIRINGS_FILE = "frames.json"

_decode_pairing = msgspec.json.Decoder(wire.Pairing).decode
_decode_pairings = msgspec.json.Decoder(list[wire.Pairing]).decode
_encode = msgspec.json.Encoder().encode


class PairingFailed(Exception):
    """The hub refused to pair a frame, or answered something that is not a pairing."""


@dataclass(frozen=True, kw_only=True)
class SimulatorConfig:
    """How many frames, of which kind, against which hub. ``token`` is an admin's."""

    frames: int
    token: str
    hub_url: str = DEFAULT_HUB_URL
    data_dir: Path = Path("sim-data")
    model: str = "sim-frame"
    hw_version: str = "1.0"
    width: int = 1024
    height: int = 600
    orientation: Literal["landscape", "portrait"] = "landscape"
    heartbeat_s: float = 30.0
    render: bool = True
    ignore_commands: bool = False
    health_check_s: float = 30.0
    ota_faults: dict[int, tuple[OtaFault, ...]] = field(default_factory=dict)
    """OTA fault switches of single frames, by index (0-based, pairing order)."""
    ota_faults_all: tuple[OtaFault, ...] = ()
    """OTA fault switches of every frame."""


class Simulator:
    """Pairs what is missing, then runs every frame until cancelled."""

    def __init__(self, config: SimulatorConfig, *, on_event: EventSink | None = None) -> None:
        self.config = config
        self.frames: list[Frame] = []
        self._on_event = on_event

    async def run(self) -> None:
        connections = max(16, self.config.frames * 2)
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S, limits=limits) as http:
            pairings = await self.pairings(http)
            renderer = Renderer()
            self.frames = [
                Frame(
                    self._frame_config(index, pairing),
                    http=http,
                    renderer=renderer,
                    on_event=self._on_event,
                )
                for index, pairing in enumerate(pairings)
            ]
            log.info("simulating %d frames against %s", len(self.frames), self.config.hub_url)
            async with asyncio.TaskGroup() as tasks:
                for frame in self.frames:
                    tasks.create_task(frame.run())

    async def pairings(self, http: httpx.AsyncClient) -> list[wire.Pairing]:
        """The saved pairings, plus new ones until there are ``frames``; each new pairing is
        saved at once, so a frame the hub knows is never forgotten here."""
        path = self.config.data_dir / PAIRINGS_FILE
        saved = _decode_pairings(path.read_bytes()) if path.exists() else []
        while len(saved) < self.config.frames:
            saved.append(await self._pair(http, len(saved) + 1))
            self.config.data_dir.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(write_atomically, path, _encode(saved), durable=True)
        return saved[: self.config.frames]

    async def _pair(self, http: httpx.AsyncClient, number: int) -> wire.Pairing:
        request = wire.PairingRequest(
            name=f"{self.config.model}-{number:04d}",
            model=self.config.model,
            hw_version=self.config.hw_version,
            width=self.config.width,
            height=self.config.height,
            orientation=self.config.orientation,
        )
        url = f"{self.config.hub_url.rstrip('/')}/api/v1/devices"
        try:
            response = await http.post(
                url,
                content=_encode(request),
                headers={
                    "Authorization": f"Bearer {self.config.token}",
                    "Content-Type": "application/json",
                },
            )
        except httpx.HTTPError as error:
            raise PairingFailed(f"cannot reach {url}: {error}") from error
        if response.status_code != 201:
            raise PairingFailed(f"{url} answered {response.status_code}: {response.text[:300]}")
        try:
            return _decode_pairing(response.content)
        except msgspec.DecodeError as error:
            raise PairingFailed(f"{url} answered an unusable pairing: {error}") from error

    def _frame_config(self, index: int, pairing: wire.Pairing) -> FrameConfig:
        return FrameConfig(
            device_id=pairing.device_id,
            token=pairing.token,
            hub_url=self.config.hub_url,
            mqtt_host=pairing.mqtt.host,
            mqtt_port=pairing.mqtt.port,
            mqtt_client_id=pairing.mqtt.client_id,
            mqtt_username=pairing.mqtt.username,
            mqtt_password=pairing.mqtt.password,
            data_dir=self.config.data_dir / "frames" / pairing.device_id,
            panel_width=self.config.width,
            panel_height=self.config.height,
            heartbeat_s=self.config.heartbeat_s,
            render=self.config.render,
            ignore_commands=self.config.ignore_commands,
            public_key=pairing.public_key,
            health_check_s=self.config.health_check_s,
            ota_faults=self.config.ota_faults_all + self.config.ota_faults.get(index, ()),
        )
