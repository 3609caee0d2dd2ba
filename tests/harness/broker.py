"""A Mosquitto of the test's own on a free loopback port, as an administrator would run one.

Anonymous by default; with ``passwords`` and ``acl`` it checks a password file and an ACL file
(``reload`` rewrites them and sends SIGHUP, as an administrator would after a change). With
``persistent`` its sessions and queued messages survive a ``stop`` and ``start``, as on a real
broker. ``start`` returns once Mosquitto says it is running (it prints that after opening its
listener); its log is ``<directory>/mosquitto.log``.

``start`` and ``stop`` block (the tests of the frame program have no event loop);
``running_mosquitto`` runs them in a thread for tests under Trio.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from tests.harness.ports import free_port

WAIT_S = 15.0
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


class Broker:
    def __init__(
        self,
        directory: Path,
        *,
        persistent: bool = False,
        passwords: str | None = None,
        acl: str | None = None,
    ) -> None:
        self.directory = directory
        self.port = free_port()
        self.persistent = persistent
        self.passwords = passwords
        self.acl = acl
        self.process: subprocess.Popen[str] | None = None

    def _write_access(self, passwords: str, acl: str) -> None:
        for name, text in (("passwd", passwords), ("acl", acl)):
            (self.directory / name).write_text(text)
            os.chmod(self.directory / name, 0o600)

    def _config(self) -> str:
        # As this process's user, so that it may read the files and save its sessions here.
        lines = [f"user {pwd.getpwuid(os.getuid()).pw_name}", f"listener {self.port} 127.0.0.1"]
        if self.passwords is None or self.acl is None:
            lines.append("allow_anonymous true")
        else:
            self._write_access(self.passwords, self.acl)
            lines += [
                "allow_anonymous false",
                f"password_file {self.directory / 'passwd'}",
                f"acl_file {self.directory / 'acl'}",
            ]
        if self.persistent:
            lines += ["persistence true", f"persistence_location {self.directory}/"]
        else:
            lines.append("persistence false")
        lines += ["log_dest stderr", *(f"log_type {kind}" for kind in LOG_TYPES)]
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        conf = self.directory / "mosquitto.conf"
        conf.write_text(self._config())
        process = subprocess.Popen(
            [MOSQUITTO, "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.process = process
        running = threading.Event()
        log_path = self.directory / "mosquitto.log"

        def drain() -> None:
            assert process.stderr is not None
            with open(log_path, "a") as log:
                for line in process.stderr:
                    log.write(line)
                    log.flush()
                    if line.rstrip().endswith(" running"):
                        running.set()

        threading.Thread(target=drain, daemon=True).start()
        if not running.wait(WAIT_S):
            self.stop()
            raise RuntimeError(f"mosquitto did not start: {log_path.read_text()}")

    def stop(self) -> None:
        """SIGTERM (SIGKILL if it does not stop in time)."""
        process = self.process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(WAIT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.process = None

    def reload(self, passwords: str, acl: str) -> None:
        """New password file and ACL, read again without a restart (SIGHUP)."""
        assert self.process is not None
        self.passwords, self.acl = passwords, acl
        self._write_access(passwords, acl)
        self.process.send_signal(signal.SIGHUP)


LOG_TYPES = ("error", "warning", "notice", "information")


@asynccontextmanager
async def running_mosquitto(directory: Path, passwords: str, acl: str) -> AsyncIterator[Broker]:
    """A started ``Broker`` with the given password file and ACL, stopped at the end."""
    broker = Broker(directory, passwords=passwords, acl=acl)
    await trio.to_thread.run_sync(broker.start)
    try:
        yield broker
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(broker.stop)
