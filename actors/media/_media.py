"""``/domain/media`` (seed media_service): photo metadata, sized versions, playlists, schedules.

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
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

import msgspec
import trio

from actors import imaging
from actors.blobs import BlobStore
from actors.errors import Invalid, NotFound, StorageFull
from actors.events import (
    AiMetadata,
    Audit,
    DeviceDeleted,
    Face,
    FileDeleted,
    FileUploaded,
    FileUploadedWithAi,
    MediaCacheReady,
    MediaVersionCreated,
    PhotoMetadataUpdated,
    new_id,
    utc_now,
)
from actors.journal import Consumer, Journal, JournalNudge
from actors.store import Entry, Rows, SortedRecords, Store, Transaction
from actors.text import check_text
from supervision import Actor

from ._messages import (
    MAX_NAME_LENGTH,
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
    PhotoPage,
    PhotoVersion,
    PhotoView,
    Playlist,
    PlaylistPage,
    Schedule,
    SchedulePage,
    UpdatePlaylist,
    VersionBlob,
    check_file_ids,
    check_panel,
    check_schedule,
)

log = logging.getLogger("framehub.media")

STANDARD_VERSIONS = (imaging.THUMBNAIL, imaging.HD)
"""Made for every upload; together they make a photo's cache ready."""

MEDIA_MIGRATIONS = (
    """
    CREATE TABLE photo_metadata (
        file_id TEXT PRIMARY KEY,
        owner_id TEXT NOT NULL,
        file_name TEXT NOT NULL,
        content_type TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        ai_metadata BLOB,
        created_at TEXT NOT NULL
    );
    CREATE TABLE photo_versions (
        file_id TEXT NOT NULL,
        size TEXT NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        PRIMARY KEY (file_id, size)
    );
    CREATE TABLE photo_cache (
        file_id TEXT NOT NULL,
        frame_id TEXT NOT NULL,
        size TEXT NOT NULL,
        cached_at TEXT NOT NULL,
        PRIMARY KEY (file_id, frame_id)
    );
    CREATE INDEX photo_cache_frame ON photo_cache (frame_id);
    CREATE TABLE playlists (
        playlist_id TEXT PRIMARY KEY,
        owner_id TEXT NOT NULL,
        name TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE playlist_items (
        playlist_id TEXT NOT NULL,
        file_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        PRIMARY KEY (playlist_id, file_id)
    );
    CREATE INDEX playlist_items_file ON playlist_items (file_id);
    CREATE TABLE rotation_schedules (
        schedule_id TEXT PRIMARY KEY,
        owner_id TEXT NOT NULL,
        frame_id TEXT NOT NULL,
        playlist_id TEXT,
        interval_s INTEGER NOT NULL,
        shuffle INTEGER NOT NULL,
        quiet_start TEXT,
        quiet_end TEXT,
        created_at TEXT NOT NULL
    );
    CREATE INDEX rotation_schedules_frame ON rotation_schedules (frame_id);
    """,
)
"""The ``media`` schema (seed table names). ``photo_metadata.sha256`` names the original blob;
``ai_metadata`` is the analysis as JSON, NULL until ``file.uploaded.with_ai`` arrives."""

SCHEDULES = Rows(Schedule)
_encode = msgspec.json.Encoder().encode
_decode_ai = msgspec.json.Decoder(AiMetadata).decode


class _Version(msgspec.Struct, frozen=True):
    size: str
    width: int
    height: int
    sha256: str


