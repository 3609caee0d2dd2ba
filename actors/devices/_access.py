"""What the broker must know of each paired frame: its MQTT user, password hash and albums."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Awaitable, Callable

import msgspec

PBKDF2_ITERATIONS = 101
"""mosquitto_passwd's default for the ``$7$`` (PBKDF2-SHA512) format."""


class FrameAccess(msgspec.Struct, frozen=True, kw_only=True):
    """One frame's MQTT user and the albums it may read.

    ``password_hash`` is the ``$7$`` hash of its password (``hash_password``): the plain
    password is shown once at pairing and never stored.
    """

    frame_id: str
    username: str
    password_hash: str
    album_ids: list[str] = msgspec.field(default_factory=list)


FrameAccessSink = Callable[[list[FrameAccess]], Awaitable[None]]
"""Where the registry sends the whole list of frames allowed on the broker after each change
(the managed broker reloads its password file and ACL; with an external broker, nowhere)."""


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """mosquitto's ``$7$`` password hash: PBKDF2-HMAC-SHA512, 12-byte salt, 64-byte key.

    The same string ``mosquitto_passwd`` writes (``$7$<iterations>$<b64 salt>$<b64 key>``);
    computed here so that passwords never appear on a command line.
    """
    salt = secrets.token_bytes(12) if salt is None else salt
    key = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS, 64)
    encoded_salt = base64.b64encode(salt).decode()
    return f"$7${PBKDF2_ITERATIONS}${encoded_salt}${base64.b64encode(key).decode()}"
