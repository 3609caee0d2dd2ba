"""``MqttClient``: aiomqtt's client, made safe for a socket that closes under it.

paho-mqtt asks aiomqtt to watch its socket for writability from whatever thread it runs on,
so aiomqtt schedules ``add_writer`` with ``call_soon_threadsafe``. When the broker drops the
connection in between (a deleted frame kicked off, the broker killed), the callback runs
with the number of a socket that is already closed. Plain asyncio's selector refuses that
with an error the loop logs and forgets; trio-asyncio's loop turns it into a task waiting on
a closed descriptor, whose ``EBADF`` would tear down the whole Trio run. So: register only a
socket that is still the one paho asked about, and unregister it when it closes.

With an ``inbox`` (a deque the caller owns), received messages are appended there instead of
aiomqtt's queue, and ``wait_inbox`` waits for one without taking it. paho acknowledges a QoS 1
message (PUBACK) as soon as it has read it, so the broker forgets it: it must never be lost
after that. aiomqtt's iterator can: on a lost connection it raises while messages are still
queued, and a message it took off the queue is gone when the caller is cancelled before it
gets it. The caller of ``wait_inbox`` takes messages off the deque itself, synchronously, and
whatever it has not taken yet is still there after a disconnect or a cancellation (or when
the caller stops and hands the rest over).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import aiomqtt
from paho.mqtt.client import Client as PahoClient
from paho.mqtt.client import MQTTMessage


class MqttClient(aiomqtt.Client):
    """``aiomqtt.Client`` with socket watching that tolerates a socket closed meanwhile, and
    whose lost connection's error, already raised to the reader, is not reported again as
    "never retrieved" when the client is left; see the module's docstring for ``inbox``."""

    def __init__(self, *args: Any, inbox: deque[aiomqtt.Message] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._inbox = inbox
        self._arrived = asyncio.Event()

    def _on_message(self, client: PahoClient, userdata: Any, message: MQTTMessage) -> None:
        if self._inbox is None:
            super()._on_message(client, userdata, message)
            return
        self._inbox.append(aiomqtt.Message._from_paho_message(message))
        self._arrived.set()

    async def wait_inbox(self) -> None:
        """Return once the inbox holds a message; raise ``MqttError`` once the connection is
        lost and the inbox is empty (everything received before the loss is taken first)."""
        inbox = self._inbox
        assert inbox is not None, "MqttClient made without an inbox"
        while not inbox:
            disconnected = self._disconnected
            if disconnected.done():
                cause = None if disconnected.cancelled() else disconnected.exception()
                raise aiomqtt.MqttError("Disconnected during message iteration") from cause
            self._arrived.clear()
            arrived = asyncio.ensure_future(self._arrived.wait())
            try:
                await asyncio.wait((arrived, disconnected), return_when=asyncio.FIRST_COMPLETED)
            finally:
                arrived.cancel()

    async def __aenter__(self) -> MqttClient:
        await super().__aenter__()
        # The loss is reported to whoever reads (``wait_inbox``, the message iterator, a
        # pending call); a connection lost while nobody waits on it is no error to log.
        self._disconnected.add_done_callback(_seen)
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        disconnected = self._disconnected
        if disconnected.done() and not disconnected.cancelled():
            disconnected.exception()  # seen: the message iterator raised it already
        await super().__aexit__(*exc_info)

    def _on_socket_register_write(self, client: PahoClient, userdata: Any, sock: Any) -> None:
        fileno = sock.fileno()

        def write() -> None:
            try:
                client.loop_write()
            except Exception as error:
                if not self._disconnected.done():
                    self._disconnected.set_exception(error)

        def register() -> None:
            if fileno > -1 and sock.fileno() == fileno:
                self._loop.add_writer(fileno, write)

        self._loop.call_soon_threadsafe(register)

    def _on_socket_unregister_write(self, client: PahoClient, userdata: Any, sock: Any) -> None:
        fileno = sock.fileno()
        if fileno > -1:
            self._loop.remove_writer(fileno)

    def _on_socket_close(self, client: PahoClient, userdata: Any, sock: Any) -> None:
        fileno = sock.fileno()
        if fileno > -1:
            self._loop.remove_writer(fileno)
        super()._on_socket_close(client, userdata, sock)


def _seen(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()
