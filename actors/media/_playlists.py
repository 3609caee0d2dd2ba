"""Playlists (a user's photos in a chosen order) and the rotation schedules that show them on
a frame.

Each request commits its own transaction and changes memory once it has committed. A deleted
photo leaves every playlist; a deleted playlist leaves its schedules showing everything
(``playlist_id`` None); a deleted frame takes its schedules with it.
"""

from __future__ import annotations

import msgspec

from actors.errors import NotFound
from actors.events import new_id, utc_now
from actors.store import SortedRecords, Store, Transaction
from actors.text import check_text

from ._messages import (
    MAX_NAME_LENGTH,
    CreatePlaylist,
    CreateSchedule,
    Playlist,
    PlaylistPage,
    Schedule,
    SchedulePage,
    UpdatePlaylist,
    check_file_ids,
)
from ._photos import Photos
from ._tables import (
    DELETE_PLAYLIST,
    DELETE_PLAYLIST_ITEMS,
    DELETE_SCHEDULE,
    INSERT_PLAYLIST,
    INSERT_PLAYLIST_ITEM,
    INSERT_SCHEDULE,
    RENAME_PLAYLIST,
    SCHEDULES,
    SELECT_PLAYLIST_ITEMS,
    SELECT_PLAYLISTS,
    SELECT_SCHEDULES,
    UNSET_SCHEDULES_PLAYLIST,
)


class PlaylistRecord:
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


class Playlists:
    """Every playlist by id, oldest first when paged; its photos must be its owner's."""

    def __init__(self, store: Store, photos: Photos) -> None:
        self._store = store
        self._photos = photos
        self._playlists: SortedRecords[PlaylistRecord, tuple[str, str]] = SortedRecords(
            lambda p: (p.created_at, p.playlist_id), tuple[str, str]
        )

    async def load(self) -> None:
        """Rebuild from the tables (at start)."""
        for playlist_id, owner_id, name, created_at in await self._store.fetch_all(
            SELECT_PLAYLISTS
        ):
            self._playlists[playlist_id] = PlaylistRecord(
                playlist_id, owner_id, name, created_at, []
            )
        for playlist_id, file_id in await self._store.fetch_all(SELECT_PLAYLIST_ITEMS):
            self._playlists[playlist_id].file_ids.append(file_id)

    def get(self, user_id: str, playlist_id: str) -> PlaylistRecord:
        """The user's playlist ``playlist_id``, else ``NotFound``."""
        playlist = self._playlists.get(playlist_id)
        if playlist is None or playlist.owner_id != user_id:
            raise NotFound(f"no playlist {playlist_id}")
        return playlist

    def page(self, user_id: str, limit: int, cursor: str | None) -> PlaylistPage:
        playlists, next_cursor = self._playlists.page(
            limit, cursor, lambda p: p.owner_id == user_id
        )
        return PlaylistPage(items=[p.view() for p in playlists], next_cursor=next_cursor)

    async def create(self, message: CreatePlaylist) -> Playlist:
        name = check_text(message.name, "playlist name", MAX_NAME_LENGTH)
        file_ids = self._own_photos(message.user_id, message.file_ids)
        playlist = PlaylistRecord(new_id(), message.user_id, name, utc_now(), file_ids)
        async with self._store.transaction() as tx:
            tx.execute(
                INSERT_PLAYLIST,
                (playlist.playlist_id, playlist.owner_id, playlist.name, playlist.created_at),
            )
            _stage_items(tx, playlist.playlist_id, file_ids)
        self._playlists[playlist.playlist_id] = playlist
        return playlist.view()

    async def update(self, message: UpdatePlaylist) -> Playlist:
        playlist = self.get(message.user_id, message.playlist_id)
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
                tx.execute(RENAME_PLAYLIST, (name, playlist.playlist_id))
            if file_ids is not None:
                tx.execute(DELETE_PLAYLIST_ITEMS, (playlist.playlist_id,))
                _stage_items(tx, playlist.playlist_id, file_ids)
        if name is not None:
            playlist.name = name
        if file_ids is not None:
            playlist.file_ids = file_ids
        return playlist.view()

    def stage_delete(self, tx: Transaction, playlist_id: str) -> None:
        tx.execute(DELETE_PLAYLIST_ITEMS, (playlist_id,))
        tx.execute(DELETE_PLAYLIST, (playlist_id,))

    def forget(self, playlist_id: str) -> None:
        """The deletion of ``playlist_id`` committed."""
        del self._playlists[playlist_id]

    def forget_photo(self, file_id: str) -> None:
        for playlist in self._playlists.values():
            if file_id in playlist.file_ids:
                playlist.file_ids.remove(file_id)

    def _own_photos(self, user_id: str, file_ids: list[str]) -> list[str]:
        """A copy of ``file_ids`` if each is one of the user's photos (else ``NotFound``)."""
        check_file_ids(file_ids)
        for file_id in file_ids:
            self._photos.get(user_id, file_id)
        return list(file_ids)


