"""The hub as ``python run.py serve`` in a child process, for tests that kill it with SIGKILL.

Its HTTP and MQTT ports are fixed when the handle is made, so frames and clients find the hub
again after a restart. Readiness is the hub's own "framehub ready" log line.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from tests.harness import ROOT
from tests.harness.ports import free_port

READY_S = 60.0


class HubProcess:
    """One data directory served by successive hub processes (``start``, ``kill``, ``stop``)."""

    def __init__(self, data_dir: Path, nursery: trio.Nursery, **settings: str) -> None:
        self.data_dir = data_dir
        self.http_port = free_port()
        self.mqtt_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.http_port}"
        self._nursery = nursery
        self._environ = {
            **os.environ,
            "FRAMEHUB_DATA_DIR": str(data_dir),
            "FRAMEHUB_HTTP__HOST": "127.0.0.1",
            "FRAMEHUB_HTTP__PORT": str(self.http_port),
            "FRAMEHUB_MQTT__PORT": str(self.mqtt_port),
            "FRAMEHUB_LOG_LEVEL": "INFO",
            **{f"FRAMEHUB_{key}": value for key, value in settings.items()},
        }
        self.process: trio.Process | None = None
        self.starts = 0

    def admin_token(self, name: str = "admin") -> str:
        """A new admin user, made with ``run.py users add`` (works with or without a hub)."""
        done = subprocess.run(
            [sys.executable, str(ROOT / "run.py"), "users", "add", name, "--admin"],
            env=self._environ,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip().splitlines()[-1]

    async def start(self) -> None:
        """Start a hub and return once it logged that it is ready."""
        assert self.process is None or self.process.returncode is not None
        self.starts += 1
        log = (self.data_dir.parent / f"hub-{self.starts}.log").open("wb")
        process = await trio.lowlevel.open_process(
            [sys.executable, str(ROOT / "run.py"), "serve"],
            env=self._environ,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.PIPE,
        )
        self.process = process
        ready = trio.Event()

        async def pump() -> None:
            assert process.stderr is not None
            buffer = b""
            async for chunk in process.stderr:
                log.write(chunk)
                log.flush()
                buffer = (buffer + chunk)[-4096:]
                if b"framehub ready" in buffer:
                    ready.set()
            log.close()

        self._nursery.start_soon(pump)
        with trio.fail_after(READY_S):
            while not ready.is_set():
                if process.returncode is not None:
                    raise RuntimeError(f"the hub exited with {process.returncode}; see {log.name}")
                with trio.move_on_after(0.5):
                    await ready.wait()

    async def kill(self) -> None:
        """``kill -9``: no graceful anything (its Mosquitto keeps running, as in real life)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            with trio.move_on_after(20):
                await self.process.wait()
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()


@asynccontextmanager
async def hub_process(data_dir: Path, **settings: str) -> AsyncIterator[HubProcess]:
    """A started hub process on ``data_dir``, stopped (and its broker with it) at the end."""
    await trio.Path(data_dir).mkdir(parents=True, exist_ok=True)
    async with trio.open_nursery() as nursery:
        hub = HubProcess(data_dir, nursery, **settings)
        try:
            await hub.start()
            yield hub
        finally:
            with trio.CancelScope(shield=True):
                await hub.stop()
                if hub.process is not None and hub.process.returncode == -signal.SIGKILL:
                    await hub.start()  # killed last: let a clean start stop the orphan broker
                    await hub.stop()
            nursery.cancel_scope.cancel()