class _Photo:
    __slots__ = (
        "ai_digest",
        "content_type",
        "created_at",
        "file_id",
        "file_name",
        "frames",
        "height",
        "owner_id",
        "sha256",
        "versions",
        "width",
    )

    def __init__(
        self,
        file_id: str,
        owner_id: str,
        file_name: str,
        content_type: str,
        sha256: str,
        created_at: str,
    ) -> None:
        self.file_id = file_id
        self.owner_id = owner_id
        self.file_name = file_name
        self.content_type = content_type
        self.sha256 = sha256
        """The original's blob."""
        self.created_at = created_at
        self.width: int | None = None
        self.height: int | None = None
        self.ai_digest: bytes | None = None
        """Digest of the stored analysis JSON: a repeated analysis changes nothing."""
        self.versions: dict[str, _Version] = {}
        self.frames: dict[str, str] = {}
        """frame_id -> the version cached for it."""

    def take_analysis(self, ai: AiMetadata, digest: bytes) -> None:
        self.width, self.height, self.ai_digest = ai.width, ai.height, digest

    def missing_standard(self) -> list[imaging.VersionSpec]:
        return [spec for spec in STANDARD_VERSIONS if spec.name not in self.versions]


class _Playlist:
    __slots__ = ("created_at", "file_ids", "name", "owner_id", "playlist_id")

    def __init__(
        self, playlist_id: str, owner_id: str, name: str, created_at: str, file_ids: list[str]
    ) -> None:
        self.playlist_id = playlist_id
        self.owner_id = owner_id
        self.name = name
        self.created_at = created_at
        self.file_ids = file_ids

    def view(self) -> Playlist:
        return Playlist(
            playlist_id=self.playlist_id,
            owner_id=self.owner_id,
            name=self.name,
            file_ids=list(self.file_ids),
            created_at=self.created_at,
        )


def _is_image(content_type: str) -> bool:
    return content_type.startswith("image/")


def _audit_of(user_id: str | None) -> Audit:
    return Audit.system("media") if user_id is None else Audit.user(user_id)


def _release(counts: Counter[str], key: str) -> bool:
    """Count one reference to ``key`` less; True when that was the last one."""
    counts[key] -= 1
    if counts[key] > 0:
        return False
    del counts[key]
    return True


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


