"""The operator console's WebSocket server (trio-websocket).

The actor serves the protocol of ``_protocol`` on the configured host and port for as long as
it lives, one task group per connection. A connection must say ``hello`` with an admin's token
within ``hello_timeout_s``; tokens are checked by the accounts actor, except from an address
whose tokens failed too often lately (``failed_auth_per_minute``, as in the HTTP API): that
one is closed with 4429 unchecked. Commands go through the same actor messages as the HTTP
API (so the same checks and the same events; ``_commands``); fault rules are installed on the
actor system's injector.

Streams are live views, never replays: ``events`` taps the store's commit listener (the events
of each commit, as it commits), ``tree`` compares the runtime's snapshot every
``tree_interval_s`` and sends it when it changed, ``notifications`` listens to the
``NotificationFeed``. ``frames``, ``campaigns``, ``alerts`` and ``dead_letters`` ask the
actors that own them (the fleet's device views, the OTA and telemetry actors, the journal
keeper: ``ConsolePeers``) when a related commit happened (at most once per
``tree_interval_s``) and every ``refresh_interval_s``, and send the list when it changed.

Every message to a client goes through a bounded queue (``send_queue`` messages). Producers
never wait on it: when it is full the client is too slow. Then nothing more is produced, the
write in progress (if any) is left to finish, and the connection is closed with 4008. A write
is never cancelled half-way (the client would read a torn frame): a client that does not
take what is being written, or the close frame, within ``close_timeout_s`` has its TCP
connection reset instead. So a stalled console never slows the hub or the others.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import trio
import trio_websocket
from trio_websocket import ConnectionClosed, WebSocketConnection

from actors.accounts import Authenticate, Principal
from actors.errors import Unauthorized
from actors.frames import (
    DeviceView,
    ListDeviceViews,
)
from actors.http import RateLimiter, retry_after
from actors.journal import ListDeadLetters
from actors.notifier import NotificationFeed
from actors.ota import (
    ListCampaigns,
)
from actors.store import Entry
from actors.telemetry import (
    ListAlerts,
)
from config import ConsoleSettings
from supervision import Actor, ActorNotFound, DomainError, Request

from ._commands import ConsolePeers, carry_out
from ._protocol import (
    CLOSE_BAD_REQUEST,
    CLOSE_FORBIDDEN,
    CLOSE_HELLO_TIMEOUT,
    CLOSE_TOO_MANY_FAILURES,
    CLOSE_TOO_SLOW,
    CLOSE_UNAUTHORIZED,
    PROTOCOL_VERSION,
    AlertsMessage,
    CampaignsMessage,
    ClientMessage,
    Command,
    DeadLettersMessage,
    ErrorMessage,
    EventFilter,
    EventMessage,
    FramesMessage,
    FrameState,
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

CAMPAIGNS_SHOWN = 100
"""The ``campaigns`` stream lists this many of the newest campaigns."""
ALERTS_SHOWN = 200
"""The ``alerts`` stream lists at most this many active and as many acknowledged alerts."""
DEAD_LETTERS_SHOWN = 500
"""The ``dead_letters`` stream lists at most this many (the newest)."""
_SNAPSHOT_STREAMS: dict[Stream, tuple[str, ...]] = {
    "frames": ("device.", "frame.", "update."),
    "campaigns": ("campaign.", "update.", "rollback."),
    "alerts": ("alert.",),
    "dead_letters": ("",),
}
"""The snapshot streams and the event name prefixes that make them look again. Parking a
dead letter publishes nothing: ``""`` matches every commit, events or not."""

_decode_client = msgspec.json.Decoder(ClientMessage).decode
_encode = msgspec.json.Encoder().encode
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST, drops unsent bytes


class GetConsoleAddress(Request["ConsoleAddress"], frozen=True):
    """Where the console listens; answers ``ConsoleAddress``."""


class ConsoleAddress(msgspec.Struct, frozen=True, kw_only=True):
    """The bound address (``port`` is the real one when 0 was configured)."""

    host: str
    port: int
    url: str


class GetConsoleStats(Request["ConsoleStats"], frozen=True):
    """Answers ``ConsoleStats``."""


class ConsoleStats(msgspec.Struct, frozen=True, kw_only=True):
    connections: int
    """Consoles connected (past ``hello``) right now."""
    slow_disconnects: int
    """Connections found too slow (and so closed with 4008) since this incarnation started."""
    refused: int
    """Connections closed before ``welcome`` (bad version, token, role or timeout)."""
    resets: int
    """Connections reset because the client did not take its data or close frame in time."""


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
        peers: ConsolePeers,
        failed_auth_per_minute: int = 30,
    ) -> None:
        self._settings = settings
        self._failures = RateLimiter(failed_auth_per_minute)
        self._listeners = store_listeners
        self._notifications = notifications
        self._peers = peers
        self._address: ConsoleAddress | None = None
        self._connections = 0
        self._slow = 0
        self._refused = 0
        self._resets = 0

    async def on_start(self) -> None:
        settings = self._settings
        port: int = await self.context.start_service(self._serve, settings.host, settings.port)
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
                    resets=self._resets,
                )

    async def _serve(
        self, host: str, port: int, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        listeners = await trio.open_tcp_listeners(port, host=host)
        bound = int(listeners[0].socket.getsockname()[1])
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._connection, listeners)
            task_status.started(bound)

    async def _connection(self, stream: trio.SocketStream) -> None:
        """One TCP connection: the WebSocket handshake, ``hello``, the session, the close.
        Whatever goes wrong ends this connection only, never the server and the others."""
        try:
            async with trio.open_nursery() as nursery:  # trio-websocket's reader task
                ws: WebSocketConnection | None = None
                try:
                    with trio.move_on_after(self._settings.hello_timeout_s):
                        request = await trio_websocket.wrap_server_stream(nursery, stream)
                        ws = await request.accept()
                    if ws is not None:  # else no WebSocket handshake in time
                        await self._handle(ws, stream)
                except ConnectionClosed:
                    pass
                finally:
                    if ws is not None:
                        await self._close(ws, stream, 1000, None)
                    await _reset(stream)
                    nursery.cancel_scope.cancel()
        except Exception:
            log.exception("console connection failed")

    async def _close(
        self, ws: WebSocketConnection, stream: trio.SocketStream, code: int, reason: str | None
    ) -> None:
        """Close with ``code``; never cancel the write of a frame half-way: if the client
        does not take it within ``close_timeout_s``, reset the connection instead."""
        if ws.closed is not None:
            return
        async with trio.open_nursery() as guard:

            async def reset_when_late() -> None:
                await trio.sleep(self._settings.close_timeout_s)
                self._resets += 1
                log.info("console client did not take its close frame; connection reset")
                await _reset(stream)

            guard.start_soon(reset_when_late)
            with contextlib.suppress(ConnectionClosed):
                await ws.aclose(code, reason)
            guard.cancel_scope.cancel()

    async def _handle(self, ws: WebSocketConnection, stream: trio.SocketStream) -> None:
        try:
            principal = await self._hello(ws, _peer(stream))
        except _Refused as refused:
            self._refused += 1
            await self._close(ws, stream, refused.code, refused.reason)
            return
        self._connections += 1
        try:
            session = _Session(self, ws, stream, principal)
            await session.run()
        finally:
            self._connections -= 1

    async def _hello(self, ws: WebSocketConnection, client: str) -> Principal:
        timeout = self._settings.hello_timeout_s
        with trio.move_on_after(timeout) as waiting:
            principal = await self._check_hello(await ws.get_message(), client)
        if waiting.cancelled_caught:
            raise _Refused(CLOSE_HELLO_TIMEOUT, f"no hello within {timeout:g} s")
        welcome = Welcome(version=PROTOCOL_VERSION, user_id=principal.id, name=principal.name)
        await ws.send_message(_encode(welcome).decode())
        return principal

    async def _check_hello(self, raw: str | bytes, client: str) -> Principal:
        try:
            message = _decode_client(raw)
        except (msgspec.DecodeError, RecursionError) as error:
            # RecursionError: nested deeper than the decoder goes (in an unknown field).
            raise _Refused(CLOSE_BAD_REQUEST, f"the first message must be hello: {error}") from None
        if not isinstance(message, Hello):
            raise _Refused(CLOSE_BAD_REQUEST, "the first message must be hello")
        if message.version != PROTOCOL_VERSION:
            raise _Refused(
                CLOSE_BAD_REQUEST,
                f"unsupported protocol version {message.version} "
                f"(this server speaks {PROTOCOL_VERSION})",
            )
        wait = self._failures.wait_time(client)
        if wait > 0:
            raise _Refused(
                CLOSE_TOO_MANY_FAILURES,
                f"too many failed tokens from this address; retry in {retry_after(wait)} s",
            )
        try:
            principal = await self._peers.accounts.ask(Authenticate(token=message.token))
        except Unauthorized:
            self._failures.take(client)
            raise _Refused(CLOSE_UNAUTHORIZED, "invalid token") from None
        if principal.kind != "user" or not principal.admin:
            raise _Refused(CLOSE_FORBIDDEN, "the console is for admins only")
        return principal


def _peer(stream: trio.SocketStream) -> str:
    """The client's address (its host, without the port): what failed tokens count against."""
    try:
        return str(stream.socket.getpeername()[0])
    except OSError:
        return "unknown"


