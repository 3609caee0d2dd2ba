"""Content-addressed blob files: written once, fsynced, renamed into place, never half there.

A blob lives at ``root/<sha[:2]>/<sha>``, named by the SHA-256 of its bytes. Every write goes
to a file in ``root/.staging`` first (the same filesystem, so the final ``rename`` is atomic),
is fsynced, renamed into place, and then the directory holding it is fsynced: after a write
returns, a power cut leaves either the whole blob or none of it. A write that fails after its
rename keeps the (whole) blob, since another writer may have placed the same bytes meanwhile;
storing those bytes again re-syncs its directory. Blocking file work runs in Trio worker
threads.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path

import trio

from actors.errors import Invalid, NotFound, StorageFull

_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})

WriteHook = Callable[[int, bytes | memoryview], int]
FsyncHook = Callable[[int], None]


def check_sha256(sha256: str) -> str:
    """``sha256`` if it is 64 lowercase hex digits; raises ``Invalid`` otherwise.

    Every path is built from a checked digest, so no input can point outside the store.
    """
    if _SHA256.fullmatch(sha256) is None:
        raise Invalid(f"not a SHA-256 digest: {sha256!r:.80}")
    return sha256


class BlobStore:
    """The blob files under ``root``.

    The store counts no references: whoever records a blob decides when to delete it. Owners
    that may hold the same bytes independently (uploaded originals, rendered versions) should
    therefore use separate roots, or one could delete the other's blob.

    ``write`` and ``fsync`` are the fault-injection seam: they default to ``os.write`` and
    ``os.fsync`` and are the only calls through which the store writes data and flushes files
    and directories, so tests can make them fail (``OSError(errno.ENOSPC, ...)``) as a full
    disk would.
    """

    def __init__(
        self,
        root: Path,
        *,
        write: WriteHook = os.write,
        fsync: FsyncHook = os.fsync,
    ) -> None:
        self.root = root
        self.staging = root / ".staging"
        """Where incoming uploads are written before ``put_file`` (same filesystem as blobs)."""
        self._write = write
        self._fsync = fsync
        self.staging.mkdir(parents=True, exist_ok=True)

    # -- reading ---------------------------------------------------------------------------

    def path(self, sha256: str) -> Path:
        """Where the blob ``sha256`` is (or would be). Raises ``Invalid`` for a bad digest."""
        check_sha256(sha256)
        return self.root / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    async def size(self, sha256: str) -> int:
        """The blob's size in bytes; raises ``NotFound`` when there is no such blob."""
        path = self.path(sha256)
        try:
            stat = await trio.to_thread.run_sync(os.stat, path)
        except FileNotFoundError:
            raise NotFound(f"no blob {sha256}") from None
        return stat.st_size

    # -- writing ---------------------------------------------------------------------------

    async def put_file(self, source: Path) -> str:
        """Move the file ``source`` into the store; returns its SHA-256.

        The source is consumed: renamed into place (or copied, if it is on another
        filesystem), or just removed when the store already holds those bytes — and removed
        as well when the write fails. A full disk raises ``StorageFull``; any other
        ``OSError`` is re-raised. Either way no partial blob is left behind.
        """
        return await trio.to_thread.run_sync(self._put_file, source)

    async def put_bytes(self, data: bytes) -> str:
        """Store ``data``; returns its SHA-256. Same guarantees as ``put_file``."""
        return await trio.to_thread.run_sync(self._put_bytes, data)

    async def delete(self, sha256: str) -> bool:
        """Remove the blob; False when it was not there."""
        path = self.path(sha256)
        return await trio.to_thread.run_sync(self._delete, path)

    async def sweep_staging(self, older_than_s: float) -> int:
        """Remove staged files older than ``older_than_s`` (left by crashed uploads)."""
        return await trio.to_thread.run_sync(self._sweep_staging, older_than_s)

    # -- worker-thread side -----------------------------------------------------------------

    def _put_file(self, source: Path) -> str:
        temporary: Path | None = None
        try:
            digest = hashlib.sha256()
            with source.open("rb") as file:
                while chunk := file.read(_CHUNK):
                    digest.update(chunk)
            sha256 = digest.hexdigest()
            target = self.path(sha256)
            if target.is_file():
                source.unlink()
                self._fsync_dir(target.parent)
                return sha256
            fd = os.open(source, os.O_RDONLY)
            try:
                self._fsync(fd)
            finally:
                os.close(fd)
            try:
                self._place(source, target)
            except OSError as error:
                if error.errno != errno.EXDEV:
                    raise
                temporary = self._copy_to_staging(source)
                self._place(temporary, target)
                temporary = None
                source.unlink()
            return sha256
        except OSError as error:
            self._discard(source)
            if temporary is not None:
                self._discard(temporary)
            _raise_if_full(error)
            raise

    def _put_bytes(self, data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        target = self.path(sha256)
        if target.is_file():
            try:
                self._fsync_dir(target.parent)
            except OSError as error:
                _raise_if_full(error)
                raise
            return sha256
        temporary = self._new_staged_path()
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                self._write_all(fd, data)
                self._fsync(fd)
            finally:
                os.close(fd)
            self._place(temporary, target)
        except OSError as error:
            self._discard(temporary)
            _raise_if_full(error)
            raise
        return sha256

    def _place(self, staged: Path, target: Path) -> None:
        """Rename the (already fsynced) ``staged`` file to ``target`` and make it durable."""
        shard = target.parent
        if not shard.is_dir():
            shard.mkdir(exist_ok=True)
            self._fsync_dir(self.root)
        os.rename(staged, target)
        self._fsync_dir(shard)

    def _copy_to_staging(self, source: Path) -> Path:
        temporary = self._new_staged_path()
        try:
            with source.open("rb") as file:
                fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                try:
                    while chunk := file.read(_CHUNK):
                        self._write_all(fd, chunk)
                    self._fsync(fd)
                finally:
                    os.close(fd)
        except OSError:
            self._discard(temporary)
            raise
        return temporary

    def _write_all(self, fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = self._write(fd, view)
            view = view[written:]

    def _fsync_dir(self, directory: Path) -> None:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            self._fsync(fd)
        finally:
            os.close(fd)

    def _delete(self, path: Path) -> bool:
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        self._fsync_dir(path.parent)
        return True

    def _sweep_staging(self, older_than_s: float) -> int:
        cutoff = time.time() - older_than_s
        removed = 0
        for entry in os.scandir(self.staging):
            try:
                if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue
        return removed

    def _new_staged_path(self) -> Path:
        return self.staging / f"blob-{secrets.token_hex(16)}.tmp"

    @staticmethod
    def _discard(path: Path) -> None:
        path.unlink(missing_ok=True)


def _raise_if_full(error: OSError) -> None:
    if error.errno in _FULL:
        raise StorageFull(f"the disk is full; nothing was stored ({error.strerror})") from error
