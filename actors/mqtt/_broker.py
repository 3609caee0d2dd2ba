"""The managed Mosquitto broker: one supervised child process, its config, users and ACL."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
from collections import deque
from pathlib import Path
from typing import Any

import msgspec
import trio

import wire
from actors.devices import FrameAccess, hash_password
from config import MqttSettings
from supervision import Actor, DomainError, Request

from ._client import MqttClient

log = logging.getLogger("framehub.broker")
broker_log = logging.getLogger("framehub.broker.mosquitto")

HUB_USERNAME = "framehub-hub"
HUB_CLIENT_ID = "framehub-hub"
"""The hub's MQTT client id: one persistent session, whichever incarnation connects."""
HUB_SUBSCRIPTIONS = [(f"frames/+/{leaf}", 1) for leaf in wire.FRAME_LEAVES_IN]
"""What the hub's session subscribes to (QoS 1): everything frames publish."""
BROKER_DIR = "mosquitto"
"""Everything the broker owns lives in ``<data_dir>/mosquitto/``."""
CONFIG_FILE = "mosquitto.conf"
PASSWORD_FILE = "passwd"
ACL_FILE = "acl"
PORT_FILE = "port"
SECRET_FILE = "hub.secret"

START_TIMEOUT_S = 10.0
"""How long the broker may take to accept TCP connections after it is started."""
RELOAD_TIMEOUT_S = 5.0
"""How long a SIGHUP reload may take before the actor gives up (crashes and restarts)."""
RELOAD_RETRY_S = 0.5
"""A reload line not seen by then: the SIGHUP is sent again (see ``_Broker.reload``)."""
STOP_TIMEOUT_S = 3.0
"""How long the broker may take to save its state and exit on SIGTERM before it is killed."""
INSTALL_HINT = "install it with `apt-get install mosquitto`"

_NAME = re.compile(r"[A-Za-z0-9._\-]+")
"""Frame and album ids (topic levels) and usernames: no MQTT wildcards, separators or spaces."""
_HASH = re.compile(r"\$7\$[0-9]+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+")


# -- messages ----------------------------------------------------------------------------------


class GetBrokerAddress(Request["BrokerAddress"], frozen=True):
    """Ask for where the broker listens and the hub's own credentials."""


class BrokerAddress(msgspec.Struct, frozen=True, kw_only=True):
    host: str
    port: int
    hub_username: str
    hub_password: str


class GetBrokerProcess(Request["BrokerProcess"], frozen=True):
    """Ask for the running broker process (introspection, health and tests)."""


class BrokerProcess(msgspec.Struct, frozen=True, kw_only=True):
    pid: int
    port: int
    frames: int
    """How many frames currently have access."""


class SetFrameAccess(Request[None], frozen=True, kw_only=True):
    """Replace the whole list of frames allowed on the broker (reloaded, not restarted)."""

    frames: list[FrameAccess]


BrokerMessage = GetBrokerAddress | GetBrokerProcess | SetFrameAccess


class InvalidFrameAccess(DomainError):
    """A frame access list that cannot be written safely (bad id, duplicate user, ...)."""


class BrokerUnavailable(RuntimeError):
    """The broker cannot be started: missing binary, or it exited or never listened."""


def find_mosquitto(settings: MqttSettings) -> str:
    """The mosquitto executable's path; ``BrokerUnavailable`` saying how to install it."""
    binary = shutil.which(settings.mosquitto_binary)
    if binary is None:
        raise BrokerUnavailable(
            f"mosquitto executable {settings.mosquitto_binary!r} not found: {INSTALL_HINT}"
            " (Debian/Ubuntu), or set [mqtt] mosquitto_binary"
            " (FRAMEHUB_MQTT__MOSQUITTO_BINARY) to its path"
        )
    return binary


class BrokerDied(RuntimeError):
    """The running broker process exited; the actor crashes and its supervisor restarts it."""


