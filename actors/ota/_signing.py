"""The hub's Ed25519 key for signing firmware commands.

Generated on first start and kept in the data directory (``ota-signing-key.pem``, PKCS#8,
readable only by the hub's user). Frames get the public key (raw 32 bytes, base64) at
pairing and refuse firmware commands that do not verify against it.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import wire

SIGNING_KEY_FILE = "ota-signing-key.pem"


class SigningKeyError(Exception):
    """The key file exists but cannot be used (unreadable, not an Ed25519 key)."""


class SigningKey:
    """Signs firmware commands (``wire.signed_command_bytes``)."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        raw = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.public_key = base64.b64encode(raw).decode()
        """The public key as frames get it: the raw 32 bytes, base64."""

    def __repr__(self) -> str:
        return f"SigningKey(public_key={self.public_key!r})"

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    def sign(self, frame_id: str, command_id: str, command: str, args: wire.CommandArgs) -> str:
        """The base64 signature of a firmware command, for ``args.signature``."""
        message = wire.signed_command_bytes(frame_id, command_id, command, args)
        return base64.b64encode(self._key.sign(message)).decode()


def load_signing_key(data_dir: Path) -> SigningKey:
    """The hub's key from ``data_dir``, created (mode 0600, atomically) if there is none."""
    path = data_dir / SIGNING_KEY_FILE
    try:
        pem = path.read_bytes()
    except FileNotFoundError:
        return _create(path)
    except OSError as error:
        raise SigningKeyError(f"cannot read the signing key {path}: {error}") from error
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except ValueError as error:
        raise SigningKeyError(f"{path} is not a usable private key: {error}") from error
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path} is not an Ed25519 key")
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)  # readable by the hub's user only, even if someone widened it
    return SigningKey(key)


def _create(path: Path) -> SigningKey:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    return SigningKey(key)
