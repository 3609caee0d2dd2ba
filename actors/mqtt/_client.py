"""``MqttClient``: aiomqtt's client, made safe for a socket that closes under it.

paho-mqtt asks aiomqtt to watch its socket for writability from whatever thread it runs on,
so aiomqtt schedules ``add_writer`` with ``call_soon_threadsafe``. When the broker drops the
connection in between (a deleted frame kicked off, the broker killed), the callback runs
with the number of a socket that is already closed. Plain asyncio's selector refuses that
with an error the loop logs and forgets; trio-asyncio's loop turns it into a task waiting on
a closed descriptor, whose ``EBADF`` would tear down the whole Trio run. So: register only a
socket that is still the one paho asked about, and unregister it when it closes.
"""

from __future__ import annotations

from typing import Any

import aiomqtt
from paho.mqtt.client import Client as PahoClient


class MqttClient(aiomqtt.Client):
    """``aiomqtt.Client`` with socket watching that tolerates a socket closed meanwhile, and
    whose lost connection's error, already raised to the reader, is not reported again as
    "never retrieved" when the client is left."""

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
