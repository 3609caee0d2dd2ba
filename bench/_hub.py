"""The hub as production runs it, ``run.py serve``, in a process of its own: for benchmarks whose
figure is the hub's own memory, which the load generator and the frames must not inflate.

``HubProcess`` starts it on a data directory of its own (every port picked by the OS, the
request rate limit out of the way, ``FRAMEHUB_<key>`` overrides), waits until it has written
``ports.json`` (which it does once it is ready), and stops it with SIGTERM (its graceful
shut-down, which also stops its managed Mosquitto).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import msgspec
import psutil

from actors.mqtt import HUB_USERNAME, BrokerAddress
from actors.mqtt._broker import BROKER_DIR, SECRET_FILE

ROOT = Path(__file__).resolve().parent.parent
START_WAIT_S = 60.0
STOP_WAIT_S = 30.0


class HubProcess:
    """``run.py serve`` on ``<directory>/hub`` with ``FRAMEHUB_<key>`` ``settings``; its output
    goes to ``log`` when given (else this process's)."""

    def __init__(self, directory: Path, *, log: Path | None = None, **settings: str) -> None:
        self.data_dir = directory / "hub"
        self.env = {
            **os.environ,
            "FRAMEHUB_DATA_DIR": str(self.data_dir),
            "FRAMEHUB_HTTP__PORT": "0",
            "FRAMEHUB_MQTT__PORT": "0",
            "FRAMEHUB_CONSOLE__PORT": "0",
            "FRAMEHUB_HTTP__RATE_LIMIT_PER_MINUTE": "100000",
            "FRAMEHUB_LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT),
            **{f"FRAMEHUB_{key}": value for key, value in settings.items()},
        }
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.ports: dict[str, int] = {}
        self.base_url = ""

    def __enter__(self) -> HubProcess:
        output: IO[bytes] | None = self.log.open("ab") if self.log is not None else None
        try:
            self.process = subprocess.Popen(
                [*self._run, "serve"], env=self.env, stdout=output, stderr=output
            )
        finally:
            if output is not None:
                output.close()  # the child has its own copy
        ports = self.data_dir / "ports.json"
        deadline = time.monotonic() + START_WAIT_S
        while not ports.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                where = f"; its log: {self.log}" if self.log is not None else ""
                raise RuntimeError(f"the hub did not start{where}")
            time.sleep(0.05)
        self.ports = msgspec.json.decode(ports.read_bytes(), type=dict[str, int])
        self.base_url = f"http://127.0.0.1:{self.ports['http']}"
        return self

    def __exit__(self, *_: object) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    @property
    def _run(self) -> list[str]:
        return [sys.executable, str(ROOT / "run.py")]

    def add_user(self, name: str, *, admin: bool = False) -> str:
        """Create a user with ``run.py users add``; its API token."""
        command = [*self._run, "users", "add", name, *(["--admin"] if admin else [])]
        made = subprocess.run(command, env=self.env, capture_output=True, check=True)
        return made.stdout.decode().strip().splitlines()[-1]

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def rss_mb(self) -> float:
        return float(psutil.Process(self.pid).memory_info().rss) / 1e6

    def broker(self) -> BrokerAddress:
        """The managed broker's address with the hub's own credentials (from its data
        directory), for a listener that must see what the hub's bridge sees."""
        secret = (self.data_dir / BROKER_DIR / SECRET_FILE).read_text().strip()
        return BrokerAddress(
            host="127.0.0.1",
            port=self.ports["mqtt"],
            hub_username=HUB_USERNAME,
            hub_password=secret,
        )
