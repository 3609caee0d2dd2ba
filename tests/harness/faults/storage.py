"""A full disk for a running hub, at the blob layer and at the database layer, and the checks
that nothing was half-written.

* ``database_full``: SQLite's own ``PRAGMA max_page_count`` on the hub's writing connection,
  pinned to the database's current size. A write that needs a new page then fails with
  ``SQLITE_FULL`` ("database or disk is full"), exactly as on a full disk; writes that fit in
  pages already there still succeed, as they would.
* ``blobs_full``: the blob store's own fault seam (``BlobStore`` writes and flushes through its
  ``write`` and ``fsync`` hooks) made to fail with ``ENOSPC``, on the store an actor owns:
  uploaded originals (the uploader), frame and standard versions (the media cache), firmware
  images (the OTA actor).
* ``half_written``: every blob has its row and every row its blob, no staged upload left, no
  gap in the journal, no journal consumer holding a retry or a dead letter.
* ``unwell``: the actors that are not running or were restarted; ``frame_holds``: what a
  simulated frame holds (its ``state.json`` playlist and photo cache).
"""

from __future__ import annotations

import errno
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from actors.blobs import BlobStore
from actors.store._store import _fetch
from frame_device import STATE_FILE, photo_path
from frame_device._state import load_state
from supervision import ActorSnapshot
from tests.harness.hub import Hub

UNLIMITED_PAGES = 1073741823
"""SQLite's default ``max_page_count``."""


async def _pragma(hub: Hub, sql: str) -> Any:
    store = hub.store
    rows = await store._bridge.run(_fetch, store._conn, sql, ())  # the writing connection
    return rows[0][0] if rows else None


@asynccontextmanager
async def database_full(hub: Hub) -> AsyncIterator[None]:
    """No new database page until the block ends (then as many as SQLite allows)."""
    pages = await _pragma(hub, "PRAGMA page_count")
    assert await _pragma(hub, f"PRAGMA max_page_count = {pages}") == pages
    try:
        yield
    finally:
        await _pragma(hub, f"PRAGMA max_page_count = {UNLIMITED_PAGES}")


def blob_store(hub: Hub, name: str) -> BlobStore:
    """The running hub's blob store ``name`` (``originals``, ``versions`` or ``firmware``): the
    instance its owner gets in every incarnation."""
    store = getattr(hub.blobs, name)
    assert isinstance(store, BlobStore), name
    return store


def no_space(after: int = 0) -> Callable[..., Any]:
    """A write or fsync hook that works ``after`` times, then fails with ``ENOSPC``."""
    calls = 0

    def hook(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls > after:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return (os.write if len(args) == 2 else os.fsync)(*args)

    return hook


@asynccontextmanager
async def blobs_full(hub: Hub, name: str, hook: str, after: int = 0) -> AsyncIterator[None]:
    """``ENOSPC`` from the blob store ``name``'s ``hook`` ("write" or "fsync") until the block
    ends."""
    store = blob_store(hub, name)
    attribute = f"_{hook}"
    assert getattr(store, attribute) in (os.write, os.fsync), "a fault is already injected"
    setattr(store, attribute, no_space(after))
    try:
        yield
    finally:
        setattr(store, attribute, os.write if hook == "write" else os.fsync)


def blob_names(root: Path) -> set[str]:
    """The blobs under ``root``, staging excluded."""
    return {
        path.name
        for path in root.rglob("*")
        if path.is_file() and ".staging" not in path.relative_to(root).parts
    }


async def half_written(hub: Hub) -> list[str]:
    """What is half-written: a blob without its row, a row without its blob, a staged file
    left behind, a consumer's pending retry or dead letter. Empty when all is whole."""
    problems: list[str] = []
    blobs = hub.blobs_dir
    tables = {
        "originals": "SELECT sha256 FROM files WHERE deleted = 0 "
        "UNION SELECT sha256 FROM uploader_blob_purges",
        "versions": "SELECT sha256 FROM photo_versions",
        "firmware": "SELECT sha256 FROM firmware",
    }
    for name, sql in tables.items():
        rows = {str(row[0]) for row in await hub.store.fetch_all(sql)}
        files = blob_names(blobs / name)
        if files - rows:
            problems.append(f"{name}: blobs without a row: {sorted(files - rows)}")
        if rows - files:
            problems.append(f"{name}: rows without a blob: {sorted(rows - files)}")
    for name in tables:
        staging = blobs / name / ".staging"
        left = sorted(p.name for p in staging.iterdir()) if staging.is_dir() else []
        if left:
            problems.append(f"{name}: staged files left: {left}")
    count, first, last = (
        await hub.store.fetch_all("SELECT count(*), min(seq), max(seq) FROM events")
    )[0]
    if count and count != last - first + 1:
        problems.append(f"events: {count} between seq {first} and {last}: a gap")
    for table in ("journal_attempts", "journal_dead_letters"):
        rows = await hub.store.fetch_all(f"SELECT subscriber, seq FROM {table}")
        if rows:
            problems.append(f"{table}: {rows}")
    return problems


def unwell(snapshot: ActorSnapshot) -> list[str]:
    """Actors of the tree that are not running or were restarted, with their last error."""
    found = []
    if snapshot.state != "running" or snapshot.restarts:
        found.append(
            f"{snapshot.path}: {snapshot.state}, {snapshot.restarts} restarts, "
            f"{snapshot.last_error}"
        )
    for child in snapshot.children:
        found.extend(unwell(child))
    return found


def frame_holds(sim_dir: Path, frame_id: str) -> set[str]:
    """The photos a simulated frame has in its playlist and in its cache (its own disk)."""
    directory = sim_dir / "frames" / frame_id
    state = load_state(directory / STATE_FILE)
    return {
        photo.file_id
        for photo in state.playlist()
        if photo.sha256 and photo_path(directory, photo.sha256).is_file()
    }
