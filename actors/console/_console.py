"""``/edge/console``: the operator console's WebSocket server (trio-websocket).

The actor serves the protocol of ``_protocol`` on the configured host and port for as long as
it lives, one task group per connection. A connection must say ``hello`` with an admin's token
within ``hello_timeout_s``; tokens are checked by ``/domain/accounts``. Commands go through the
same actor messages as the HTTP API (so the same checks and the same events); fault rules are
installed on the actor system's injector.

Streams are live views, never replays: ``events`` taps the store's commit listener (the events
of each commit, as it commits), ``tree`` compares the runtime's snapshot a few times a second
and sends it when it changed, ``notifications`` listens to the ``NotificationFeed``.

Every message to a client goes through a bounded queue (``send_queue`` messages). Producers
never wait on it: when it is full the client is too slow, and the connection is closed with
4008 (after the message being written, if the client ever takes it; else the socket is
dropped after ``close_timeout_s``). So a stalled console never slows the hub or the others.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, TypeVar

import msgspec
import trio
import trio_websocket
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest

from actors.accounts import ACCOUNTS_PATH, Authenticate, Principal
from actors.devices import DEVICES_PATH, GetDevice
from actors.errors import Unauthorized
from actors.events import new_id
from actors.frames import FRAMES_PATH, SendCommand
from actors.journal import ReplayDeadLetter
from actors.notifier import NotificationFeed
from actors.ota import (
    OTA_PATH,
    CampaignAction,
    CancelCampaign,
    PauseCampaign,
    ResumeCampaign,
    RetryFailed,
    RollbackCampaign,
    StartCampaign,
)
from actors.store import Entry
from actors.telemetry import TELEMETRY_PATH, AcknowledgeAlert, ResolveAlert
from config import ConsoleSettings
from supervision import Actor, ActorNotFound, DomainError

from ._protocol import (
    CLOSE_BAD_REQUEST,
    CLOSE_FORBIDDEN,
    CLOSE_HELLO_TIMEOUT,
    CLOSE_TOO_SLOW,
    CLOSE_UNAUTHORIZED,
    PROTOCOL_VERSION,
    ClientMessage,
    Command,
    ErrorMessage,
    EventFilter,
    EventMessage,
    FaultInstalled,
    FaultRemoved,
    Hello,
    NotificationMessage,
    Reply,
    ServerMessage,
    Stream,
    Subscribe,
    TreeMessage,
    Unsubscribe,
    Welcome,
)

log = logging.getLogger("framehub.console")
_T = TypeVar("_T")

CONSOLE_PATH = "/edge/console"
JOURNAL_KEEPER_PATH = "/infra/journal"

_CAMPAIGN_ACTIONS: dict[str, type[CampaignAction]] = {
    "campaign.start": StartCampaign,
    "campaign.pause": PauseCampaign,
    "campaign.resume": ResumeCampaign,
    "campaign.cancel": CancelCampaign,
    "campaign.rollback": RollbackCampaign,
    "campaign.retry-failed": RetryFailed,
}

_decode_client = msgspec.json.Decoder(ClientMessage).decode
_encode = msgspec.json.Encoder().encode


class GetConsoleAddress(msgspec.Struct, frozen=True):
    """Where the console listens; answers ``ConsoleAddress``."""


class ConsoleAddress(msgspec.Struct, frozen=True, kw_only=True):
    """The bound address (``port`` is the real one when 0 was configured)."""

    host: str
    port: int
    url: str


class GetConsoleStats(msgspec.Struct, frozen=True):
    """Answers ``ConsoleStats``."""


class ConsoleStats(msgspec.Struct, frozen=True, kw_only=True):
    connections: int
    """Consoles connected (past ``hello``) right now."""
    slow_disconnects: int
    """Connections closed with 4008 since this incarnation started."""
    refused: int
    """Connections closed before ``welcome`` (bad version, token, role or timeout)."""


ConsoleMessage = GetConsoleAddress | GetConsoleStats


class _Refused(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Console(Actor[ConsoleMessage]):
    """Serves the console protocol; see the module docstring."""

    def __init__(
        self,
        settings: ConsoleSettings,
        *,
        store_listeners: list[Any],
        notifications: NotificationFeed,
        accounts_path: str = ACCOUNTS_PATH,
        hello_timeout_s: float = 5.0,
        send_queue: int = 256,
        tree_interval_s: float = 0.25,
        close_timeout_s: float = 5.0,
    ) -> None:
        self._settings = settings
        self._listeners = store_listeners
        self._notifications = notifications
        self._accounts_path = accounts_path
        self._hello_timeout_s = hello_timeout_s
        self._send_queue = send_queue
        self._tree_interval_s = tree_interval_s
        self._close_timeout_s = close_timeout_s
        self._address: ConsoleAddress | None = None
        self._connections = 0
        self._slow = 0
        self._refused = 0

    async def on_start(self) -> None:
        settings = self._settings
        server: trio_websocket.WebSocketServer = await self.context.start_service(
            self._serve, settings.host, settings.port
        )
        port = server.port
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        self._address = ConsoleAddress(host=settings.host, port=port, url=f"ws://{host}:{port}/")
        log.info("console listening on %s", self._address.url)

    async def receive(self, message: ConsoleMessage) -> ConsoleAddress | ConsoleStats:
        match message:
            case GetConsoleAddress():
                assert self._address is not None
                return self._address
            case GetConsoleStats():
                return ConsoleStats(
                    connections=self._connections,
                    slow_disconnects=self._slow,
                    refused=self._refused,
                )

    async def _serve(
        self,
        host: str,
        port: int,
        task_status: trio.TaskStatus[trio_websocket.WebSocketServer] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        await trio_websocket.serve_websocket(
            self._handle,
            host,
            port,
            ssl_context=None,
            disconnect_timeout=self._close_timeout_s,
            task_status=task_status,
        )

    async def _handle(self, request: WebSocketRequest) -> None:
        ws = await request.accept()
        try:
            principal = await self._hello(ws)
        except _Refused as refused:
            self._refused += 1
            with trio.move_on_after(self._close_timeout_s):
                await ws.aclose(refused.code, refused.reason)
            return
        except ConnectionClosed:
            return
        self._connections += 1
        try:
            session = _Session(self, ws, principal)
            await session.run()
            if session.too_slow:
                self._slow += 1
        finally:
            self._connections -= 1

    async def _hello(self, ws: WebSocketConnection) -> Principal:
        with trio.move_on_after(self._hello_timeout_s) as waiting:
            principal = await self._check_hello(await ws.get_message())
        if waiting.cancelled_caught:
            raise _Refused(CLOSE_HELLO_TIMEOUT, f"no hello within {self._hello_timeout_s:g} s")
        welcome = Welcome(version=PROTOCOL_VERSION, user_id=principal.id, name=principal.name)
        await ws.send_message(_encode(welcome).decode())
        return principal

    async def _check_hello(self, raw: str | bytes) -> Principal:
        try:
            message = _decode_client(raw)
        except msgspec.DecodeError as error:
            raise _Refused(CLOSE_BAD_REQUEST, f"the first message must be hello: {error}") from None
        if not isinstance(message, Hello):
            raise _Refused(CLOSE_BAD_REQUEST, "the first message must be hello")
        if message.version != PROTOCOL_VERSION:
            raise _Refused(
                CLOSE_BAD_REQUEST,
                f"unsupported protocol version {message.version} "
                f"(this server speaks {PROTOCOL_VERSION})",
            )
        try:
            principal: Principal = await self.context.system.lookup(self._accounts_path).ask(
                Authenticate(token=message.token)
            )
        except Unauthorized:
            raise _Refused(CLOSE_UNAUTHORIZED, "invalid token") from None
        if principal.kind != "user" or not principal.admin:
            raise _Refused(CLOSE_FORBIDDEN, "the console is for admins only")
        return principal


def _event_matches(entry: Entry, name: str, wanted: EventFilter) -> bool:
    if wanted.name_prefix is not None and not name.startswith(wanted.name_prefix):
        return False
    event = entry.event
    if wanted.correlation_id is not None and event.correlation_id != wanted.correlation_id:
        return False
    if wanted.frame_id is not None:
        subject = getattr(event, "frame_id", None) or getattr(event, "device_id", None)
        if subject != wanted.frame_id:
            return False
    return True


class _Session:
    """One authenticated connection: its send queue, its streams, its commands."""

    def __init__(self, console: Console, ws: WebSocketConnection, principal: Principal) -> None:
        self.console = console
        self.ws = ws
        self.principal = principal
        self.system = console.context.system
        self.too_slow = False
        self._send, self._queue = trio.open_memory_channel[ServerMessage](console._send_queue)
        self._streams: dict[Stream, trio.CancelScope] = {}
        self._tap: Any = None
        self._work: trio.Nursery | None = None
        self._sender_done = trio.Event()

    def post(self, message: ServerMessage) -> None:
        """Queue ``message`` without waiting; a full queue closes the connection (4008)."""
        if self.too_slow:
            return
        try:
            self._send.send_nowait(message)
        except trio.WouldBlock:
            self.too_slow = True
            self._send.close()
            # The tap stays listed until ``run`` ends: this may run inside the store's loop
            # over its commit listeners, which must not change under it.
            if self._work is not None:
                self._work.cancel_scope.cancel()
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    async def run(self) -> None:
        try:
            async with trio.open_nursery() as connection:
                connection.start_soon(self._sender, connection.cancel_scope)
                async with trio.open_nursery() as work:
                    self._work = work
                    work.start_soon(self._reader, connection.cancel_scope)
                # Here only when the client was too slow: the reader never returns otherwise.
                with trio.move_on_after(self.console._close_timeout_s):
                    await self._sender_done.wait()
                    await self.ws.aclose(
                        CLOSE_TOO_SLOW,
                        f"too slow: more than {self.console._send_queue} messages unsent",
                    )
                connection.cancel_scope.cancel()
        finally:
            self._stop_tap()
            self._send.close()

    async def _sender(self, connection: trio.CancelScope) -> None:
        try:
            async for message in self._queue:
                if self.too_slow:
                    break
                await self.ws.send_message(_encode(message).decode())
        except ConnectionClosed:
            connection.cancel()
        finally:
            self._sender_done.set()

    async def _reader(self, connection: trio.CancelScope) -> None:
        try:
            while True:
                raw = await self.ws.get_message()
                await self._on_message(raw)
        except ConnectionClosed:
            connection.cancel()

    async def _on_message(self, raw: str | bytes) -> None:
        try:
            message = _decode_client(raw)
        except msgspec.DecodeError as error:
            self.post(ErrorMessage(message=f"unreadable message: {error}"))
            return
        match message:
            case Hello():
                self.post(ErrorMessage(message="already greeted"))
            case Subscribe(streams=streams, event_filter=event_filter):
                for stream in dict.fromkeys(streams):
                    self._start(stream, event_filter)
            case Unsubscribe(streams=streams):
                for stream in streams:
                    self._stop(stream)
            case Command():
                assert self._work is not None
                self._work.start_soon(self._command, message)

    # -- streams ---------------------------------------------------------------------------------

    def _start(self, stream: Stream, event_filter: EventFilter) -> None:
        self._stop(stream)
        assert self._work is not None
        if stream == "events":
            self._start_tap(event_filter)
            return
        scope = trio.CancelScope()
        self._streams[stream] = scope
        if stream == "tree":
            self._work.start_soon(self._tree, scope)
        else:
            self._work.start_soon(self._notifications, scope)

    def _stop(self, stream: Stream) -> None:
        if stream == "events":
            self._stop_tap()
        scope = self._streams.pop(stream, None)
        if scope is not None:
            scope.cancel()

    def _start_tap(self, wanted: EventFilter) -> None:
        def tap(entries: list[Entry]) -> None:
            for entry in entries:
                name = entry.event.event_name
                if _event_matches(entry, name, wanted):
                    self.post(EventMessage(seq=entry.seq, name=name, event=entry.event))  # type: ignore[arg-type]

        self._tap = tap
        self.console._listeners.append(tap)

    def _stop_tap(self) -> None:
        if self._tap is not None:
            with contextlib.suppress(ValueError):
                self.console._listeners.remove(self._tap)
            self._tap = None

    async def _tree(self, scope: trio.CancelScope) -> None:
        with scope:
            last = None
            while True:
                snapshot = self.system.snapshot()
                if snapshot != last:
                    last = snapshot
                    self.post(TreeMessage(root=snapshot))
                await trio.sleep(self.console._tree_interval_s)

    async def _notifications(self, scope: trio.CancelScope) -> None:
        with scope:
            while True:  # the feed cuts a subscriber off only if this task fell behind
                with self.console._notifications.subscribe(self.console._send_queue) as feed:
                    async for notification in feed:
                        self.post(NotificationMessage(notification=notification))

    # -- commands --------------------------------------------------------------------------------

    async def _command(self, command: Command) -> None:
        try:
            result = await self._act(command)
        except (DomainError, ValueError) as error:
            self.post(Reply(id=command.id, ok=False, error=str(error) or type(error).__name__))
        except ActorNotFound as error:
            self.post(Reply(id=command.id, ok=False, error=f"no such actor: {error}"))
        except Exception as error:  # an actor crashed or timed out: tell, stay up
            log.warning("console command %s failed: %r", command.action, error)
            self.post(Reply(id=command.id, ok=False, error=f"{type(error).__name__}: {error}"))
        else:
            self.post(Reply(id=command.id, ok=True, result=msgspec.Raw(_encode(result))))

    async def _ask(self, path: str, message: object) -> Any:
        return await self.system.lookup(path).ask(message)

    async def _act(self, command: Command) -> Any:
        action = command.action
        user_id = self.principal.id
        correlation_id = new_id()
        if action.startswith("frame."):
            frame_id = _required(command.frame_id, "frame_id")
            await self._ask(DEVICES_PATH, GetDevice(device_id=frame_id))  # NotFound if unknown
            return await self._ask(
                f"{FRAMES_PATH}/{frame_id}",
                SendCommand(
                    command=action.removeprefix("frame."),
                    file_id=command.file_id,
                    user_id=user_id,
                    correlation_id=correlation_id,
                ),
            )
        if action in _CAMPAIGN_ACTIONS:
            kind = _CAMPAIGN_ACTIONS[action]
            return await self._ask(
                OTA_PATH,
                kind(
                    campaign_id=_required(command.campaign_id, "campaign_id"),
                    user_id=user_id,
                    correlation_id=correlation_id,
                ),
            )
        if action == "alert.acknowledge":
            return await self._ask(
                TELEMETRY_PATH,
                AcknowledgeAlert(
                    alert_id=_required(command.alert_id, "alert_id"),
                    user_id=user_id,
                    correlation_id=correlation_id,
                ),
            )
        if action == "alert.resolve":
            return await self._ask(
                TELEMETRY_PATH,
                ResolveAlert(
                    alert_id=_required(command.alert_id, "alert_id"),
                    note=command.note,
                    user_id=user_id,
                    correlation_id=correlation_id,
                ),
            )
        if action == "fault.inject":
            rule = _required(command.fault, "fault")
            rule_id = self.system.faults.install(rule)
            log.warning("console %s injected fault %d: %r", self.principal.name, rule_id, rule)
            return FaultInstalled(rule_id=rule_id)
        if action == "fault.remove":
            rule_id = _required(command.rule_id, "rule_id")
            if not self.system.faults.remove(rule_id):
                raise ValueError(f"no fault rule {rule_id}")
            return FaultRemoved(rule_id=rule_id)
        # dead-letter.replay: the only action left
        return await self._ask(
            JOURNAL_KEEPER_PATH,
            ReplayDeadLetter(letter_id=_required(command.letter_id, "letter_id")),
        )


def _required(value: _T | None, name: str) -> _T:
    if value is None:
        raise ValueError(f"this action needs {name}")
    return value