def _stage_items(tx: Transaction, playlist_id: str, file_ids: list[str]) -> None:
    tx.executemany(
        INSERT_PLAYLIST_ITEM,
        [(playlist_id, file_id, position) for position, file_id in enumerate(file_ids)],
    )


class Schedules:
    """Every rotation schedule by id, oldest first when paged."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._schedules: SortedRecords[Schedule, tuple[str, str]] = SortedRecords(
            lambda s: (s.created_at, s.schedule_id), tuple[str, str]
        )

    async def load(self) -> None:
        """Rebuild from the table (at start)."""
        for schedule in SCHEDULES.all(await self._store.fetch_all(SELECT_SCHEDULES)):
            self._schedules[schedule.schedule_id] = schedule

    def page(
        self, user_id: str, frame_id: str | None, limit: int, cursor: str | None
    ) -> SchedulePage:
        """The user's schedules, of one frame or of all."""
        schedules, next_cursor = self._schedules.page(
            limit,
            cursor,
            lambda s: s.owner_id == user_id and frame_id in (None, s.frame_id),
        )
        return SchedulePage(items=schedules, next_cursor=next_cursor)

    def current(self, frame_id: str) -> Schedule | None:
        """The frame's newest schedule: the one it follows."""
        return max(
            (s for s in self._schedules.values() if s.frame_id == frame_id),
            key=lambda s: (s.created_at, s.schedule_id),
            default=None,
        )

    async def create(self, message: CreateSchedule) -> Schedule:
        """A schedule for a request already checked (its playlist the user's)."""
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
            tx.execute(INSERT_SCHEDULE, SCHEDULES.values(schedule))
        self._schedules[schedule.schedule_id] = schedule
        return schedule

    async def delete(self, user_id: str, schedule_id: str) -> None:
        schedule = self._schedules.get(schedule_id)
        if schedule is None or schedule.owner_id != user_id:
            raise NotFound(f"no schedule {schedule_id}")
        async with self._store.transaction() as tx:
            tx.execute(DELETE_SCHEDULE, (schedule_id,))
        del self._schedules[schedule_id]

    @staticmethod
    def stage_unset_playlist(tx: Transaction, playlist_id: str) -> None:
        tx.execute(UNSET_SCHEDULES_PLAYLIST, (playlist_id,))

    def unset_playlist(self, playlist_id: str) -> None:
        """The deletion of ``playlist_id`` committed: its schedules show everything."""
        for schedule in [s for s in self._schedules.values() if s.playlist_id == playlist_id]:
            self._schedules[schedule.schedule_id] = msgspec.structs.replace(
                schedule, playlist_id=None
            )

    def forget_frame(self, frame_id: str) -> None:
        """The frame's deletion: its schedules go."""
        for schedule in [s for s in self._schedules.values() if s.frame_id == frame_id]:
            del self._schedules[schedule.schedule_id]
