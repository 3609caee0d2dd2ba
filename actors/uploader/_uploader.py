"""The uploader (seed storage_service): accepts photos, keeps their records, analyses them.

An upload arrives as a file the HTTP layer wrote into the blob store's staging directory. The
uploader proves it is an image it accepts, moves it into the content-addressed blob store and,
in one transaction, records it and publishes ``file.uploaded``. Its own journal consumer
(``uploader-analysis``) then analyses the photo and publishes ``file.uploaded.with_ai`` in the
same transaction that marks the row analysed, so each photo is analysed exactly once, crash or
not. Everything runs in this one actor, one message at a time: a photo deleted while waiting
for analysis is seen as deleted, and its ``file.uploaded.with_ai`` never follows its
``file.deleted``.
"""

from __future__ import annotations

import logging
import sqlite3
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
import trio

from actors import imaging
from actors.blobs import BlobStore
from actors.errors import (
    BadRequest,
    Invalid,
    NotFound,
    StorageFull,
    TooLarge,
    UnsupportedMedia,
)
from actors.events import (
    AiMetadata,
    Audit,
    FileDeleted,
    FileUploaded,
    FileUploadedWithAi,
    new_id,
    utc_now,
)
from actors.store import Keyset, Rows, Store, StoreError, Transaction
from supervision import Actor, DeferredReply, Request

from ._names import check_metadata, clean_file_name

log = logging.getLogger("framehub.uploader")

ANNOUNCE_RETRY_MIN_S = 0.5
ANNOUNCE_RETRY_MAX_S = 30.0
"""An analysis whose announcement the full disk refused is announced again, backing off."""
STAGING_TTL_S = 3600.0
"""Staged files older than this are leftovers of crashed uploads, swept at start."""
MAX_PAGE = 200

MIGRATIONS = [
    """
    CREATE TABLE files (
        file_id TEXT PRIMARY KEY,
        seq INTEGER NOT NULL UNIQUE,
        user_id TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        file_name TEXT NOT NULL,
        content_type TEXT NOT NULL,
        file_size INTEGER NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        metadata TEXT NOT NULL,
        created_at TEXT NOT NULL,
        analyzed INTEGER NOT NULL DEFAULT 0,
        deleted INTEGER NOT NULL DEFAULT 0
    );
    CREATE UNIQUE INDEX files_user_sha256 ON files (user_id, sha256) WHERE deleted = 0;
    CREATE INDEX files_user_listing ON files (user_id, seq) WHERE deleted = 0;
    CREATE INDEX files_live_sha256 ON files (sha256) WHERE deleted = 0;
    CREATE TABLE uploader_blob_purges (sha256 TEXT PRIMARY KEY);
    """,
    # Analysis runs as jobs beside the mailbox; unanalysed rows are its durable queue, so the
    # journal cursor of the first version's analysis consumer is retired.
    """
    ALTER TABLE files ADD COLUMN correlation_id TEXT;
    CREATE INDEX files_unanalysed ON files (seq) WHERE analyzed = 0 AND deleted = 0;
    DELETE FROM journal_cursors WHERE subscriber = 'uploader-analysis';
    """,
]
"""Owner ``uploader``. ``seq`` orders uploads (newest first in lists); ``uploader_blob_purges``
remembers blobs a deletion released, so a crash between the commit and the unlink cannot leak
them."""

# -- messages ----------------------------------------------------------------------------------


class StorePhoto(Request["StoredPhoto"], frozen=True, kw_only=True):
    """Keep the file at ``staged_path`` (in ``BlobStore.staging``) as ``user_id``'s photo.

    The staged file is always consumed: moved into the blob store, or removed.
    """

    user_id: str
    staged_path: str
    file_name: str
    metadata: dict[str, str] = {}
    correlation_id: str | None = None


class GetFile(Request["FileRecord"], frozen=True, kw_only=True):
    user_id: str
    file_id: str


class ListFiles(Request["FilePage"], frozen=True, kw_only=True):
    """``user_id``'s photos, newest first; ``cursor`` is a previous page's ``next_cursor``."""

    user_id: str
    limit: int = 50
    cursor: str | None = None


class OpenOriginal(Request["OriginalBlob"], frozen=True, kw_only=True):
    user_id: str
    file_id: str


class DeletePhoto(Request[None], frozen=True, kw_only=True):
    user_id: str
    file_id: str
    correlation_id: str | None = None


class AnalysisFinished(Request[None], frozen=True, kw_only=True):
    """From an analysis job to its uploader: the result, or why there is none."""

    file_id: str
    ai_metadata: AiMetadata | None
    error: str | None = None
    attempt: int = 0
    """Announcements the full disk refused so far."""


