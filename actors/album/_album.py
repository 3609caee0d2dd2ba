"""The album actor (seed album_service): albums, their photos, and which frames synced them.

The actor learns which files exist and who owns them from the uploader's events (it never
reads another actor's tables) and keeps everything it answers from in memory, rebuilt from its
own tables in ``on_start``.

Two paths change state. Requests commit their own transaction and change memory once it has
committed. Journal handlers add their effects to the consumer's transaction, which may hold a
whole batch of events (an upload and its deletion, say): each handler changes memory as its
last step, after everything that can fail, so the next handler of the batch sees it. If that
transaction then fails to commit, ``drain`` raises, the actor crashes and its restart rebuilds
memory from the database, which never saw the batch.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from actors.errors import NotFound
from actors.events import (
    AlbumCreated,
    AlbumDeleted,
    AlbumPhotoAdded,
    AlbumPhotoRemoved,
    Audit,
    FileDeleted,
    FileUploaded,
    FileUploadedWithAi,
    new_id,
    utc_now,
)
from actors.journal import Consumer, Journal, JournalNudge
from actors.store import DEFAULT_PAGE, Entry, SortedRecords, Store, Transaction
from actors.text import check_text
from supervision import Actor, Request

log = logging.getLogger("framehub.album")

MAX_NAME_LENGTH = 100

ALBUM_MIGRATIONS = (
    """
    CREATE TABLE albums (
        album_id TEXT PRIMARY KEY,
        owner_id TEXT NOT NULL,
        name TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX albums_owner ON albums (owner_id, created_at);
    CREATE TABLE album_photos (
        album_id TEXT NOT NULL,
        file_id TEXT NOT NULL,
        added_at TEXT NOT NULL,
        PRIMARY KEY (album_id, file_id)
    );
    CREATE INDEX album_photos_file ON album_photos (file_id);
    CREATE TABLE album_sync_status (
        album_id TEXT NOT NULL,
        frame_id TEXT NOT NULL,
        synced_seq INTEGER NOT NULL,
        synced_at TEXT NOT NULL,
        PRIMARY KEY (album_id, frame_id)
    );
    CREATE TABLE album_files (
        file_id TEXT PRIMARY KEY,
        owner_id TEXT NOT NULL
    );
    """,
    """
    ALTER TABLE album_files ADD COLUMN file_name TEXT NOT NULL DEFAULT '';
    ALTER TABLE album_files ADD COLUMN content_type TEXT NOT NULL DEFAULT '';
    ALTER TABLE album_files ADD COLUMN labels TEXT NOT NULL DEFAULT '[]';
    """,
)
"""The ``album`` schema. ``album_files`` is this actor's own record of who owns which file,
with the facts ``album.photo_added`` carries to frames (name, type, labels)."""

# -- messages ----------------------------------------------------------------------------------


class CreateAlbum(Request["AlbumInfo"], frozen=True, kw_only=True):
    """Create an album owned by ``user_id``; answers ``AlbumInfo`` (``Invalid`` for the name)."""

    user_id: str
    name: str
    correlation_id: str | None = None


class ListAlbums(Request["AlbumPage"], frozen=True, kw_only=True):
    """The user's albums, oldest first; answers ``AlbumPage``."""

    user_id: str
    limit: int = DEFAULT_PAGE
    cursor: str | None = None


class GetAlbum(Request["AlbumDetail"], frozen=True, kw_only=True):
    """One album with its photos in the order they were added; answers ``AlbumDetail``."""

    user_id: str
    album_id: str


class DeleteAlbum(Request[None], frozen=True, kw_only=True):
    """Delete an album (its photos stay uploaded); answers None."""

    user_id: str
    album_id: str
    correlation_id: str | None = None


class AddPhotoToAlbum(Request["AlbumPhoto"], frozen=True, kw_only=True):
    """Add one of the user's photos to one of their albums; answers ``AlbumPhoto``.

    Adding a photo that is already there changes nothing and publishes nothing.
    """

    user_id: str
    album_id: str
    file_id: str
    correlation_id: str | None = None


class RemovePhotoFromAlbum(Request[None], frozen=True, kw_only=True):
    """Take a photo out of an album; answers None (also when it was not there)."""

    user_id: str
    album_id: str
    file_id: str
    correlation_id: str | None = None


class GetAlbumContents(Request["AlbumContents"], frozen=True, kw_only=True):
    """The photos of albums, whoever owns them (for frames); answers ``AlbumContents``.

    Albums that do not exist are listed in ``missing``, not raised: a frame's assignment may
    name an album deleted a moment ago.
    """

    album_ids: list[str]


AlbumMessage = (
    JournalNudge
    | GetAlbumContents
    | CreateAlbum
    | ListAlbums
    | GetAlbum
    | DeleteAlbum
    | AddPhotoToAlbum
    | RemovePhotoFromAlbum
)


class AlbumInfo(msgspec.Struct, frozen=True, kw_only=True):
    album_id: str
    name: str
    owner_id: str
    photo_count: int
    created_at: str


class AlbumDetail(AlbumInfo, frozen=True, kw_only=True):
    file_ids: list[str]
    """In the order they were added, oldest first."""


class AlbumPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[AlbumInfo]
    next_cursor: str | None


class AlbumPhoto(msgspec.Struct, frozen=True, kw_only=True):
    album_id: str
    file_id: str
    added_at: str


class AlbumContents(msgspec.Struct, frozen=True, kw_only=True):
    photos: dict[str, list[str]]
    """album_id -> its file ids, oldest first."""
    missing: list[str]


# -- state -------------------------------------------------------------------------------------


class _Facts(msgspec.Struct, frozen=True):
    file_name: str
    content_type: str
    labels: list[str]

    def row(self) -> tuple[str, str, str]:
        return (self.file_name, self.content_type, msgspec.json.encode(self.labels).decode())


_NO_FACTS = _Facts("", "", [])
_decode_label_list = msgspec.json.Decoder(list[str]).decode


def _decode_labels(text: str) -> list[str]:
    try:
        return _decode_label_list(text)
    except msgspec.DecodeError:
        return []


class _Album:
    __slots__ = ("album_id", "created_at", "name", "owner_id", "photos")

    def __init__(self, album_id: str, owner_id: str, name: str, created_at: str) -> None:
        self.album_id = album_id
        self.owner_id = owner_id
        self.name = name
        self.created_at = created_at
        self.photos: dict[str, str] = {}
        """file_id -> added_at, in the order added."""

    def info(self) -> AlbumInfo:
        return AlbumInfo(
            album_id=self.album_id,
            name=self.name,
            owner_id=self.owner_id,
            photo_count=len(self.photos),
            created_at=self.created_at,
        )

    def detail(self) -> AlbumDetail:
        return AlbumDetail(
            album_id=self.album_id,
            name=self.name,
            owner_id=self.owner_id,
            photo_count=len(self.photos),
            created_at=self.created_at,
            file_ids=list(self.photos),
        )


# -- the actor ---------------------------------------------------------------------------------


class Album(Actor[AlbumMessage]):
    """The album actor: owns ``albums``, ``album_photos``, ``album_sync_status``, ``album_files``.

    Journal consumer ``album`` on ``file.uploaded``, ``file.uploaded.with_ai`` (learn the
    owner; file the photo into ``metadata["album_id"]`` when that album is the uploader's) and
    ``file.deleted`` (take the photo out of every album, forget the file).
    """

    def __init__(self, store: Store, journal: Journal) -> None:
        self._store = store
        self._journal = journal
        self._consumer: Consumer | None = None
        self._albums: SortedRecords[_Album, tuple[str, str]] = SortedRecords(
            lambda a: (a.created_at, a.album_id), tuple[str, str]
        )
        self._owners: dict[str, str] = {}
        """file_id -> owner_id of every file this actor has heard of."""
        self._albums_of: dict[str, set[str]] = {}
        """file_id -> the albums it is in."""
        self._facts: dict[str, _Facts] = {}
        """file_id -> what frames are told of it."""

    async def on_start(self) -> None:
        await self._store.migrate("album", ALBUM_MIGRATIONS)
        for album_id, owner_id, name, created_at in await self._store.fetch_all(
            "SELECT album_id, owner_id, name, created_at FROM albums"
        ):
            self._albums[album_id] = _Album(album_id, owner_id, name, created_at)
        for album_id, file_id, added_at in await self._store.fetch_all(
            "SELECT album_id, file_id, added_at FROM album_photos ORDER BY added_at, rowid"
        ):
            self._albums[album_id].photos[file_id] = added_at
            self._albums_of.setdefault(file_id, set()).add(album_id)
        for file_id, owner_id, file_name, content_type, labels in await self._store.fetch_all(
            "SELECT file_id, owner_id, file_name, content_type, labels FROM album_files"
        ):
            self._owners[file_id] = owner_id
            self._facts[file_id] = _Facts(file_name, content_type, _decode_labels(labels))
        self._consumer = await self._journal.consume(
            "album",
            ["file.uploaded", "file.uploaded.with_ai", "file.deleted"],
            self.context,
            self._on_event,
        )

    async def on_stop(self) -> None:
        if self._consumer is not None:
            self._consumer.close()

    async def receive(self, message: AlbumMessage) -> Any:
        # Every request first handles the events already in the journal, so that a file whose
        # upload has committed is known here even while the nudge for it is still queued.
        assert self._consumer is not None
        await self._consumer.drain()
        match message:
            case JournalNudge():
                return None
            case CreateAlbum():
                return await self._create(message)
            case ListAlbums(user_id=user_id, limit=limit, cursor=cursor):
                return self._list(user_id, limit, cursor)
            case GetAlbum(user_id=user_id, album_id=album_id):
                return self._owned(user_id, album_id).detail()
            case GetAlbumContents(album_ids=album_ids):
                return self._contents(album_ids)
            case DeleteAlbum():
                return await self._delete(message)
            case AddPhotoToAlbum():
                return await self._add(message)
            case RemovePhotoFromAlbum():
                return await self._remove(message)

    # -- requests ------------------------------------------------------------------------------

    async def _create(self, message: CreateAlbum) -> AlbumInfo:
        name = check_text(message.name, "album name", MAX_NAME_LENGTH)
        album = _Album(new_id(), message.user_id, name, utc_now())
        async with self._store.transaction() as tx:
            tx.execute(
                "INSERT INTO albums (album_id, owner_id, name, created_at) VALUES (?, ?, ?, ?)",
                (album.album_id, album.owner_id, album.name, album.created_at),
            )
            tx.publish(
                AlbumCreated(
                    audit=Audit.user(message.user_id),
                    album_id=album.album_id,
                    owner_id=album.owner_id,
                    name=album.name,
                    correlation_id=message.correlation_id or new_id(),
                )
            )
        self._albums[album.album_id] = album
        return album.info()

    def _list(self, user_id: str, limit: int, cursor: str | None) -> AlbumPage:
        page, next_cursor = self._albums.page(limit, cursor, lambda a: a.owner_id == user_id)
        return AlbumPage(items=[a.info() for a in page], next_cursor=next_cursor)

    async def _delete(self, message: DeleteAlbum) -> None:
        album = self._owned(message.user_id, message.album_id)
        async with self._store.transaction() as tx:
            for sql in (
                "DELETE FROM album_photos WHERE album_id = ?",
                "DELETE FROM album_sync_status WHERE album_id = ?",
                "DELETE FROM albums WHERE album_id = ?",
            ):
                tx.execute(sql, (album.album_id,))
            tx.publish(
                AlbumDeleted(
                    audit=Audit.user(message.user_id),
                    album_id=album.album_id,
                    correlation_id=message.correlation_id or new_id(),
                )
            )
        del self._albums[album.album_id]
        for file_id in album.photos:
            self._unindex(file_id, album.album_id)

    async def _add(self, message: AddPhotoToAlbum) -> AlbumPhoto:
        album = self._owned(message.user_id, message.album_id)
        if self._owners.get(message.file_id) != message.user_id:
            raise NotFound(f"no photo {message.file_id}")
        added_at = album.photos.get(message.file_id)
        if added_at is None:
            added_at = utc_now()
            async with self._store.transaction() as tx:
                self._stage_add(
                    tx,
                    album,
                    message.file_id,
                    added_at,
                    Audit.user(message.user_id),
                    message.correlation_id or new_id(),
                )
            self._index(album, message.file_id, added_at)
        return AlbumPhoto(album_id=album.album_id, file_id=message.file_id, added_at=added_at)

    async def _remove(self, message: RemovePhotoFromAlbum) -> None:
        album = self._owned(message.user_id, message.album_id)
        if message.file_id not in album.photos:
            return
        async with self._store.transaction() as tx:
            self._stage_remove(
                tx,
                album,
                message.file_id,
                Audit.user(message.user_id),
                message.correlation_id or new_id(),
            )
        del album.photos[message.file_id]
        self._unindex(message.file_id, album.album_id)

    def _contents(self, album_ids: list[str]) -> AlbumContents:
        photos: dict[str, list[str]] = {}
        missing: list[str] = []
        for album_id in album_ids:
            album = self._albums.get(album_id)
            if album is None:
                missing.append(album_id)
            else:
                photos[album_id] = list(album.photos)
        return AlbumContents(photos=photos, missing=missing)

    def _owned(self, user_id: str, album_id: str) -> _Album:
        album = self._albums.get(album_id)
        if album is None or album.owner_id != user_id:
            raise NotFound(f"no album {album_id}")
        return album

    # -- journal handlers ----------------------------------------------------------------------

    async def _on_event(self, entry: Entry, tx: Transaction) -> None:
        match entry.event:
            case FileUploaded() | FileUploadedWithAi() as event:
                self._on_uploaded(event, tx)
            case FileDeleted() as event:
                self._on_deleted(event, tx)
            case _:
                pass

    def _on_uploaded(self, event: FileUploaded | FileUploadedWithAi, tx: Transaction) -> None:
        labels = event.ai_metadata.labels if isinstance(event, FileUploadedWithAi) else []
        facts = _Facts(event.file_name, event.content_type, labels)
        if event.file_id not in self._owners:
            tx.execute(
                "INSERT INTO album_files (file_id, owner_id, file_name, content_type, labels) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (file_id) DO NOTHING",
                (event.file_id, event.user_id, *facts.row()),
            )
        elif isinstance(event, FileUploadedWithAi):
            tx.execute(
                "UPDATE album_files SET file_name = ?, content_type = ?, labels = ? "
                "WHERE file_id = ?",
                (*facts.row(), event.file_id),
            )
        album = self._album_named_by(event) if isinstance(event, FileUploadedWithAi) else None
        if album is not None and event.file_id in album.photos:
            album = None
        added_at = utc_now()
        if album is not None:
            self._stage_add(tx, album, event.file_id, added_at, event.audit, event.correlation_id)
        # Memory last: everything above either stays in the transaction or raised.
        self._owners.setdefault(event.file_id, event.user_id)
        if event.file_id not in self._facts or isinstance(event, FileUploadedWithAi):
            self._facts[event.file_id] = facts
        if album is not None:
            self._index(album, event.file_id, added_at)

    def _album_named_by(self, event: FileUploadedWithAi) -> _Album | None:
        """The album the upload asked to be filed into, if it may be: the uploader's own."""
        album_id = event.metadata.get("album_id")
        if not album_id:
            return None
        album = self._albums.get(album_id)
        if album is None or album.owner_id != event.user_id:
            log.warning(
                "upload %s of user %s names album %s, which does not exist or is not theirs; "
                "not added (correlation %s)",
                event.file_id,
                event.user_id,
                album_id,
                event.correlation_id,
            )
            return None
        if self._owners.get(event.file_id, event.user_id) != event.user_id:
            log.warning("upload %s: the file belongs to another user; not added", event.file_id)
            return None
        return album

    def _on_deleted(self, event: FileDeleted, tx: Transaction) -> None:
        albums = [self._albums[a] for a in sorted(self._albums_of.get(event.file_id, ()))]
        for album in albums:
            self._stage_remove(tx, album, event.file_id, event.audit, event.correlation_id)
        tx.execute("DELETE FROM album_files WHERE file_id = ?", (event.file_id,))
        for album in albums:
            del album.photos[event.file_id]
        self._albums_of.pop(event.file_id, None)
        self._owners.pop(event.file_id, None)
        self._facts.pop(event.file_id, None)

    # -- helpers -------------------------------------------------------------------------------

    def _stage_add(
        self,
        tx: Transaction,
        album: _Album,
        file_id: str,
        added_at: str,
        audit: Audit,
        correlation_id: str,
    ) -> None:
        tx.execute(
            "INSERT INTO album_photos (album_id, file_id, added_at) VALUES (?, ?, ?) "
            "ON CONFLICT (album_id, file_id) DO NOTHING",
            (album.album_id, file_id, added_at),
        )
        facts = self._facts.get(file_id, _NO_FACTS)
        tx.publish(
            AlbumPhotoAdded(
                audit=audit,
                album_id=album.album_id,
                file_id=file_id,
                correlation_id=correlation_id,
                file_name=facts.file_name,
                content_type=facts.content_type,
                ai_labels=facts.labels,
            )
        )

    def _stage_remove(
        self,
        tx: Transaction,
        album: _Album,
        file_id: str,
        audit: Audit,
        correlation_id: str,
    ) -> None:
        tx.execute(
            "DELETE FROM album_photos WHERE album_id = ? AND file_id = ?",
            (album.album_id, file_id),
        )
        tx.publish(
            AlbumPhotoRemoved(
                audit=audit,
                album_id=album.album_id,
                file_id=file_id,
                correlation_id=correlation_id,
            )
        )

    def _index(self, album: _Album, file_id: str, added_at: str) -> None:
        album.photos[file_id] = added_at
        self._albums_of.setdefault(file_id, set()).add(album.album_id)

    def _unindex(self, file_id: str, album_id: str) -> None:
        albums = self._albums_of.get(file_id)
        if albums is not None:
            albums.discard(album_id)
            if not albums:
                del self._albums_of[file_id]
