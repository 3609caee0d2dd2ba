"""The media cache actor (seed media_service): photo metadata, sized versions, playlists and
rotation schedules.

The actor learns of photos from the uploader's events and keeps what it answers from in
memory (rebuilt from its own tables in ``on_start``), except the analysis results, which it
reads when a photo is shown. Versions are JPEG blobs in the shared ``BlobStore``, named by
their SHA-256 and referenced from ``photo_versions``; a version blob is deleted once no row
references it any more (and it is not some upload's original).

Two paths change state. Requests commit their own transaction and change memory once it has
committed. Journal handlers add their effects to the consumer's transaction, which may hold a
whole batch of events (an upload and its deletion, say): each handler changes memory as its
last step, after everything that can fail, so the next handler of the batch sees it. If that
transaction then fails to commit, ``drain`` raises, the actor crashes and its restart rebuilds
memory from the database, which never saw the batch. Blob files are only ever removed after
the transaction that dropped their last reference has committed.

Image work (decoding, resizing, encoding) runs in worker threads under the shared
``CapacityLimiter``, so a burst of uploads cannot take every core from the event loop.

The actor is the wiring: its messages, the transactions that span its parts, and its journal
consumer. The rest of the package holds the parts: the photos and what references each blob
(``_photos``), making versions (``_versions``), playlists and schedules (``_playlists``), the
journal handlers (``_consumer``) and the tables (``_tables``).
"""

from __future__ import annotations

from typing import Any

import trio

from actors import imaging
from actors.blobs import BlobStore
from actors.events import (
    Audit,
    DeviceDeleted,
    FileDeleted,
    FileUploaded,
    FileUploadedWithAi,
    new_id,
    utc_now,
)
from actors.journal import Consumer, Journal, JournalNudge
from actors.store import Entry, Store, Transaction
from supervision import Actor

from . import _consumer
from ._messages import (
    CreatePlaylist,
    CreateSchedule,
    DeletePlaylist,
    DeleteSchedule,
    GetFrameSchedule,
    GetFrameVersion,
    GetPhoto,
    GetPlaylist,
    GetVersion,
    ListPhotos,
    ListPlaylists,
    ListSchedules,
    MediaMessage,
    UpdatePlaylist,
    VersionBlob,
    check_panel,
    check_schedule,
)
from ._photos import Photos, Version
from ._playlists import Playlists, Schedules
from ._tables import MEDIA_MIGRATIONS, UPSERT_CACHE
from ._versions import VersionMaker, stage_versions