class PendingAnalyses(Request["int"], frozen=True):
    """How many photos are still being analysed; answers an ``int``."""


class AwaitAnalyses(Request[None], frozen=True):
    """Answers ``None`` once no analysis is in progress (at once if none is)."""


UploaderMessage = (
    StorePhoto
    | GetFile
    | ListFiles
    | OpenOriginal
    | DeletePhoto
    | AnalysisFinished
    | PendingAnalyses
    | AwaitAnalyses
)

# -- replies -----------------------------------------------------------------------------------


class StoredPhoto(msgspec.Struct, frozen=True, kw_only=True):
    """``created`` is False when the user already had these bytes: ``file_id`` is that photo."""

    file_id: str
    file_name: str
    content_type: str
    file_size: int
    sha256: str
    created: bool


class FileRecord(msgspec.Struct, frozen=True, kw_only=True):
    file_id: str
    user_id: str
    file_name: str
    content_type: str
    file_size: int
    sha256: str
    width: int
    height: int
    created_at: str
    analyzed: bool
    metadata: dict[str, str] = {}


class FilePage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[FileRecord]
    next_cursor: str | None


class OriginalBlob(msgspec.Struct, frozen=True, kw_only=True):
    """Where the original bytes are, to stream them (the blob is never modified)."""

    path: str
    content_type: str
    sha256: str
    file_name: str
    file_size: int


FILES = Rows(FileRecord)
_STORED = Rows(StoredPhoto, omit={"sha256", "created"})
_NEWEST_FILES = Keyset("seq", key_type=tuple[int], newest_first=True)
_decode_metadata = msgspec.json.Decoder(dict[str, str]).decode
_encode = msgspec.json.encode


def storage_path(sha256: str) -> str:
    """The seed ``storage_path`` of a photo: where it is under the data directory."""
    return f"blobs/{sha256[:2]}/{sha256}"


# -- the actor ---------------------------------------------------------------------------------