class BrokerAccess:
    """The frames' access list, shared by every incarnation of one ``MosquittoBroker``.

    The supervisor builds a new actor for each restart; create one of these next to the
    child spec and pass it to the factory so a restarted broker rewrites the same users.
    It lives in memory only: until the device registry persists frame credentials, a hub
    restart starts with no frames (the registry must send ``SetFrameAccess`` again).
    """

    __slots__ = ("frames",)

    def __init__(self) -> None:
        self.frames: tuple[FrameAccess, ...] = ()


# -- files -------------------------------------------------------------------------------------


def validate_access(frames: list[FrameAccess] | tuple[FrameAccess, ...]) -> None:
    """Raise ``InvalidFrameAccess`` unless every id and username is safe to write."""
    usernames: set[str] = {HUB_USERNAME}
    frame_ids: set[str] = set()
    for frame in frames:
        for what, value in (("frame_id", frame.frame_id), ("username", frame.username)):
            if not _NAME.fullmatch(value):
                raise InvalidFrameAccess(f"{what} {value!r}: use letters, digits, '.', '_', '-'")
        for album_id in frame.album_ids:
            if not _NAME.fullmatch(album_id):
                raise InvalidFrameAccess(
                    f"album id {album_id!r}: use letters, digits, '.', '_', '-'"
                )
        if not _HASH.fullmatch(frame.password_hash):
            raise InvalidFrameAccess(f"frame {frame.frame_id}: not a $7$ password hash")
        if frame.username in usernames:
            raise InvalidFrameAccess(f"username {frame.username!r} is taken")
        if frame.frame_id in frame_ids:
            raise InvalidFrameAccess(f"frame {frame.frame_id!r} is listed twice")
        usernames.add(frame.username)
        frame_ids.add(frame.frame_id)


def acl_text(
    frames: list[FrameAccess] | tuple[FrameAccess, ...], hub_username: str = HUB_USERNAME
) -> str:
    """The hub may do anything; a frame reads and writes its own tree and reads its albums."""
    lines = [f"user {hub_username}", "topic readwrite #", ""]
    for frame in frames:
        lines.append(f"user {frame.username}")
        lines.append(f"topic read frames/{frame.frame_id}/#")
        lines.append(f"topic write frames/{frame.frame_id}/#")
        lines.extend(
            f"topic read albums/{album_id}/#" for album_id in dict.fromkeys(frame.album_ids)
        )
        lines.append("")
    return "\n".join(lines)


def password_text(hub_password: str, frames: list[FrameAccess] | tuple[FrameAccess, ...]) -> str:
    """mosquitto's password file: the hub's user, then one line per frame."""
    lines = [f"{HUB_USERNAME}:{hash_password(hub_password)}\n"]
    lines.extend(f"{frame.username}:{frame.password_hash}\n" for frame in frames)
    return "".join(lines)


def _write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically with a file only this user can read (mode 0600)."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    os.replace(temporary, path)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def pick_free_port(host: str) -> int:
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def _connect_host(host: str) -> str:
    """Where to check that a listener on ``host`` accepts connections."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)


def _process_user() -> str:
    """Run as ourselves: as root, mosquitto would otherwise switch to user ``mosquitto``
    and could not read our private files."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return "root" if os.getuid() == 0 else str(os.getuid())


# -- the child process -------------------------------------------------------------------------


