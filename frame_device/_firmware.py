"""The frame's firmware on disk: two slots, the boot state, and what a firmware command
must prove before the frame acts on it.

``<data_dir>/firmware/`` holds

* ``a/`` and ``b/``: the slots. Each has ``image`` (the firmware's bytes) and
  ``manifest.json`` (``version``, ``sha256``, ``size``). The factory firmware is slot ``a``
  with a manifest and no image. A slot whose manifest is missing is empty: an install
  removes the manifest first and writes it last, so a torn install never looks valid.
* ``boot.json``: the boot state (``BootState``): which slot is active, which committed slot
  a rollback goes back to, whether the active slot is on trial, the firmware command in
  progress, the final answers to firmware commands and those not yet delivered to the hub.
* ``download.part``: a download in progress, resumed with ``Range`` after an interruption.

Every change to the boot state is written atomically and fsynced before the frame acts on
it, so a power cut at any point leaves a state the next boot can continue from. ``boot``
is the bootloader's step at power-on: it finishes a rollback that was decided (the trial
failed its health check or crashed, or kept being power-cut), or counts one more boot of
a trial slot.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import re
import threading
from pathlib import Path
from typing import Literal

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

import wire

from ._cache import write_atomically

log = logging.getLogger("frame_device")

FIRMWARE_DIR = "firmware"
BOOT_FILE = "boot.json"
PART_FILE = "download.part"
IMAGE_FILE = "image"
MANIFEST_FILE = "manifest.json"

Slot = Literal["a", "b"]

MAX_TRIAL_BOOTS = 3
"""Boots of a trial slot (each power-cut during its health check) before the bootloader
gives up on it and goes back to the previous slot."""
MAX_FIRMWARE_BYTES = 256 * 1024 * 1024
REMEMBERED_ANSWERS = 50
FIRMWARE_COMMANDS = ("update_firmware", "rollback_firmware")

_VERSION = re.compile(r"v?\d{1,9}(\.\d{1,9}){0,3}([-+][0-9A-Za-z][0-9A-Za-z.+-]{0,40})?")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class SlotManifest(msgspec.Struct, frozen=True, kw_only=True):
    """What a slot holds. ``sha256`` is empty for the factory firmware (no image file)."""

    version: str
    sha256: str = ""
    size: int = 0


class BootState(msgspec.Struct, kw_only=True):
    """``firmware/boot.json``."""

    active: Slot = "a"
    previous: Slot | None = None
    """The committed slot ``rollback_firmware`` goes back to (None: there is none)."""
    trial: bool = False
    """The active slot was just installed and has not passed its health check yet."""
    trial_boots: int = 0
    trial_failure: str | None = None
    """Why the trial failed; the next boot goes back to the previous slot."""
    pending: wire.FrameCommand | None = None
    """The firmware command in progress: an ``update_firmware`` being downloaded and
    installed or on trial, or a ``rollback_firmware`` answered after its reboot."""
    partial_sha256: str | None = None
    """The image ``download.part`` is the beginning of."""
    answers: list[wire.OtaProgress] = []
    """Final answers to firmware commands, so a redelivered command is answered, not redone."""
    outbox: list[wire.OtaProgress] = []
    """Final answers the broker has not acknowledged yet; sent again on every connect."""
    ignored: list[str] = []
    """Command ids a ``never_answers`` fault swallowed (a redelivery is swallowed again)."""
    faults_used: dict[str, int] = {}
    """Update attempts each fault switch has spoilt so far."""

    def answer_to(self, command_id: str) -> wire.OtaProgress | None:
        return next((a for a in self.answers if a.command_id == command_id), None)


_encode = msgspec.json.Encoder().encode
_decode_boot = msgspec.json.Decoder(BootState).decode
_decode_manifest = msgspec.json.Decoder(SlotManifest).decode


def other(slot: Slot) -> Slot:
    return "b" if slot == "a" else "a"


def file_sha256(path: Path) -> str | None:
    try:
        with open(path, "rb") as file:
            return hashlib.file_digest(file, "sha256").hexdigest()
    except OSError:
        return None


def _fsync_directory(path: Path) -> None:
    directory = os.open(path, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class Firmware:
    """The firmware directory of one frame. Methods do blocking file work (call them in a
    thread); ``state`` is changed by the caller and written by ``save``, which may run in
    any thread: writes are serialised and each writes the state as it is then."""

    def __init__(self, directory: Path, state: BootState, factory_version: str) -> None:
        self.directory = directory
        self.state = state
        self.factory_version = factory_version
        self._lock = threading.Lock()

    @classmethod
    def open(cls, directory: Path, factory_version: str) -> Firmware:
        """The firmware on disk; a frame's first boot creates the factory slot."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / BOOT_FILE
        try:
            state = _decode_boot(path.read_bytes())
        except FileNotFoundError:
            firmware = cls(directory, BootState(), factory_version)
            firmware._write_manifest("a", SlotManifest(version=factory_version))
            firmware.save()
            return firmware
        except (OSError, msgspec.DecodeError) as error:
            # Only a damaged disk gets here (every write is atomic): run what slot a holds.
            log.error("boot state %s unreadable (%s); booting slot a", path, error)
            state = BootState()
        return cls(directory, state, factory_version)

    def save(self) -> None:
        with self._lock:
            write_atomically(self.directory / BOOT_FILE, _encode(self.state), durable=True)

    # -- slots ---------------------------------------------------------------------------

    def slot_dir(self, slot: Slot) -> Path:
        return self.directory / slot

    def manifest(self, slot: Slot) -> SlotManifest | None:
        try:
            return _decode_manifest((self.slot_dir(slot) / MANIFEST_FILE).read_bytes())
        except (OSError, msgspec.DecodeError):
            return None

    def version_of(self, slot: Slot | None) -> str | None:
        manifest = self.manifest(slot) if slot is not None else None
        return manifest.version if manifest is not None else None

    def running_version(self) -> str:
        """The version of the active slot (what heartbeats report)."""
        return self.version_of(self.state.active) or self.factory_version

    def intact(self, slot: Slot) -> bool:
        """The slot has a manifest and (unless it is the factory's) an image hashing to it."""
        manifest = self.manifest(slot)
        if manifest is None:
            return False
        if not manifest.sha256:
            return True
        return file_sha256(self.slot_dir(slot) / IMAGE_FILE) == manifest.sha256

    def _write_manifest(self, slot: Slot, manifest: SlotManifest) -> None:
        self.slot_dir(slot).mkdir(parents=True, exist_ok=True)
        write_atomically(self.slot_dir(slot) / MANIFEST_FILE, _encode(manifest), durable=True)

    # -- download and install ------------------------------------------------------------

    @property
    def part_path(self) -> Path:
        return self.directory / PART_FILE

    def discard_part(self) -> None:
        self.part_path.unlink(missing_ok=True)
        self.state.partial_sha256 = None

    def install(self, manifest: SlotManifest, *, fail: bool = False) -> Slot:
        """Move the verified ``download.part`` into the inactive slot and make it the active
        one on trial (the previous slot stays for the rollback). ``fail`` is the
        ``failed_install`` fault: the slot is left empty and OSError raised."""
        target = other(self.state.active)
        slot = self.slot_dir(target)
        slot.mkdir(parents=True, exist_ok=True)
        (slot / MANIFEST_FILE).unlink(missing_ok=True)
        _fsync_directory(slot)
        if fail:
            raise OSError(f"cannot write slot {target} (injected failed_install fault)")
        with open(self.part_path, "rb+") as part:
            os.fsync(part.fileno())
        os.replace(self.part_path, slot / IMAGE_FILE)
        _fsync_directory(slot)
        _fsync_directory(self.directory)
        self._write_manifest(target, manifest)
        self.state.partial_sha256 = None
        self.state.previous = self.state.active
        self.state.active = target
        self.state.trial = True
        self.state.trial_boots = 0
        self.state.trial_failure = None
        self.save()
        return target

    # -- boot, commit, rollback ----------------------------------------------------------

    def boot(self) -> str | None:
        """The bootloader's step at power-on. Returns why the trial slot was given up (the
        frame now runs the previous slot again, and must report it), or None."""
        state = self.state
        if not state.trial:
            return None
        failure = state.trial_failure
        if failure is None and state.trial_boots >= MAX_TRIAL_BOOTS:
            boots = state.trial_boots
            failure = f"health check failed: the new firmware never came up ({boots} boots)"
        if failure is None and not self.intact(state.active):
            failure = "health check failed: the new firmware image is damaged"
        if failure is None:
            state.trial_boots += 1
            self.save()
            return None
        if state.previous is None:  # nothing to go back to (a damaged disk): keep this one
            log.error("no previous slot to go back to (%s); keeping slot %s", failure, state.active)
            self.commit()
            self.save()
            return None
        state.active, state.previous = state.previous, None
        state.trial = False
        state.trial_boots = 0
        state.trial_failure = None
        self.save()  # the caller records the answer and saves again
        return failure

    def commit(self) -> None:
        self.state.trial = False
        self.state.trial_boots = 0
        self.state.trial_failure = None

    def switch_to_previous(self) -> None:
        """``rollback_firmware``: the previous committed slot becomes the active one, and the
        one running now becomes the previous (so a second rollback goes forward again)."""
        previous = self.state.previous
        assert previous is not None and not self.state.trial
        self.state.active, self.state.previous = previous, self.state.active

    def record(self, answer: wire.OtaProgress) -> None:
        """A firmware command's final answer: remembered, queued for the hub, not pending."""
        state = self.state
        state.answers = [*state.answers, answer][-REMEMBERED_ANSWERS:]
        state.outbox = [*state.outbox, answer][-REMEMBERED_ANSWERS:]
        if state.pending is not None and state.pending.command_id == answer.command_id:
            state.pending = None


