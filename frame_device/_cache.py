"""The frame's disk: photos keyed by the SHA-256 of their bytes, and atomic file writes.

A photo is stored as ``<dir>/<sha256>``: the same bytes in two albums are one file, and a
file whose name does not match its content (a torn write after a power cut) is detected by
hashing it again and thrown away.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

TEMP_SUFFIX = ".tmp"


def write_atomically(path: Path, data: bytes, *, durable: bool) -> None:
    """Replace ``path`` with ``data`` so readers see the old or the new file, never half.

    ``durable`` also fsyncs the file and its directory, so the write survives a power cut
    (the state file needs that; the screen image is redrawn at boot anyway).
    """
    temp = path.with_name(f".{path.name}.{os.urandom(6).hex()}{TEMP_SUFFIX}")
    with open(temp, "wb") as file:
        file.write(data)
        if durable:
            file.flush()
            os.fsync(file.fileno())
    os.replace(temp, path)
    if durable:
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha256(path: Path) -> str | None:
    try:
        with open(path, "rb") as file:
            return hashlib.file_digest(file, "sha256").hexdigest()
    except OSError:
        return None


class PhotoCache:
    """The photos on the frame's disk. File work runs in threads; the index lives in the
    event loop, so it is only changed between awaits."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._shas: set[str] = set()

    def __len__(self) -> int:
        return len(self._shas)

    def __contains__(self, sha256: object) -> bool:
        return sha256 in self._shas

    def path(self, sha256: str) -> Path:
        return self.directory / sha256

    async def load(self) -> None:
        """Index what is on disk, dropping leftovers of interrupted writes and bad files."""
        self._shas = await asyncio.to_thread(self._scan)

    def _scan(self) -> set[str]:
        self.directory.mkdir(parents=True, exist_ok=True)
        found: set[str] = set()
        for path in self.directory.iterdir():
            if path.name.endswith(TEMP_SUFFIX) or _file_sha256(path) != path.name:
                path.unlink(missing_ok=True)
            else:
                found.add(path.name)
        return found

    async def store(self, sha256: str, data: bytes) -> None:
        await asyncio.to_thread(write_atomically, self.path(sha256), data, durable=False)
        self._shas.add(sha256)

    async def verify(self, shas: Iterable[str]) -> None:
        """Hash the given cached photos again; drop those whose bytes changed or vanished."""
        wanted = [sha for sha in shas if sha in self._shas]
        bad = await asyncio.to_thread(
            lambda: [sha for sha in wanted if _file_sha256(self.path(sha)) != sha]
        )
        await self.discard(bad)

    async def keep_only(self, keep: set[str]) -> list[str]:
        """Delete every cached photo not in ``keep``; returns the deleted SHA-256s."""
        gone = sorted(self._shas - keep)
        await self.discard(gone)
        return gone

    async def discard(self, shas: Iterable[str]) -> None:
        doomed = [sha for sha in shas if sha in self._shas]
        self._shas.difference_update(doomed)
        if doomed:
            await asyncio.to_thread(self._delete, doomed)

    def _delete(self, shas: list[str]) -> None:
        for sha in shas:
            self.path(sha).unlink(missing_ok=True)
