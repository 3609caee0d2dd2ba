"""A free TCP port on loopback, for servers whose port must be known before they start."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nobody listens on now; the OS may hand it out again, so use it soon."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