class Uploader(Actor[UploaderMessage]):
    """Owns the ``files`` table; ``limiter`` bounds the image work of the worker threads."""

    def __init__(
        self,
        store: Store,
        blobs: BlobStore,
        limiter: trio.CapacityLimiter,
    ) -> None:
        self._store = store
        self._blobs = blobs
        self._limiter = limiter
        self._next_seq = 1
        self._analysing: set[str] = set()
        self._settled: list[DeferredReply[None]] = []

    async def on_start(self) -> None:
        await self._store.migrate("uploader", MIGRATIONS)
        row = await self._store.fetch_one("SELECT coalesce(max(seq), 0) FROM files")
        assert row is not None
        self._next_seq = int(row[0]) + 1
        await self._purge_released_blobs()
        swept = await self._blobs.sweep_staging(STAGING_TTL_S)
        if swept:
            log.info("removed %d staged files left by interrupted uploads", swept)
        for file_id, sha256 in await self._store.fetch_all(
            "SELECT file_id, sha256 FROM files WHERE analyzed = 0 AND deleted = 0 ORDER BY seq"
        ):
            await self._start_analysis(file_id, sha256)

    async def receive(self, message: UploaderMessage) -> Any:
        match message:
            case StorePhoto():
                return await self._store_photo(message)
            case GetFile(user_id=user_id, file_id=file_id):
                return await self._live_file(user_id, file_id)
            case ListFiles():
                return await self._list_files(message)
            case OpenOriginal(user_id=user_id, file_id=file_id):
                record = await self._live_file(user_id, file_id)
                path = self._blobs.path(record.sha256)
                if not await trio.Path(path).is_file():
                    log.error("file %s has lost its blob %s", file_id, record.sha256)
                    raise NotFound(f"no file {file_id}")
                return OriginalBlob(
                    path=str(path),
                    content_type=record.content_type,
                    sha256=record.sha256,
                    file_name=record.file_name,
                    file_size=record.file_size,
                )
            case DeletePhoto():
                return await self._delete_photo(message)
            case AnalysisFinished():
                await self._finish_analysis(message)
                return None
            case PendingAnalyses():
                return len(self._analysing)
            case AwaitAnalyses():
                if self._analysing:
                    self._settled.append(self.context.defer_reply(message))
                return None

    # -- storing -------------------------------------------------------------------------

    async def _store_photo(self, message: StorePhoto) -> StoredPhoto:
        staged = Path(message.staged_path)
        file_size = await trio.to_thread.run_sync(self._staged_size, staged)
        try:
            check_metadata(message.metadata)
            if file_size == 0:
                raise Invalid("empty upload")
            info = await self._inspect(staged)
        except BaseException:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(partial(staged.unlink, missing_ok=True))
            raise
        sha256 = await self._blobs.put_file(staged)
        row = await self._store.fetch_one(
            f"SELECT {_STORED.columns} FROM files WHERE user_id = ? AND sha256 = ? AND deleted = 0",
            (message.user_id, sha256),
        )
        if row is not None:
            return _STORED.of_with(row, sha256=sha256, created=False)
        file_id = new_id()
        file_name = clean_file_name(message.file_name, info.content_type)
        seq = self._next_seq
        self._next_seq += 1
        correlation_id = message.correlation_id or new_id()
        tx = Transaction()
        tx.execute(
            "INSERT INTO files (file_id, seq, user_id, sha256, file_name, content_type, "
            "file_size, width, height, metadata, created_at, correlation_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                file_id,
                seq,
                message.user_id,
                sha256,
                file_name,
                info.content_type,
                file_size,
                info.width,
                info.height,
                _encode(message.metadata),
                utc_now(),
                correlation_id,
            ),
        )
        tx.publish(
            FileUploaded(
                audit=Audit.user(message.user_id),
                correlation_id=correlation_id,
                file_id=file_id,
                user_id=message.user_id,
                file_name=file_name,
                file_size=file_size,
                content_type=info.content_type,
                storage_path=storage_path(sha256),
                sha256=sha256,
                metadata=dict(message.metadata),
            )
        )
        try:
            await self._store.commit(tx)
        except StoreError as error:
            # Not committed (a cancelled wait might still commit: then the blob must stay).
            if not await self._referenced(sha256):
                await self._blobs.delete(sha256)
            if _disk_full(error):
                raise StorageFull("the database's disk is full; the photo was not kept") from error
            raise
        await self._start_analysis(file_id, sha256)
        return StoredPhoto(
            file_id=file_id,
            file_name=file_name,
            content_type=info.content_type,
            file_size=file_size,
            sha256=sha256,
            created=True,
        )

    def _staged_size(self, path: Path) -> int:
        """The size of a staged upload, which must be a file right in the staging directory.

        Only there may the uploader move or remove files on a caller's say-so.
        (Runs in a worker thread.)
        """
        if (
            path.parent.resolve() != self._blobs.staging.resolve()
            or path.is_symlink()
            or not path.is_file()
        ):
            raise BadRequest("the upload is not a staged file")
        return path.stat().st_size

    async def _inspect(self, path: Path) -> imaging.ImageInfo:
        try:
            return await trio.to_thread.run_sync(imaging.inspect, path, limiter=self._limiter)
        except imaging.UnsupportedImage as error:
            raise UnsupportedMedia(str(error)) from None
        except imaging.ImageTooLarge as error:
            raise TooLarge(str(error)) from None
        except imaging.CorruptImage as error:
            raise Invalid(str(error)) from None

    # -- reading -------------------------------------------------------------------------

    async def _live_file(self, user_id: str, file_id: str) -> FileRecord:
        """The user's live file; ``NotFound`` for an unknown, deleted or another user's id."""
        row = await self._store.fetch_one(
            f"SELECT {FILES.columns} FROM files WHERE file_id = ? AND user_id = ? AND deleted = 0",
            (file_id, user_id),
        )
        if row is None:
            raise NotFound(f"no file {file_id}")
        return FILES.of(row)

    async def _list_files(self, message: ListFiles) -> FilePage:
        if not 1 <= message.limit <= MAX_PAGE:
            raise Invalid(f"limit must be between 1 and {MAX_PAGE}")
        items, next_cursor = await _NEWEST_FILES.page(
            self._store,
            FILES.columns,
            "files",
            "user_id = ? AND deleted = 0",
            (message.user_id,),
            FILES.of,
            message.limit,
            message.cursor,
        )
        return FilePage(items=items, next_cursor=next_cursor)

    # -- deleting ------------------------------------------------------------------------

    async def _delete_photo(self, message: DeletePhoto) -> None:
        record = await self._live_file(message.user_id, message.file_id)
        shared = await self._referenced(record.sha256, besides=record.file_id)
        tx = Transaction()
        tx.execute("UPDATE files SET deleted = 1 WHERE file_id = ?", (record.file_id,))
        if not shared:
            tx.execute(
                "INSERT INTO uploader_blob_purges (sha256) VALUES (?) ON CONFLICT DO NOTHING",
                (record.sha256,),
            )
        tx.publish(
            FileDeleted(
                audit=Audit.user(message.user_id),
                correlation_id=message.correlation_id or new_id(),
                file_id=record.file_id,
                user_id=message.user_id,
            )
        )
        await self._store.commit(tx)
        if not shared:
            await self._blobs.delete(record.sha256)

    async def _referenced(self, sha256: str, *, besides: str | None = None) -> bool:
        """Whether a live file (other than ``besides``) still uses the blob ``sha256``."""
        row = await self._store.fetch_one(
            "SELECT 1 FROM files WHERE sha256 = ? AND deleted = 0 AND file_id IS NOT ? LIMIT 1",
            (sha256, besides),
        )
        return row is not None

    async def _purge_released_blobs(self) -> None:
        """Finish deletions a crash interrupted: unlink released blobs nobody uses again."""
        rows = await self._store.fetch_all(
            "SELECT p.sha256, EXISTS (SELECT 1 FROM files f WHERE f.sha256 = p.sha256 "
            "AND f.deleted = 0) FROM uploader_blob_purges p"
        )
        if not rows:
            return
        for sha256, in_use in rows:
            if not in_use:
                await self._blobs.delete(sha256)
        tx = Transaction()
        tx.executemany("DELETE FROM uploader_blob_purges WHERE sha256 = ?", [(r[0],) for r in rows])
        await self._store.commit(tx)

    # -- analysis: jobs beside the mailbox ------------------------------------------------

    async def _start_analysis(self, file_id: str, sha256: str) -> None:
        """Analyse a stored photo in a worker thread without holding up the mailbox.

        Analysis (faces above all) takes far longer than storing, so it runs as a job owned by
        this incarnation and reports back with ``AnalysisFinished``; uploads go on meanwhile.
        The ``analyzed`` flag is the durable queue: a job lost to a crash is started again by
        the next incarnation, and the flag makes its result count once.
        """
        if file_id in self._analysing:
            return
        self._analysing.add(file_id)
        await self.context.start_service(self._analysis_job, file_id, self._blobs.path(sha256))

    async def _analysis_job(
        self, file_id: str, path: Path, *, task_status: trio.TaskStatus[None]
    ) -> None:
        task_status.started()
        try:
            ai_metadata = await trio.to_thread.run_sync(
                imaging.analyze, path, limiter=self._limiter
            )
        except Exception as error:  # a photo analysis cannot handle must not stop the others
            log.error("analysis of %s failed: %r", file_id, error, exc_info=error)
            finished = AnalysisFinished(file_id=file_id, ai_metadata=None, error=repr(error))
        else:
            finished = AnalysisFinished(file_id=file_id, ai_metadata=ai_metadata)
        await self.context.ref.tell(finished)

    async def _finish_analysis(self, message: AnalysisFinished) -> None:
        """Announce the result. A full disk keeps the photo in analysis and announces it
        again later: the result is still there, and nothing else would retry it before the
        next start."""
        retrying = False
        try:
            await self._announce_analysis(message)
        except StorageFull:
            retrying = True
            delay = min(ANNOUNCE_RETRY_MAX_S, ANNOUNCE_RETRY_MIN_S * 2**message.attempt)
            log.warning(
                "the disk is full: the analysis of %s is announced again in %.1fs",
                message.file_id,
                delay,
            )
            again = msgspec.structs.replace(message, attempt=message.attempt + 1)
            self.context.send_after(delay, again)
        finally:
            if not retrying:
                self._analysing.discard(message.file_id)
                if not self._analysing:
                    settled, self._settled = self._settled, []
                    for waiter in settled:
                        waiter.set(None)

    async def _announce_analysis(self, message: AnalysisFinished) -> None:
        row = await self._store.fetch_one(
            "SELECT user_id, file_name, file_size, content_type, sha256, metadata, width, "
            "height, correlation_id, deleted, analyzed FROM files WHERE file_id = ?",
            (message.file_id,),
        )
        if row is None or row[9] or row[10]:
            return  # deleted meanwhile, or already announced by an earlier job
        (user_id, file_name, file_size, content_type, sha256, metadata, width, height) = row[:8]
        ai_metadata = message.ai_metadata
        if ai_metadata is None:
            # Analysis failed: announce the photo with what the upload check already knew, so
            # that it is still filed and shown; the failure is in the log.
            ai_metadata = AiMetadata(width=width, height=height)
        tx = Transaction()
        tx.execute("UPDATE files SET analyzed = 1 WHERE file_id = ?", (message.file_id,))
        tx.publish(
            FileUploadedWithAi(
                audit=Audit.user(user_id),
                correlation_id=row[8] or new_id(),
                file_id=message.file_id,
                user_id=user_id,
                file_name=file_name,
                file_size=file_size,
                content_type=content_type,
                storage_path=storage_path(sha256),
                sha256=sha256,
                metadata=_decode_metadata(metadata),
                ai_metadata=ai_metadata,
            )
        )
        await self._store.commit(tx)


def _disk_full(error: StoreError) -> bool:
    cause = error.__cause__
    return isinstance(cause, sqlite3.Error) and cause.sqlite_errorcode == sqlite3.SQLITE_FULL