class MediaCache(Actor[MediaMessage]):
    """``/domain/media``: owns ``photo_metadata``, ``photo_versions``, ``photo_cache``,
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
        self._blobs = blobs
        self._sources = originals if originals is not None else blobs
        """Where the uploader keeps originals (read only here); versions go to ``blobs``."""
        self._limiter = limiter
        self._consumer: Consumer | None = None
        self._photos: SortedRecords[_Photo, tuple[str, str]] = SortedRecords(
            lambda p: (p.created_at, p.file_id), tuple[str, str], newest_first=True
        )
        self._version_refs: Counter[str] = Counter()
        """sha256 -> how many ``photo_versions`` rows name that blob."""
        self._originals: Counter[str] = Counter()
        """sha256 -> how many photos have it as their original (never deleted here)."""
        self._cached_on: dict[str, set[str]] = {}
        """frame_id -> the photos with a version cached for it."""
        self._playlists: SortedRecords[_Playlist, tuple[str, str]] = SortedRecords(
            lambda p: (p.created_at, p.playlist_id), tuple[str, str]
        )
        self._schedules: SortedRecords[Schedule, tuple[str, str]] = SortedRecords(
            lambda s: (s.created_at, s.schedule_id), tuple[str, str]
        )
        self._unreferenced: set[str] = set()
        """Version blobs whose last row went away in a committed transaction."""

    async def on_start(self) -> None:
        store = self._store
        await store.migrate("media", MEDIA_MIGRATIONS)
        for row in await store.fetch_all(
            "SELECT file_id, owner_id, file_name, content_type, sha256, created_at, ai_metadata "
            "FROM photo_metadata"
        ):
            photo = _Photo(*row[:6])
            if row[6] is not None:
                photo.take_analysis(_decode_ai(row[6]), _digest(row[6]))
            self._photos[photo.file_id] = photo
            self._originals[photo.sha256] += 1
        for file_id, size, width, height, sha256 in await store.fetch_all(
            "SELECT file_id, size, width, height, sha256 FROM photo_versions"
        ):
            self._photos[file_id].versions[size] = _Version(size, width, height, sha256)
            self._version_refs[sha256] += 1
        for file_id, frame_id, size in await store.fetch_all(
            "SELECT file_id, frame_id, size FROM photo_cache"
        ):
            self._photos[file_id].frames[frame_id] = size
            self._cached_on.setdefault(frame_id, set()).add(file_id)
        for playlist_id, owner_id, name, created_at in await store.fetch_all(
            "SELECT playlist_id, owner_id, name, created_at FROM playlists"
        ):
            self._playlists[playlist_id] = _Playlist(playlist_id, owner_id, name, created_at, [])
        for playlist_id, file_id in await store.fetch_all(
            "SELECT playlist_id, file_id FROM playlist_items ORDER BY playlist_id, position"
        ):
            self._playlists[playlist_id].file_ids.append(file_id)
        for schedule in SCHEDULES.all(
            await store.fetch_all(f"SELECT {SCHEDULES.columns} FROM rotation_schedules")
        ):
            self._schedules[schedule.schedule_id] = schedule
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
                photo = self._photo(user_id, file_id)
                (view,) = await self._views([photo], base_url)
                return view
            case ListPhotos(user_id=user_id, base_url=base_url, limit=limit, cursor=cursor):
                photos, next_cursor = self._photos.page(
                    limit, cursor, lambda p: p.owner_id == user_id
                )
                return PhotoPage(items=await self._views(photos, base_url), next_cursor=next_cursor)
            case GetVersion():
                return await self._standard_version(message)
            case GetFrameVersion():
                return await self._frame_version(message)
            case CreatePlaylist():
                return await self._create_playlist(message)
            case UpdatePlaylist():
                return await self._update_playlist(message)
            case GetPlaylist(user_id=user_id, playlist_id=playlist_id):
                return self._playlist(user_id, playlist_id).view()
            case ListPlaylists(user_id=user_id, limit=limit, cursor=cursor):
                playlists, next_cursor = self._playlists.page(
                    limit, cursor, lambda p: p.owner_id == user_id
                )
                return PlaylistPage(items=[p.view() for p in playlists], next_cursor=next_cursor)
            case DeletePlaylist(user_id=user_id, playlist_id=playlist_id):
                return await self._delete_playlist(self._playlist(user_id, playlist_id))
            case CreateSchedule():
                return await self._create_schedule(message)
            case ListSchedules(user_id=user_id, frame_id=frame_id, limit=limit, cursor=cursor):
                schedules, next_cursor = self._schedules.page(
                    limit,
                    cursor,
                    lambda s: s.owner_id == user_id and frame_id in (None, s.frame_id),
                )
                return SchedulePage(items=schedules, next_cursor=next_cursor)
            case GetFrameSchedule(frame_id=frame_id):
                return max(
                    (s for s in self._schedules.values() if s.frame_id == frame_id),
                    key=lambda s: (s.created_at, s.schedule_id),
                    default=None,
                )
            case DeleteSchedule(user_id=user_id, schedule_id=schedule_id):
                return await self._delete_schedule(user_id, schedule_id)

    async def _catch_up(self) -> None:
        """Handle every event already in the journal, then drop blobs nothing references.

        Every request starts with it, so that a photo whose upload has committed is known
        here even while the nudge for its events is still queued behind the request.
        """
        assert self._consumer is not None
        await self._consumer.drain()
        await self._collect_blobs()

    # -- photos and versions -------------------------------------------------------------------

    def _photo(self, user_id: str | None, file_id: str) -> _Photo:
        photo = self._photos.get(file_id)
        if photo is None or user_id not in (None, photo.owner_id):
            raise NotFound(f"no photo {file_id}")
        return photo

    async def _views(self, photos: Sequence[_Photo], base_url: str) -> list[PhotoView]:
        if not photos:
            return []
        marks = ", ".join("?" * len(photos))
        analyses = {
            file_id: _decode_ai(data)
            for file_id, data in await self._store.fetch_all(
                f"SELECT file_id, ai_metadata FROM photo_metadata WHERE file_id IN ({marks}) "
                "AND ai_metadata IS NOT NULL",
                [p.file_id for p in photos],
            )
        }
        base = base_url.rstrip("/")
        views = []
        for photo in photos:
            download = f"{base}/api/v1/files/download/{photo.file_id}"
            versions = [
                PhotoVersion(
                    size=v.size, width=v.width, height=v.height, url=f"{download}?size={v.size}"
                )
                for spec in STANDARD_VERSIONS
                if (v := photo.versions.get(spec.name)) is not None
            ]
            if photo.width is not None and photo.height is not None:
                versions.append(
                    PhotoVersion(
                        size="original", width=photo.width, height=photo.height, url=download
                    )
                )
            views.append(
                PhotoView(
                    file_id=photo.file_id,
                    file_name=photo.file_name,
                    content_type=photo.content_type,
                    versions=versions,
                    ai_metadata=analyses.get(photo.file_id, AiMetadata()),
                    cached_for_frames=sorted(photo.frames),
                    created_at=photo.created_at,
                )
            )
        return views

    async def _standard_version(self, message: GetVersion) -> VersionBlob:
        photo = self._photo(message.user_id, message.file_id)
        if message.size not in photo.versions:
            audit = _audit_of(message.user_id)
            made = await self._render_or_refuse(photo, photo.missing_standard(), ())
            async with self._store.transaction() as tx:
                self._stage_versions(tx, photo, made, audit, new_id())
            self._keep_versions(photo, made)
        return self._blob(photo.versions[message.size])

    async def _frame_version(self, message: GetFrameVersion) -> VersionBlob:
        check_panel(message.width, message.height)
        photo = self._photo(message.user_id, message.file_id)
        spec = imaging.frame_spec(message.width, message.height, message.fill)
        version = photo.versions.get(spec.name)
        made: list[_Version] = []
        if version is None:
            made = await self._render_or_refuse(photo, [spec], await self._faces(photo.file_id))
            version = made[0]
        frame_id = message.frame_id
        cache = frame_id is not None and photo.frames.get(frame_id) != spec.name
        if made or cache:
            audit = Audit.system("media") if frame_id is None else Audit.frame(frame_id)
            async with self._store.transaction() as tx:
                self._stage_versions(tx, photo, made, audit, new_id())
                if frame_id is not None and cache:
                    tx.execute(
                        "INSERT INTO photo_cache (file_id, frame_id, size, cached_at) "
                        "VALUES (?, ?, ?, ?) ON CONFLICT (file_id, frame_id) DO UPDATE SET "
                        "size = excluded.size, cached_at = excluded.cached_at",
                        (photo.file_id, frame_id, spec.name, utc_now()),
                    )
            self._keep_versions(photo, made)
            if frame_id is not None and cache:
                photo.frames[frame_id] = spec.name
                self._cached_on.setdefault(frame_id, set()).add(photo.file_id)
        return self._blob(version)

    async def _faces(self, file_id: str) -> list[Face]:
        row = await self._store.fetch_one(
            "SELECT ai_metadata FROM photo_metadata WHERE file_id = ?", (file_id,)
        )
        if row is None or row[0] is None:
            return []
        return _decode_ai(row[0]).faces

    def _blob(self, version: _Version) -> VersionBlob:
        return VersionBlob(
            path=str(self._blobs.path(version.sha256)),
            sha256=version.sha256,
            width=version.width,
            height=version.height,
        )

    async def _render(
        self, original: str, specs: Sequence[imaging.VersionSpec], faces: Sequence[Face]
    ) -> list[_Version]:
        """Make ``specs`` from the original blob (one decode) and store each as a blob."""
        rendered = await trio.to_thread.run_sync(
            imaging.render_versions,
            self._sources.path(original),
            list(specs),
            list(faces),
            limiter=self._limiter,
        )
        return [
            _Version(r.name, r.width, r.height, await self._blobs.put_bytes(r.data))
            for r in rendered
        ]

    async def _render_or_refuse(
        self, photo: _Photo, specs: Sequence[imaging.VersionSpec], faces: Sequence[Face]
    ) -> list[_Version]:
        """``_render`` for a request: a vanished or undecodable original is the caller's error."""
        try:
            return await self._render(photo.sha256, specs, faces)
        except FileNotFoundError:
            raise NotFound(f"photo {photo.file_id} has no original any more") from None
        except imaging.ImageRejected as error:
            raise Invalid(f"photo {photo.file_id} cannot be resized: {error}") from None

    def _stage_versions(
        self,
        tx: Transaction,
        photo: _Photo,
        made: Sequence[_Version],
        audit: Audit,
        correlation_id: str,
    ) -> None:
        """Rows and ``media.version_created`` for new versions; ``media.cache_ready`` when they
        complete the standard set (so it is published once per photo)."""
        for version in made:
            tx.execute(
                "INSERT INTO photo_versions (file_id, size, width, height, sha256) "
                "VALUES (?, ?, ?, ?, ?)",
                (photo.file_id, version.size, version.width, version.height, version.sha256),
            )
            tx.publish(
                MediaVersionCreated(
                    audit=audit,
                    correlation_id=correlation_id,
                    file_id=photo.file_id,
                    size=version.size,
                    width=version.width,
                    height=version.height,
                    sha256=version.sha256,
                )
            )
        missing = {spec.name for spec in photo.missing_standard()}
        if missing and missing <= {version.size for version in made}:
            tx.publish(
                MediaCacheReady(
                    audit=audit,
                    correlation_id=correlation_id,
                    file_id=photo.file_id,
                    sizes=[spec.name for spec in STANDARD_VERSIONS],
                )
            )

    def _keep_versions(self, photo: _Photo, made: Sequence[_Version]) -> None:
        for version in made:
            photo.versions[version.size] = version
            self._version_refs[version.sha256] += 1

    async def _collect_blobs(self) -> None:
        while self._unreferenced:
            sha256 = self._unreferenced.pop()
            if sha256 in self._version_refs or sha256 in self._originals:
                continue
            try:
                await self._blobs.delete(sha256)
            except OSError as error:
                log.warning("could not delete the unused version blob %s: %r", sha256, error)

    # -- journal handlers ----------------------------------------------------------------------

    async def _on_event(self, entry: Entry, tx: Transaction) -> None:
        match entry.event:
            case FileUploadedWithAi() as event:
                await self._on_analysed(event, tx)
            case FileUploaded() as event:
                self._on_uploaded(event, tx)
            case FileDeleted() as event:
                self._on_deleted(event, tx)
            case DeviceDeleted() as event:
                self._on_device_deleted(event, tx)
            case _:
                pass

    def _new_photo(self, event: FileUploaded | FileUploadedWithAi) -> _Photo:
        return _Photo(
            event.file_id,
            event.user_id,
            event.file_name,
            event.content_type,
            event.sha256,
            event.occurred_at,
        )

    def _on_uploaded(self, event: FileUploaded, tx: Transaction) -> None:
        if not _is_image(event.content_type) or event.file_id in self._photos:
            return
        photo = self._new_photo(event)
        tx.execute(
            "INSERT INTO photo_metadata (file_id, owner_id, file_name, content_type, sha256, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (file_id) DO NOTHING",
            (
                photo.file_id,
                photo.owner_id,
                photo.file_name,
                photo.content_type,
                photo.sha256,
                photo.created_at,
            ),
        )
        self._photos[photo.file_id] = photo
        self._originals[photo.sha256] += 1

    async def _on_analysed(self, event: FileUploadedWithAi, tx: Transaction) -> None:
        if not _is_image(event.content_type):
            return
        known = self._photos.get(event.file_id)
        photo = known or self._new_photo(event)
        analysis = _encode(event.ai_metadata)
        digest = _digest(analysis)
        made: list[_Version] = []
        specs = photo.missing_standard()
        if specs:
            try:
                made = await self._render(event.sha256, specs, event.ai_metadata.faces)
            except (FileNotFoundError, imaging.ImageRejected) as error:
                # The original went (deleted meanwhile) or cannot be read: retrying would not
                # help. Versions are made on request if it ever can be.
                log.warning("no versions for %s: %r", event.file_id, error)
            except StorageFull as error:
                # No room for them now: record the analysis anyway (retrying the event would
                # park it as a dead letter if the disk stays full); the versions are made on
                # request once there is room.
                log.warning("no versions for %s yet: %s", event.file_id, error)
        if known is None:
            tx.execute(
                "INSERT INTO photo_metadata (file_id, owner_id, file_name, content_type, sha256, "
                "ai_metadata, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    photo.file_id,
                    photo.owner_id,
                    photo.file_name,
                    photo.content_type,
                    photo.sha256,
                    analysis,
                    photo.created_at,
                ),
            )
        elif photo.ai_digest != digest:
            tx.execute(
                "UPDATE photo_metadata SET ai_metadata = ? WHERE file_id = ?",
                (analysis, photo.file_id),
            )
        if photo.ai_digest != digest:
            tx.publish(
                PhotoMetadataUpdated(
                    audit=event.audit,
                    correlation_id=event.correlation_id,
                    file_id=photo.file_id,
                    ai_metadata=event.ai_metadata,
                )
            )
        self._stage_versions(tx, photo, made, event.audit, event.correlation_id)
        # Memory last: everything above either stays in the transaction or raised.
        photo.take_analysis(event.ai_metadata, digest)
        if known is None:
            self._photos[photo.file_id] = photo
            self._originals[photo.sha256] += 1
        self._keep_versions(photo, made)

    def _on_deleted(self, event: FileDeleted, tx: Transaction) -> None:
        for table in ("photo_versions", "photo_cache", "playlist_items", "photo_metadata"):
            tx.execute(f"DELETE FROM {table} WHERE file_id = ?", (event.file_id,))
        photo = self._photos.pop(event.file_id, None)
        if photo is None:
            return
        _release(self._originals, photo.sha256)
        dropped = {
            version.sha256
            for version in photo.versions.values()
            if _release(self._version_refs, version.sha256)
        }
        for frame_id in photo.frames:
            self._uncache(frame_id, photo.file_id)
        for playlist in self._playlists.values():
            if photo.file_id in playlist.file_ids:
                playlist.file_ids.remove(photo.file_id)
        tx.on_commit(lambda: self._unreferenced.update(dropped))

    def _on_device_deleted(self, event: DeviceDeleted, tx: Transaction) -> None:
        frame_id = event.device_id
        tx.execute("DELETE FROM rotation_schedules WHERE frame_id = ?", (frame_id,))
        tx.execute("DELETE FROM photo_cache WHERE frame_id = ?", (frame_id,))
        for schedule in [s for s in self._schedules.values() if s.frame_id == frame_id]:
            del self._schedules[schedule.schedule_id]
        for file_id in self._cached_on.pop(frame_id, set()):
            self._photos[file_id].frames.pop(frame_id, None)

    def _uncache(self, frame_id: str, file_id: str) -> None:
        files = self._cached_on.get(frame_id)
        if files is not None:
            files.discard(file_id)
            if not files:
                del self._cached_on[frame_id]

    # -- playlists -----------------------------------------------------------------------------

    def _playlist(self, user_id: str, playlist_id: str) -> _Playlist:
        playlist = self._playlists.get(playlist_id)
        if playlist is None or playlist.owner_id != user_id:
            raise NotFound(f"no playlist {playlist_id}")
        return playlist

    def _own_photos(self, user_id: str, file_ids: list[str]) -> list[str]:
        """A copy of ``file_ids`` if each is one of the user's photos (else ``NotFound``)."""
        check_file_ids(file_ids)
        for file_id in file_ids:
            self._photo(user_id, file_id)
        return list(file_ids)

    async def _create_playlist(self, message: CreatePlaylist) -> Playlist:
        name = check_text(message.name, "playlist name", MAX_NAME_LENGTH)
        file_ids = self._own_photos(message.user_id, message.file_ids)
        playlist = _Playlist(new_id(), message.user_id, name, utc_now(), file_ids)
        async with self._store.transaction() as tx:
            tx.execute(
                "INSERT INTO playlists (playlist_id, owner_id, name, created_at) "
                "VALUES (?, ?, ?, ?)",
                (playlist.playlist_id, playlist.owner_id, playlist.name, playlist.created_at),
            )
            self._stage_items(tx, playlist.playlist_id, file_ids)
        self._playlists[playlist.playlist_id] = playlist
        return playlist.view()

    async def _update_playlist(self, message: UpdatePlaylist) -> Playlist:
        playlist = self._playlist(message.user_id, message.playlist_id)
        name = (
            None
            if message.name is None
            else check_text(message.name, "playlist name", MAX_NAME_LENGTH)
        )
        file_ids = message.file_ids
        if file_ids is not None:
            file_ids = self._own_photos(message.user_id, file_ids)
        async with self._store.transaction() as tx:
            if name is not None:
                tx.execute(
                    "UPDATE playlists SET name = ? WHERE playlist_id = ?",
                    (name, playlist.playlist_id),
                )
            if file_ids is not None:
                tx.execute(
                    "DELETE FROM playlist_items WHERE playlist_id = ?", (playlist.playlist_id,)
                )
                self._stage_items(tx, playlist.playlist_id, file_ids)
        if name is not None:
            playlist.name = name
        if file_ids is not None:
            playlist.file_ids = file_ids
        return playlist.view()

    @staticmethod
    def _stage_items(tx: Transaction, playlist_id: str, file_ids: list[str]) -> None:
        tx.executemany(
            "INSERT INTO playlist_items (playlist_id, file_id, position) VALUES (?, ?, ?)",
            [(playlist_id, file_id, position) for position, file_id in enumerate(file_ids)],
        )

    async def _delete_playlist(self, playlist: _Playlist) -> None:
        users = [s for s in self._schedules.values() if s.playlist_id == playlist.playlist_id]
        async with self._store.transaction() as tx:
            tx.execute("DELETE FROM playlist_items WHERE playlist_id = ?", (playlist.playlist_id,))
            tx.execute("DELETE FROM playlists WHERE playlist_id = ?", (playlist.playlist_id,))
            tx.execute(
                "UPDATE rotation_schedules SET playlist_id = NULL WHERE playlist_id = ?",
                (playlist.playlist_id,),
            )
        del self._playlists[playlist.playlist_id]
        for schedule in users:
            self._schedules[schedule.schedule_id] = msgspec.structs.replace(
                schedule, playlist_id=None
            )

    # -- schedules -----------------------------------------------------------------------------

    async def _create_schedule(self, message: CreateSchedule) -> Schedule:
        check_schedule(message)
        if message.playlist_id is not None:
            self._playlist(message.user_id, message.playlist_id)
        schedule = Schedule(
            schedule_id=new_id(),
            owner_id=message.user_id,
            frame_id=message.frame_id,
            playlist_id=message.playlist_id,
            interval_s=message.interval_s,
            shuffle=message.shuffle,
            quiet_start=message.quiet_start,
            quiet_end=message.quiet_end,
            created_at=utc_now(),
        )
        async with self._store.transaction() as tx:
            tx.execute(SCHEDULES.insert("rotation_schedules"), SCHEDULES.values(schedule))
        self._schedules[schedule.schedule_id] = schedule
        return schedule

    async def _delete_schedule(self, user_id: str, schedule_id: str) -> None:
        schedule = self._schedules.get(schedule_id)
        if schedule is None or schedule.owner_id != user_id:
            raise NotFound(f"no schedule {schedule_id}")
        async with self._store.transaction() as tx:
            tx.execute("DELETE FROM rotation_schedules WHERE schedule_id = ?", (schedule_id,))
        del self._schedules[schedule_id]