async def _reset(stream: trio.SocketStream) -> None:
    """Drop the TCP connection at once (RST): nothing queued or half-written goes out, and a
    task blocked writing to it is woken with an error."""
    with contextlib.suppress(OSError):
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
    await trio.aclose_forcefully(stream)


def _frame_state(view: DeviceView) -> FrameState:
    return FrameState(
        frame_id=view.device_id,
        name=view.name,
        model=view.model,
        online=view.online,
        current_file_id=view.current_file_id,
        firmware_version=view.firmware_version,
        health_score=view.health_score,
        last_seen=view.last_seen,
    )


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

    def __init__(
        self,
        console: Console,
        ws: WebSocketConnection,
        stream: trio.SocketStream,
        principal: Principal,
    ) -> None:
        self.console = console
        self.settings = console._settings
        self.ws = ws
        self.stream = stream
        self.principal = principal
        self.system = console.context.system
        self.peers = console._peers
        self.too_slow = False
        self._send, self._queue = trio.open_memory_channel[ServerMessage](self.settings.send_queue)
        self._streams: dict[Stream, trio.CancelScope] = {}
        self._tap: Any = None
        self._watch: Any = None
        self._dirty: dict[Stream, trio.Event] = {}
        self._work: trio.Nursery | None = None
        self._sender_done = trio.Event()

    def post(self, message: ServerMessage) -> None:
        """Queue ``message`` without waiting; a full queue ends the session (4008)."""
        if self.too_slow:
            return
        try:
            self._send.send_nowait(message)
        except trio.WouldBlock:
            self.too_slow = True
            self.console._slow += 1
            log.info(
                "console %s too slow (%d messages unsent); closing",
                self.principal.name,
                self.settings.send_queue,
            )
            self._send.close()
            # The taps stay listed until ``run`` ends: this may run inside the store's loop
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
                # The sender finishes the message it is writing (if the client takes it)...
                async with trio.open_nursery() as guard:

                    async def reset_when_late() -> None:
                        await trio.sleep(self.settings.close_timeout_s)
                        self.console._resets += 1
                        log.info("console %s stalled; connection reset", self.principal.name)
                        await _reset(self.stream)

                    guard.start_soon(reset_when_late)
                    await self._sender_done.wait()
                    guard.cancel_scope.cancel()
                # ... then the close frame follows it, whole.
                await self.console._close(
                    self.ws,
                    self.stream,
                    CLOSE_TOO_SLOW,
                    f"too slow: more than {self.settings.send_queue} messages unsent",
                )
                connection.cancel_scope.cancel()
        finally:
            self._stop_tap()
            self._stop_watch()
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
        except (msgspec.DecodeError, RecursionError) as error:
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
        elif stream == "notifications":
            self._work.start_soon(self._notifications_stream, scope)
        else:
            self._dirty[stream] = trio.Event()
            self._start_watch()
            self._work.start_soon(self._snapshots, stream, scope)

    def _stop(self, stream: Stream) -> None:
        if stream == "events":
            self._stop_tap()
        scope = self._streams.pop(stream, None)
        if scope is not None:
            scope.cancel()
        self._dirty.pop(stream, None)

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

    def _start_watch(self) -> None:
        """One commit listener for the snapshot streams: it marks the ones a commit concerns."""
        if self._watch is not None:
            return

        def watch(entries: list[Entry]) -> None:
            names = [entry.event.event_name for entry in entries]
            for stream, dirty in self._dirty.items():
                prefixes = _SNAPSHOT_STREAMS[stream]
                if "" in prefixes or any(n.startswith(prefixes) for n in names):
                    dirty.set()

        self._watch = watch
        self.console._listeners.append(watch)

    def _stop_watch(self) -> None:
        if self._watch is not None:
            with contextlib.suppress(ValueError):
                self.console._listeners.remove(self._watch)
            self._watch = None

    async def _tree(self, scope: trio.CancelScope) -> None:
        with scope:
            last = None
            while True:
                snapshot = self.system.snapshot()
                if snapshot != last:
                    last = snapshot
                    self.post(TreeMessage(root=snapshot))
                await trio.sleep(self.settings.tree_interval_s)

    async def _notifications_stream(self, scope: trio.CancelScope) -> None:
        with scope:
            while True:  # the feed cuts a subscriber off only if this task fell behind
                with self.console._notifications.subscribe(self.settings.send_queue) as feed:
                    async for notification in feed:
                        self.post(NotificationMessage(notification=notification))

    async def _snapshots(self, stream: Stream, scope: trio.CancelScope) -> None:
        """Send ``stream``'s list at once, then whenever it changed."""
        load: Callable[[], Awaitable[ServerMessage]] = getattr(self, f"_load_{stream}")
        with scope:
            last: ServerMessage | None = None
            while True:
                self._dirty[stream] = trio.Event()
                try:
                    current = await load()
                except Exception as error:  # its actor is restarting: try again later
                    log.debug("console stream %s: %r", stream, error)
                else:
                    if current != last:
                        last = current
                        self.post(current)
                with trio.move_on_after(self.settings.refresh_interval_s):
                    await self._dirty[stream].wait()
                    await trio.sleep(self.settings.tree_interval_s)  # let a burst settle

    async def _load_frames(self) -> FramesMessage:
        views = await self.peers.fleet.ask(ListDeviceViews())
        return FramesMessage(frames=[_frame_state(view) for view in views.items])

    async def _load_campaigns(self) -> CampaignsMessage:
        page = await self.peers.ota.ask(ListCampaigns(limit=CAMPAIGNS_SHOWN))
        return CampaignsMessage(campaigns=page.items)

    async def _load_alerts(self) -> AlertsMessage:
        telemetry = self.peers.telemetry
        active = await telemetry.ask(ListAlerts(state="active", limit=ALERTS_SHOWN))
        acknowledged = await telemetry.ask(ListAlerts(state="acknowledged", limit=ALERTS_SHOWN))
        alerts = sorted(
            active.items + acknowledged.items, key=lambda a: a.triggered_at, reverse=True
        )
        return AlertsMessage(alerts=alerts)

    async def _load_dead_letters(self) -> DeadLettersMessage:
        letters = await self.peers.journal.ask(ListDeadLetters())
        return DeadLettersMessage(dead_letters=letters[-DEAD_LETTERS_SHOWN:])

    # -- commands --------------------------------------------------------------------------------

    async def _command(self, command: Command) -> None:
        try:
            result = await carry_out(command, self.principal, self.peers, self.system.faults)
        except (DomainError, ValueError) as error:
            self.post(Reply(id=command.id, ok=False, error=str(error) or type(error).__name__))
        except ActorNotFound as error:
            self.post(Reply(id=command.id, ok=False, error=f"no such actor: {error}"))
        except Exception as error:  # an actor crashed or timed out: tell, stay up
            log.warning("console command %s failed: %r", command.action, error)
            self.post(Reply(id=command.id, ok=False, error=f"{type(error).__name__}: {error}"))
        else:
            self.post(Reply(id=command.id, ok=True, result=msgspec.Raw(_encode(result))))
