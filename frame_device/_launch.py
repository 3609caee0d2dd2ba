"""Running a frame or a fleet as a program: an event loop that SIGINT/SIGTERM stop cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TextIO

import msgspec

from ._frame import Frame
from ._simulator import Simulator, SimulatorConfig
from ._state import EventSink, FrameConfig, FrameEvent

_encode = msgspec.json.Encoder().encode


def json_lines(stream: TextIO) -> EventSink:
    """An event sink writing one JSON object per line, flushed, for a reader to wait on."""

    def write(event: FrameEvent) -> None:
        stream.write(_encode(event).decode() + "\n")
        stream.flush()

    return write


def run_until_stopped(main: Callable[[], Coroutine[Any, Any, None]]) -> int:
    """Run ``main`` in a new event loop until it ends or SIGINT/SIGTERM cancels it.

    Stopping by signal is a normal end (exit status 0); the cancellation lets every frame
    say goodbye on MQTT and close its connection. The loop is asyncio's own selector loop,
    asked for by name: importing trio-asyncio (as the hub's modules do) replaces asyncio's
    default loop policy with one that hosts asyncio inside Trio, which a frame does not use.
    """

    async def until_signal() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, task.cancel)
        await main()

    with (
        contextlib.suppress(asyncio.CancelledError),
        asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner,
    ):
        runner.run(until_signal())
    return 0


def run_frame(config: FrameConfig, *, events: bool = False) -> int:
    """``python run.py frame``: one frame until stopped."""
    sink = json_lines(sys.stdout) if events else None
    return run_until_stopped(lambda: Frame(config, on_event=sink).run())


def run_simulator(config: SimulatorConfig, *, events: bool = False) -> int:
    """``python run.py simulate``: a fleet until stopped (PairingFailed if the hub says no)."""
    sink = json_lines(sys.stdout) if events else None
    return run_until_stopped(lambda: Simulator(config, on_event=sink).run())
