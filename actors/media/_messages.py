"""What the media cache actor accepts and answers, and the checks its requests go through."""

from __future__ import annotations

import re
from typing import Literal

import msgspec

from actors.errors import Invalid
from actors.events import AiMetadata
from actors.journal import JournalNudge
from actors.store import DEFAULT_PAGE
from supervision import Request

MAX_NAME_LENGTH = 100
MAX_PLAYLIST_ITEMS = 10_000
MAX_FRAME_SIDE = 8192
"""Widest or tallest frame panel a version is made for (8K)."""
MIN_INTERVAL_S = 10
MAX_INTERVAL_S = 86_400

StandardSize = Literal["thumbnail", "hd"]


# -- photos and their versions -----------------------------------------------------------------


class GetPhoto(Request["PhotoView"], frozen=True, kw_only=True):
    """A photo in the seed shape of ``GET /api/v1/photos/{file_id}``; answers ``PhotoView``.

    ``user_id`` None skips the owner check: for a frame the gateway has already authorised.
    ``base_url`` (``http://host:port``) makes the versions' URLs absolute.
    """

    user_id: str | None
    file_id: str
    base_url: str


class ListPhotos(Request["PhotoPage"], frozen=True, kw_only=True):
    """The user's photos, newest first; answers ``PhotoPage``."""

    user_id: str
    base_url: str
    limit: int = DEFAULT_PAGE
    cursor: str | None = None


class GetVersion(Request["VersionBlob"], frozen=True, kw_only=True):
    """The blob of a standard version; answers ``VersionBlob``.

    Made on the spot (with the other missing standard versions) if the upload's versions are
    not there yet. ``user_id`` None skips the owner check, as for ``GetPhoto``.
    """

    user_id: str | None
    file_id: str
    size: StandardSize


class GetFrameVersion(Request["VersionBlob"], frozen=True, kw_only=True):
    """The photo sized for a frame panel; answers ``VersionBlob``.

    ``fill`` covers the panel exactly (cropping around the faces), else the photo fits inside.
    Made from the original on first request and kept; with ``frame_id`` it is recorded as
    cached for that frame. ``user_id`` None skips the owner check: for a frame the gateway
    has already authorised; a user's request names the user, so only their photos are found.
    """

    file_id: str
    width: int
    height: int
    fill: bool = True
    frame_id: str | None = None
    user_id: str | None = None

    @classmethod
    def filling(
        cls, panel: tuple[int, int], file_id: str, frame_id: str, *, user_id: str | None = None
    ) -> GetFrameVersion:
        """The version of ``file_id`` that covers ``frame_id``'s panel (width, height)."""
        width, height = panel
        return cls(
            file_id=file_id,
            width=width,
            height=height,
            fill=True,
            frame_id=frame_id,
            user_id=user_id,
        )


class PhotoVersion(msgspec.Struct, frozen=True, kw_only=True):
    size: str
    width: int
    height: int
    url: str


class PhotoView(msgspec.Struct, frozen=True, kw_only=True):
    """Seed fields ``file_id``, ``file_name``, ``content_type``, ``versions``, ``ai_metadata``,
    ``cached_for_frames``."""

    file_id: str
    file_name: str
    content_type: str
    versions: list[PhotoVersion]
    ai_metadata: AiMetadata
    cached_for_frames: list[str]
    created_at: str


class PhotoPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[PhotoView]
    next_cursor: str | None


class VersionBlob(msgspec.Struct, frozen=True, kw_only=True):
    """Where a version's bytes are: ``path`` is the blob file (its name never changes)."""

    path: str
    sha256: str
    width: int
    height: int
    content_type: str = "image/jpeg"


# -- playlists ---------------------------------------------------------------------------------


class CreatePlaylist(Request["Playlist"], frozen=True, kw_only=True):
    """A playlist of the user's own photos, in the given order; answers ``Playlist``."""

    user_id: str
    name: str
    file_ids: list[str] = []


class GetPlaylist(Request["Playlist"], frozen=True, kw_only=True):
    user_id: str
    playlist_id: str


class ListPlaylists(Request["PlaylistPage"], frozen=True, kw_only=True):
    """The user's playlists, oldest first; answers ``PlaylistPage``."""

    user_id: str
    limit: int = DEFAULT_PAGE
    cursor: str | None = None