class _BrokerOutput:
    """Reads the broker's stderr into the hub's log; keeps the tail and notes milestones."""

    def __init__(self) -> None:
        self.tail: deque[str] = deque(maxlen=20)
        self.running = False
        self.reloads = 0
        self.closed = trio.Event()
        self._changed = trio.Event()

    def _line(self, line: str) -> None:
        line = line.rstrip()
        if not line:
            return
        self.tail.append(line)
        lowered = line.lower()
        level = logging.WARNING if lowered.startswith(("error", "warning")) else logging.INFO
        broker_log.log(level, "%s", line)
        if line.startswith("mosquitto version") and line.endswith(" running"):
            self.running = True
        elif line.startswith("Reloading config"):
            self.reloads += 1
        self._changed.set()
        self._changed = trio.Event()

    async def pump(self, stream: trio.abc.ReceiveStream) -> None:
        pending = b""
        try:
            while chunk := await stream.receive_some(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for raw in lines:
                    self._line(raw.decode(errors="replace"))
            if pending:
                self._line(pending.decode(errors="replace"))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self.closed.set()
            self._changed.set()

    async def changed(self) -> None:
        await self._changed.wait()

    def reason(self) -> str:
        errors = [line for line in self.tail if line.lower().startswith("error")]
        chosen = errors or list(self.tail)[-3:]
        return "; ".join(chosen) or "no output"


class _Broker:
    """One run of ``mosquitto -c <config>``."""

    def __init__(self, process: trio.Process, output: _BrokerOutput) -> None:
        self.process = process
        self.output = output

    async def reload(self) -> None:
        """SIGHUP and wait for mosquitto's "Reloading config." line.

        mosquitto is single-threaded and rereads the password and ACL files right after that
        line, so anything a client sends once it was written sees the new files.
        """
        if self.process.returncode is not None:
            raise BrokerDied(f"mosquitto exited ({self.process.returncode}) before a reload")
        # mosquitto 2.0 prints that line before it rereads its files and clears its reload
        # flag after: a SIGHUP arriving in between is lost. So a reload whose line does not
        # come is asked for again (a reload too many is harmless) before giving up.
        seen = self.output.reloads
        with trio.fail_after(RELOAD_TIMEOUT_S):
            while self.output.reloads <= seen:
                self.process.send_signal(signal.SIGHUP)
                with trio.move_on_after(RELOAD_RETRY_S):
                    while self.output.reloads <= seen:
                        await self.output.changed()


async def _stop_process(process: trio.Process) -> None:
    """SIGTERM (mosquitto saves its persistence file), then SIGKILL after a while."""
    with trio.CancelScope(shield=True):
        if process.returncode is None:
            process.terminate()
            with trio.move_on_after(STOP_TIMEOUT_S):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()


MAX_QUEUED_MESSAGES = 200_000
MAX_QUEUED_BYTES = 64 * 1024 * 1024
"""Per client: what the broker holds for a slow or offline subscriber before it drops."""

PID_FILE = "mosquitto.pid"
"""The managed broker's pid, next to its config: a hub killed with SIGKILL leaves its broker
running (it has a session of its own); the next start stops that orphan first."""


def _orphan_pid(config: Path) -> int | None:
    """The pid of a broker an earlier hub started on ``config`` and that still runs."""
    try:
        pid = int((config.parent / PID_FILE).read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    return pid if str(config).encode() in cmdline else None


async def _stop_orphan(config: Path) -> None:
    """SIGTERM an orphaned broker of ``config`` (it saves its persistence file: the messages
    it held for frames survive), SIGKILL it if it lingers, and wait until it is gone."""
    pid = _orphan_pid(config)
    if pid is None:
        return
    log.warning("stopping mosquitto (pid %d) left running by an earlier hub", pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = trio.current_time() + STOP_TIMEOUT_S
    while _orphan_pid(config) == pid:
        if trio.current_time() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = math.inf
        await trio.sleep(0.02)  # not our child: there is nothing to wait on but /proc


async def _accepts(host: str, port: int) -> bool:
    try:
        with trio.move_on_after(1.0):
            stream = await trio.open_tcp_stream(host, port)
            await stream.aclose()
            return True
    except OSError:
        pass
    return False


async def run_broker(
    binary: str,
    config: Path,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[_Broker] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run mosquitto until it exits (which raises) or this is cancelled (which stops it).

    Reports started once mosquitto says it is running and the port accepts a TCP connection;
    raises ``BrokerUnavailable`` (with mosquitto's own reason) if it exits or does not
    listen within ``START_TIMEOUT_S``, ``BrokerDied`` if it exits later.
    """
    await _stop_orphan(config)
    process = await trio.lowlevel.open_process(
        [binary, "-c", str(config)],
        start_new_session=True,  # a terminal's Ctrl-C is the hub's to handle, not the broker's
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    output = _BrokerOutput()
    failure: BaseException | None = None
    pid_file = config.parent / PID_FILE
    _write_private(pid_file, f"{process.pid}\n")
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(output.pump, process.stderr)
            with trio.move_on_after(START_TIMEOUT_S) as waiting:
                while process.poll() is None and not (
                    output.running and await _accepts(_connect_host(host), port)
                ):
                    with trio.move_on_after(0.05):
                        await output.changed()
            if process.returncode is not None:
                with trio.move_on_after(1.0):
                    await output.closed.wait()
                failure = BrokerUnavailable(
                    f"mosquitto exited with code {process.returncode} while starting: "
                    f"{output.reason()}"
                )
            elif waiting.cancelled_caught:
                failure = BrokerUnavailable(
                    f"mosquitto did not accept connections on {host}:{port} within "
                    f"{START_TIMEOUT_S:g} s: {output.reason()}"
                )
            else:
                log.info("mosquitto (pid %d) listening on %s:%d", process.pid, host, port)
                task_status.started(_Broker(process, output))
                code = await process.wait()
                with trio.move_on_after(1.0):
                    await output.closed.wait()
                failure = BrokerDied(f"mosquitto exited with code {code}: {output.reason()}")
            nursery.cancel_scope.cancel()
    finally:
        await _stop_process(process)
        pid_file.unlink(missing_ok=True)
    assert failure is not None
    raise failure


# -- the actor ---------------------------------------------------------------------------------


class MosquittoBroker(Actor[BrokerMessage]):
    """The managed broker: runs the managed Mosquitto broker as a child process.

    ``on_start`` writes ``<data_dir>/mosquitto/`` (config, password file, ACL, the hub's
    secret, the chosen port) and starts ``mosquitto -c mosquitto.conf`` as a service: started
    once the port accepts connections. If the process dies the actor crashes and its
    supervisor restarts it with the same port, config and persisted messages.

    Before any frame may connect, the hub's persistent session is set up (``HUB_CLIENT_ID``
    subscribed to ``HUB_SUBSCRIPTIONS``): mosquitto starts with the hub's user alone, the
    session is made, then the frames' users are written and the broker reloaded. A broker
    killed with SIGKILL loses the sessions it held in memory; without this, what frames
    published between their reconnect and the hub's (telemetry, OTA answers) would be
    acknowledged to them and delivered to nobody. With it, the broker queues it for the hub.

    ``SetFrameAccess`` rewrites the password file and ACL and reloads the running broker with
    SIGHUP (same pid; clients whose user is gone are disconnected by mosquitto). The access
    list is kept in memory only, in the ``BrokerAccess`` shared by the incarnations, and
    written again on each restart; until the device registry persists frame credentials, a
    hub restart forgets it.
    """

    def __init__(
        self, settings: MqttSettings, data_dir: Path, *, access: BrokerAccess | None = None
    ) -> None:
        self._settings = settings
        self._dir = data_dir / BROKER_DIR
        self._access = access if access is not None else BrokerAccess()
        self._port = 0
        self._hub_password = ""
        self._broker: _Broker | None = None

    @property
    def directory(self) -> Path:
        return self._dir

    async def on_start(self) -> None:
        settings = self._settings
        if settings.mode != "managed":
            raise BrokerUnavailable("MosquittoBroker runs only when [mqtt] mode is 'managed'")
        binary = find_mosquitto(settings)
        self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._port = self._choose_port()
        self._hub_password = self._hub_secret()
        self._write_access(hub_only=True)
        config = self._dir / CONFIG_FILE
        _write_private(config, self._config_text())
        self._broker = await self.context.start_service(
            run_broker, binary, config, settings.host, self._port
        )
        await self._prime_hub_session()
        self._write_access()
        await self._broker.reload()

    async def receive(self, message: BrokerMessage) -> Any:
        match message:
            case GetBrokerAddress():
                return BrokerAddress(
                    host=self._settings.host,
                    port=self._port,
                    hub_username=HUB_USERNAME,
                    hub_password=self._hub_password,
                )
            case GetBrokerProcess():
                assert self._broker is not None
                return BrokerProcess(
                    pid=self._broker.process.pid,
                    port=self._port,
                    frames=len(self._access.frames),
                )
            case SetFrameAccess(frames=frames):
                validate_access(frames)
                self._access.frames = tuple(frames)
                self._write_access()
                assert self._broker is not None
                await self._broker.reload()
                log.info("broker access updated: %d frames", len(frames))
                return None

    # -- files -----------------------------------------------------------------------------

    def _choose_port(self) -> int:
        configured = self._settings.port
        if configured:
            return configured
        remembered = self._dir / PORT_FILE
        try:
            port = int(remembered.read_text().strip())
            if 0 < port < 65536:
                return port
        except (FileNotFoundError, ValueError):
            pass
        port = pick_free_port(self._settings.host)
        temporary = remembered.with_name(PORT_FILE + ".tmp")
        temporary.write_text(f"{port}\n")
        os.replace(temporary, remembered)
        log.info("picked port %d for the broker (kept in %s)", port, remembered)
        return port

    def _hub_secret(self) -> str:
        path = self._dir / SECRET_FILE
        try:
            secret = path.read_text().strip()
        except FileNotFoundError:
            secret = ""
        if not secret:
            secret = secrets.token_urlsafe(32)
            _write_private(path, secret + "\n")
            log.info("created the hub's broker credentials in %s", path)
        else:
            os.chmod(path, 0o600)
        return secret

    async def _prime_hub_session(self) -> None:
        """Make the hub's persistent session and its subscriptions (then leave it, cleanly:
        the bridge takes it over with what was queued for it meanwhile)."""
        host, port, password = _connect_host(self._settings.host), self._port, self._hub_password

        async def prime() -> None:
            client = MqttClient(
                host,
                port,
                username=HUB_USERNAME,
                password=password,
                identifier=HUB_CLIENT_ID,
                clean_session=False,
                timeout=START_TIMEOUT_S,
            )
            async with client:
                await client.subscribe(HUB_SUBSCRIPTIONS)

        with trio.fail_after(START_TIMEOUT_S):
            await self.context.system.asyncio.run(prime)

    def _write_access(self, *, hub_only: bool = False) -> None:
        frames = () if hub_only else self._access.frames
        _write_private(self._dir / PASSWORD_FILE, password_text(self._hub_password, frames))
        _write_private(self._dir / ACL_FILE, acl_text(frames))

    def _config_text(self) -> str:
        directory = self._dir
        return "\n".join(
            [
                "# Written by framehub at every broker start; edits are overwritten.",
                f"user {_process_user()}",
                "per_listener_settings false",
                f"listener {self._port} {self._settings.host}",
                "allow_anonymous false",
                f"password_file {directory / PASSWORD_FILE}",
                f"acl_file {directory / ACL_FILE}",
                "persistence true",
                f"persistence_location {directory}/",
                # Mosquitto's default of 1,000 queued messages per client drops a burst of
                # telemetry on its way to the hub; queue by size instead (per client).
                f"max_queued_messages {MAX_QUEUED_MESSAGES}",
                f"max_queued_bytes {MAX_QUEUED_BYTES}",
                "log_dest stderr",
                "log_type error",
                "log_type warning",
                "log_type notice",
                "log_type information",
                "log_timestamp false",
                "",
            ]
        )
