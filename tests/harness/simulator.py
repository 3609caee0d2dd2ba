"""``run.py simulate`` in a child process, and the JSON event lines its frames print.

Tests wait on those lines (``wait_for``), never on the clock. The simulator pairs its frames
through the hub's API with an admin token and keeps them in ``<data_dir>/frames.json``, so a
second simulator on the same directory brings the same frames back.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from tests.harness import ROOT

WAIT_S = 30.0

FrameEvent = dict[str, Any]


class Simulator:
    """``run.py simulate`` as a child process and the event lines it printed."""

    def __init__(self, process: trio.Process, data_dir: Path) -> None:
        self.process = process
        self.data_dir = data_dir
        self.events: list[FrameEvent] = []
        self._changed = trio.Event()

    async def read(self) -> None:
        assert self.process.stdout is not None
        buffer = b""
        async for chunk in self.process.stdout:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.strip():
                    self.events.append(json.loads(line))
            self._changed.set()
            self._changed = trio.Event()

    async def wait_for(
        self, check: Callable[[FrameEvent], bool], count: int = 1, timeout: float = WAIT_S
    ) -> None:
        with trio.fail_after(timeout):
            while sum(1 for event in self.events if check(event)) < count:
                await self._changed.wait()

    def frame_ids(self) -> list[str]:
        pairings = json.loads((self.data_dir / "frames.json").read_text())
        return [pairing["device_id"] for pairing in pairings]

    def display(self, frame_id: str) -> Path:
        return self.data_dir / "frames" / frame_id / "display.png"


@asynccontextmanager
async def simulate(
    base_url: str, admin_token: str, data_dir: Path, frames: int, *options: str
) -> AsyncIterator[Simulator]:
    """``frames`` frames heart-beating every second (``options`` added to the command line),
    returned once all are connected; stopped with SIGTERM (then SIGKILL) at the end."""
    command = [
        sys.executable,
        str(ROOT / "run.py"),
        "simulate",
        "--frames",
        str(frames),
        "--hub",
        base_url,
        "--data-dir",
        str(data_dir),
        "--heartbeat",
        "1",
        "--events",
        *options,
    ]
    environ = {**os.environ, "FRAMEHUB_TOKEN": admin_token}
    async with trio.open_nursery() as nursery:
        process = await trio.lowlevel.open_process(
            command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=environ, cwd=ROOT
        )
        simulator = Simulator(process, data_dir)
        nursery.start_soon(simulator.read)
        try:
            await simulator.wait_for(lambda e: e["event"] == "connected", frames)
            yield simulator
        finally:
            process.send_signal(signal.SIGTERM)
            with trio.move_on_after(10):
                await process.wait()
            if process.returncode is None:
                process.kill()
            nursery.cancel_scope.cancel()