class UpdatePlaylist(Request["Playlist"], frozen=True, kw_only=True):
    """Rename and/or replace the photos (None keeps them); answers ``Playlist``."""

    user_id: str
    playlist_id: str
    name: str | None = None
    file_ids: list[str] | None = None


class DeletePlaylist(Request[None], frozen=True, kw_only=True):
    """Delete a playlist; schedules that used it keep running without one. Answers None."""

    user_id: str
    playlist_id: str


class Playlist(msgspec.Struct, frozen=True, kw_only=True):
    playlist_id: str
    owner_id: str
    name: str
    file_ids: list[str]
    created_at: str


class PlaylistPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[Playlist]
    next_cursor: str | None


# -- rotation schedules ------------------------------------------------------------------------


class CreateSchedule(Request["Schedule"], frozen=True, kw_only=True):
    """How a frame rotates photos; answers ``Schedule``.

    ``quiet_start``/``quiet_end`` ("HH:MM", both or neither) bound the hours the frame shows
    nothing; the span may cross midnight. The frame's existence is the gateway's check.
    """

    user_id: str
    frame_id: str
    interval_s: int
    playlist_id: str | None = None
    shuffle: bool = False
    quiet_start: str | None = None
    quiet_end: str | None = None


class ListSchedules(Request["SchedulePage"], frozen=True, kw_only=True):
    """The user's schedules (of one frame, if given), oldest first; answers ``SchedulePage``."""

    user_id: str
    frame_id: str | None = None
    limit: int = DEFAULT_PAGE
    cursor: str | None = None


class GetFrameSchedule(Request["Schedule | None"], frozen=True, kw_only=True):
    """The schedule a frame follows, whoever made it: the newest one for ``frame_id``;
    answers ``Schedule`` or None (the frame's defaults)."""

    frame_id: str


class DeleteSchedule(Request[None], frozen=True, kw_only=True):
    user_id: str
    schedule_id: str


class Schedule(msgspec.Struct, frozen=True, kw_only=True):
    schedule_id: str
    owner_id: str
    frame_id: str
    playlist_id: str | None
    interval_s: int
    shuffle: bool
    quiet_start: str | None
    quiet_end: str | None
    created_at: str


class SchedulePage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[Schedule]
    next_cursor: str | None


MediaMessage = (
    JournalNudge
    | GetPhoto
    | ListPhotos
    | GetVersion
    | GetFrameVersion
    | CreatePlaylist
    | GetPlaylist
    | ListPlaylists
    | UpdatePlaylist
    | DeletePlaylist
    | CreateSchedule
    | ListSchedules
    | GetFrameSchedule
    | DeleteSchedule
)


# -- checks ------------------------------------------------------------------------------------

_CLOCK = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")


def check_file_ids(file_ids: list[str]) -> list[str]:
    if len(file_ids) > MAX_PLAYLIST_ITEMS:
        raise Invalid(f"a playlist holds at most {MAX_PLAYLIST_ITEMS} photos")
    if len(set(file_ids)) != len(file_ids):
        raise Invalid("a playlist lists each photo once")
    return file_ids


def check_schedule(message: CreateSchedule) -> None:
    if not message.frame_id or len(message.frame_id) > 200:
        raise Invalid("frame_id must be 1 to 200 characters long")
    if not MIN_INTERVAL_S <= message.interval_s <= MAX_INTERVAL_S:
        raise Invalid(
            f"interval_s must be between {MIN_INTERVAL_S} and {MAX_INTERVAL_S}, "
            f"got {message.interval_s}"
        )
    quiet = (message.quiet_start, message.quiet_end)
    if (quiet[0] is None) != (quiet[1] is None):
        raise Invalid("give both quiet_start and quiet_end, or neither")
    for field, value in zip(("quiet_start", "quiet_end"), quiet, strict=True):
        if value is not None and _CLOCK.fullmatch(value) is None:
            raise Invalid(f'{field} must be a time of day as "HH:MM", got {value!r:.20}')
    if quiet[0] is not None and quiet[0] == quiet[1]:
        raise Invalid("quiet hours must not start and end at the same time")


def check_panel(width: int, height: int) -> None:
    for side, value in (("width", width), ("height", height)):
        if not 1 <= value <= MAX_FRAME_SIDE:
            raise Invalid(f"frame {side} must be between 1 and {MAX_FRAME_SIDE}, got {value}")
