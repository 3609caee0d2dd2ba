"""The frame side of framehub: the frame program and the fleet simulator.

A frame is a plain asyncio program that talks to the hub only through the wire contract
(``wire``): MQTT (aiomqtt) for syncs, album updates, commands, status and heartbeats, and
HTTP (httpx) for photo and firmware downloads. It imports nothing else of the hub; a
firmware author can read it as the reference client, over-the-air updates included (signed
commands, A/B slots, a health check, automatic rollback).

* ``Frame(FrameConfig(...)).run()`` is one frame; ``run_frame`` runs it as a program.
* ``Simulator(SimulatorConfig(...)).run()`` pairs and runs many frames in one process.
* ``Schedule`` and ``Rotation`` decide what the screen shows when, over an injectable clock.
* ``OtaFault`` switches spoil firmware updates on purpose (simulations and tests);
  ``Firmware`` is a frame's firmware directory (slots and boot state), for tests and tools.
"""

from ._display import Renderer
from ._firmware import FIRMWARE_DIR, MAX_TRIAL_BOOTS, BootState, Firmware, SlotManifest
from ._frame import DISPLAY_FILE, STATE_FILE, Frame, photo_path
from ._launch import json_lines, run_frame, run_simulator, run_until_stopped
from ._schedule import Clock, Rotation, Schedule, ScreenOff, ShowPhoto, in_quiet_hours
from ._simulator import PAIRINGS_FILE, PairingFailed, Simulator, SimulatorConfig
from ._state import (
    DEFAULT_HUB_URL,
    DEFAULT_MQTT_PORT,
    EventSink,
    FrameConfig,
    FrameEvent,
    FrameStats,
    OtaFault,
)

__all__ = [
    "DEFAULT_HUB_URL",
    "DEFAULT_MQTT_PORT",
    "DISPLAY_FILE",
    "FIRMWARE_DIR",
    "MAX_TRIAL_BOOTS",
    "PAIRINGS_FILE",
    "STATE_FILE",
    "BootState",
    "Clock",
    "EventSink",
    "Firmware",
    "Frame",
    "FrameConfig",
    "FrameEvent",
    "FrameStats",
    "OtaFault",
    "PairingFailed",
    "Renderer",
    "Rotation",
    "Schedule",
    "ScreenOff",
    "ShowPhoto",
    "Simulator",
    "SimulatorConfig",
    "SlotManifest",
    "in_quiet_hours",
    "json_lines",
    "photo_path",
    "run_frame",
    "run_simulator",
    "run_until_stopped",
]
