"""Playlist and rotation-schedule routes (both kept by the media cache)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from actors.devices import GetDevice
from actors.http import PageQuery, api_route
from actors.media import (
    CreatePlaylist,
    CreateSchedule,
    DeletePlaylist,
    DeleteSchedule,
    GetPlaylist,
    ListPlaylists,
    ListSchedules,
    Playlist,
    PlaylistPage,
    Schedule,
    SchedulePage,
    UpdatePlaylist,
)

from ._peers import Api

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
Clock = Annotated[str, msgspec.Meta(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")]


class NewPlaylist(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    file_ids: list[Id] = []


class PlaylistChange(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] | None = None
    file_ids: list[Id] | None = None


class NewSchedule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    frame_id: Id
    interval_s: Annotated[int, msgspec.Meta(ge=10, le=86400)]
    playlist_id: Id | None = None
    shuffle: bool = False
    quiet_start: Clock | None = None
    quiet_end: Clock | None = None


class ScheduleQuery(PageQuery, frozen=True, kw_only=True):
    frame_id: Id | None = None


async def create_playlist(context: Api, body: NewPlaylist) -> Playlist:
    playlist: Playlist = await context.peers.media.ask(
        CreatePlaylist(user_id=context.user_id, name=body.name, file_ids=body.file_ids)
    )
    context.response_headers["Location"] = f"/api/v1/playlists/{playlist.playlist_id}"
    return playlist


async def list_playlists(context: Api, _: None) -> PlaylistPage:
    page = context.query(PageQuery)
    reply: PlaylistPage = await context.peers.media.ask(
        ListPlaylists(user_id=context.user_id, limit=page.limit, cursor=page.cursor)
    )
    return reply


async def get_playlist(context: Api, _: None) -> Playlist:
    reply: Playlist = await context.peers.media.ask(
        GetPlaylist(user_id=context.user_id, playlist_id=context.path_params["playlist_id"]),
    )
    return reply


async def update_playlist(context: Api, body: PlaylistChange) -> Playlist:
    reply: Playlist = await context.peers.media.ask(
        UpdatePlaylist(
            user_id=context.user_id,
            playlist_id=context.path_params["playlist_id"],
            name=body.name,
            file_ids=body.file_ids,
        ),
    )
    return reply


async def delete_playlist(context: Api, _: None) -> None:
    await context.peers.media.ask(
        DeletePlaylist(user_id=context.user_id, playlist_id=context.path_params["playlist_id"]),
    )


async def create_schedule(context: Api, body: NewSchedule) -> Schedule:
    # The media cache keeps schedules but knows no frames: the registry says which exist.
    await context.peers.devices.ask(GetDevice(device_id=body.frame_id))
    schedule: Schedule = await context.peers.media.ask(
        CreateSchedule(
            user_id=context.user_id,
            frame_id=body.frame_id,
            interval_s=body.interval_s,
            playlist_id=body.playlist_id,
            shuffle=body.shuffle,
            quiet_start=body.quiet_start,
            quiet_end=body.quiet_end,
        ),
    )
    return schedule


async def list_schedules(context: Api, _: None) -> SchedulePage:
    query = context.query(ScheduleQuery)
    reply: SchedulePage = await context.peers.media.ask(
        ListSchedules(
            user_id=context.user_id,
            frame_id=query.frame_id,
            limit=query.limit,
            cursor=query.cursor,
        ),
    )
    return reply


async def delete_schedule(context: Api, _: None) -> None:
    await context.peers.media.ask(
        DeleteSchedule(user_id=context.user_id, schedule_id=context.path_params["schedule_id"]),
    )


PLAYLIST_ROUTES = (
    api_route(
        "POST",
        "/api/v1/playlists",
        create_playlist,
        body=NewPlaylist,
        response=Playlist,
        status=201,
        errors=(404, 422),
        tags=("playlists",),
        summary="create a playlist",
    ),
    api_route(
        "GET",
        "/api/v1/playlists",
        list_playlists,
        query=PageQuery,
        response=PlaylistPage,
        tags=("playlists",),
        summary="the caller's playlists",
    ),
    api_route(
        "GET",
        "/api/v1/playlists/{playlist_id}",
        get_playlist,
        response=Playlist,
        errors=(404,),
        tags=("playlists",),
        summary="a playlist",
    ),
    api_route(
        "PATCH",
        "/api/v1/playlists/{playlist_id}",
        update_playlist,
        body=PlaylistChange,
        response=Playlist,
        errors=(404, 422),
        tags=("playlists",),
        summary="rename a playlist or replace its photos",
    ),
    api_route(
        "DELETE",
        "/api/v1/playlists/{playlist_id}",
        delete_playlist,
        status=204,
        errors=(404,),
        tags=("playlists",),
        summary="delete a playlist",
    ),
    api_route(
        "POST",
        "/api/v1/schedules",
        create_schedule,
        body=NewSchedule,
        response=Schedule,
        status=201,
        errors=(404, 422),
        tags=("schedules",),
        summary="how a frame rotates photos: interval, shuffle, quiet hours",
    ),
    api_route(
        "GET",
        "/api/v1/schedules",
        list_schedules,
        query=ScheduleQuery,
        response=SchedulePage,
        tags=("schedules",),
        summary="the caller's schedules",
    ),
    api_route(
        "DELETE",
        "/api/v1/schedules/{schedule_id}",
        delete_schedule,
        status=204,
        errors=(404,),
        tags=("schedules",),
        summary="delete a schedule",
    ),
)