class MediaCache(Actor[MediaMessage]):
    """The media cache: owns ``photo_metadata``, ``photo_versions``, ``photo_cache``,
    ``playlists``, ``playlist_items`` and ``rotation_schedules``.

    Journal consumer ``media`` on ``file.uploaded`` (metadata for images), ``file.uploaded.with_ai``
    (analysis, thumbnail and HD versions), ``file.deleted`` (everything of the photo, playlists
    kept) and ``device.deleted`` (the frame's schedules and cache entries).
    """

    def __init__(
        self,
        store: Store,
        journal: Journal,
        blobs: BlobStore,
        limiter: trio.CapacityLimiter,
        *,
        originals: BlobStore | None = None,
    ) -> None:
        self._store = store
        self._journal = journal
        self._consumer: Consumer | None = None
        self._photos = Photos(store, blobs)
        self._maker = VersionMaker(
            blobs,
            # Where the uploader keeps originals (read only here); versions go to ``blobs``.
            originals if originals is not None else blobs,
            limiter,
        )
        self._playlists = Playlists(store, self._photos)
        self._schedules = Schedules(store)

    async def on_start(self) -> None:
        await self._store.migrate("media", MEDIA_MIGRATIONS)
        await self._photos.load()
        await self._playlists.load()
        await self._schedules.load()
        self._consumer = await self._journal.consume(
            "media",
            ["file.uploaded", "file.uploaded.with_ai", "file.deleted", "device.deleted"],
            self.context,
            self._on_event,
        )

    async def on_stop(self) -> None:
        if self._consumer is not None:
            self._consumer.close()

    async def receive(self, message: MediaMessage) -> Any:
        await self._catch_up()
        match message:
            case JournalNudge():
                return None
            case GetPhoto(user_id=user_id, file_id=file_id, base_url=base_url):
                photo = self._photos.get(user_id, file_id)
                (view,) = await self._photos.views([photo], base_url)
                return view
            case ListPhotos(user_id=user_id, base_url=base_url, limit=limit, cursor=cursor):
                return await self._photos.page(user_id, limit, cursor, base_url)
            case GetVersion():
                return await self._standard_version(message)
            case GetFrameVersion():
                return await self._frame_version(message)
            case CreatePlaylist():
                return await self._playlists.create(message)
            case UpdatePlaylist():
                return await self._playlists.update(message)
            case GetPlaylist(user_id=user_id, playlist_id=playlist_id):
                return self._playlists.get(user_id, playlist_id).view()
            case ListPlaylists(user_id=user_id, limit=limit, cursor=cursor):
                return self._playlists.page(user_id, limit, cursor)
            case DeletePlaylist(user_id=user_id, playlist_id=playlist_id):
                return await self._delete_playlist(user_id, playlist_id)
            case CreateSchedule():
                check_schedule(message)
                if message.playlist_id is not None:
                    self._playlists.get(message.user_id, message.playlist_id)
                return await self._schedules.create(message)
            case ListSchedules(user_id=user_id, frame_id=frame_id, limit=limit, cursor=cursor):
                return self._schedules.page(user_id, frame_id, limit, cursor)
            case GetFrameSchedule(frame_id=frame_id):
                return self._schedules.current(frame_id)
            case DeleteSchedule(user_id=user_id, schedule_id=schedule_id):
                return await self._schedules.delete(user_id, schedule_id)

    async def _catch_up(self) -> None:
        """Handle every event already in the journal, then drop blobs nothing references.

        Every request starts with it, so that a photo whose upload has committed is known
        here even while the nudge for its events is still queued behind the request.
        """
        assert self._consumer is not None
        await self._consumer.drain()
        await self._photos.collect_blobs()

    async def _standard_version(self, message: GetVersion) -> VersionBlob:
        """A standard version, made (with the others missing) if the upload's were not."""
        photo = self._photos.get(message.user_id, message.file_id)
        if message.size not in photo.versions:
            audit = Audit.user_or_system(message.user_id, "media")
            made = await self._maker.render_or_refuse(photo, photo.missing_standard(), ())
            async with self._store.transaction() as tx:
                stage_versions(tx, photo, made, audit, new_id())
            self._photos.keep_versions(photo, made)
        return self._maker.blob(photo.versions[message.size])

    async def _frame_version(self, message: GetFrameVersion) -> VersionBlob:
        """The version for a frame's panel, made once and kept; recorded as the one cached for
        ``frame_id`` (when given) if it was not already."""
        check_panel(message.width, message.height)
        photo = self._photos.get(message.user_id, message.file_id)
        spec = imaging.frame_spec(message.width, message.height, message.fill)
        version = photo.versions.get(spec.name)
        made: list[Version] = []
        if version is None:
            faces = await self._photos.faces(photo.file_id)
            made = await self._maker.render_or_refuse(photo, [spec], faces)
            version = made[0]
        frame_id = message.frame_id
        cache = frame_id is not None and photo.frames.get(frame_id) != spec.name
        if made or cache:
            audit = Audit.system("media") if frame_id is None else Audit.frame(frame_id)
            async with self._store.transaction() as tx:
                stage_versions(tx, photo, made, audit, new_id())
                if frame_id is not None and cache:
                    tx.execute(UPSERT_CACHE, (photo.file_id, frame_id, spec.name, utc_now()))
            self._photos.keep_versions(photo, made)
            if frame_id is not None and cache:
                self._photos.cache(photo, frame_id, spec.name)
        return self._maker.blob(version)

    async def _delete_playlist(self, user_id: str, playlist_id: str) -> None:
        """The playlist goes; the schedules that showed it show everything."""
        self._playlists.get(user_id, playlist_id)
        async with self._store.transaction() as tx:
            self._playlists.stage_delete(tx, playlist_id)
            self._schedules.stage_unset_playlist(tx, playlist_id)
        self._playlists.forget(playlist_id)
        self._schedules.unset_playlist(playlist_id)

    async def _on_event(self, entry: Entry, tx: Transaction) -> None:
        match entry.event:
            case FileUploadedWithAi() as event:
                await _consumer.on_analysed(self._photos, self._maker, event, tx)
            case FileUploaded() as event:
                _consumer.on_uploaded(self._photos, event, tx)
            case FileDeleted() as event:
                _consumer.on_file_deleted(self._photos, self._playlists, event, tx)
            case DeviceDeleted() as event:
                _consumer.on_device_deleted(self._photos, self._schedules, event, tx)
            case _:
                pass