def record_crash(directory: Path, error: str) -> bool:
    """After a crash of the frame program: if the active slot is on trial, the trial has
    failed (the next boot rolls back). True if so. For a boot that had not loaded the
    firmware state yet; one that has uses ``Firmware`` itself."""
    try:
        state = _decode_boot((directory / BOOT_FILE).read_bytes())
    except (OSError, msgspec.DecodeError):
        return False
    if not state.trial:
        return False
    if state.trial_failure is None:
        state.trial_failure = crash_failure(error)
        write_atomically(directory / BOOT_FILE, _encode(state), durable=True)
    return True


def crash_failure(error: str) -> str:
    return f"health check failed: the new firmware crashed ({error})"


# -- what a firmware command must prove ----------------------------------------------------


def refusal(frame_id: str, command: wire.FrameCommand, public_key: str) -> str | None:
    """Why the frame must not act on this firmware command, or None if it may: arguments
    missing or implausible, or a signature that does not verify with the hub's key."""
    args = command.args
    required: dict[str, object] = {"signature": args.signature}
    if command.command == "update_firmware":
        required |= {"url": args.url, "sha256": args.sha256, "size": args.size}
        required["version"] = args.version
    missing = [name for name, value in required.items() if value is None]
    if missing:
        return f"missing {', '.join(missing)}"
    if args.version is not None and not _VERSION.fullmatch(args.version):
        return f"implausible version {args.version[:50]!r}"
    if command.command == "update_firmware":
        assert args.size is not None and args.sha256 is not None and args.url is not None
        if not 0 < args.size <= MAX_FIRMWARE_BYTES:
            return f"implausible size {args.size} (1 to {MAX_FIRMWARE_BYTES} bytes)"
        if not _SHA256.fullmatch(args.sha256):
            return "sha256 is not a SHA-256 hex digest"
        if not args.url.startswith(("http://", "https://", "/")):
            return f"unusable url {args.url[:100]!r}"
    assert args.signature is not None
    return _signature_problem(frame_id, command, args.signature, public_key)


def _signature_problem(
    frame_id: str, command: wire.FrameCommand, signature: str, public_key: str
) -> str | None:
    if not public_key:
        return "no public key to verify firmware commands with (pair the frame again)"
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key, validate=True))
    except (binascii.Error, ValueError):
        return "the frame's public key is not a base64 Ed25519 key"
    message = wire.signed_command_bytes(frame_id, command.command_id, command.command, command.args)
    try:
        key.verify(base64.b64decode(signature, validate=True), message)
    except (binascii.Error, ValueError, InvalidSignature):
        return "signature does not verify"
    return None
