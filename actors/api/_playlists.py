"""Playlist and rotation-schedule routes (both kept by the media cache)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from actors.devices import DeviceMessage, GetDevice
from actors.http import ApiRoute, PageQuery, RequestContext, api_route
from actors.media import (
    CreatePlaylist,
    CreateSchedule,
    DeletePlaylist,
    DeleteSchedule,
    GetPlaylist,
    ListPlaylists,
    ListSchedules,
    MediaMessage,
    Playlist,
    PlaylistPage,
    Schedule,
    SchedulePage,
    UpdatePlaylist,
)
from supervision import ActorRef

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


class PlaylistRoutes:
    """Playlists and frames' schedules."""

    def __init__(self, media: ActorRef[MediaMessage], devices: ActorRef[DeviceMessage]) -> None:
        self._media = media
        self._devices = devices

    async def create_playlist(self, context: RequestContext, body: NewPlaylist) -> Playlist:
        playlist: Playlist = await self._media.ask(
            CreatePlaylist(user_id=context.user_id, name=body.name, file_ids=body.file_ids)
        )
        context.response_headers["Location"] = f"/api/v1/playlists/{playlist.playlist_id}"
        return playlist

    async def list_playlists(self, context: RequestContext, _: None) -> PlaylistPage:
        page = context.query(PageQuery)
        return await self._media.ask(
            ListPlaylists(user_id=context.user_id, limit=page.limit, cursor=page.cursor)
        )

    async def get_playlist(self, context: RequestContext, _: None) -> Playlist:
        return await self._media.ask(
            GetPlaylist(user_id=context.user_id, playlist_id=context.path_params["playlist_id"]),
        )

    async def update_playlist(self, context: RequestContext, body: PlaylistChange) -> Playlist:
        return await self._media.ask(
            UpdatePlaylist(
                user_id=context.user_id,
                playlist_id=context.path_params["playlist_id"],
                name=body.name,
                file_ids=body.file_ids,
            ),
        )

    async def delete_playlist(self, context: RequestContext, _: None) -> None:
        await self._media.ask(
            DeletePlaylist(user_id=context.user_id, playlist_id=context.path_params["playlist_id"]),
        )

    async def create_schedule(self, context: RequestContext, body: NewSchedule) -> Schedule:
        # The media cache keeps schedules but knows no frames: the registry says which exist.
        await self._devices.ask(GetDevice(device_id=body.frame_id))
        return await self._media.ask(
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

    async def list_schedules(self, context: RequestContext, _: None) -> SchedulePage:
        query = context.query(ScheduleQuery)
        return await self._media.ask(
            ListSchedules(
                user_id=context.user_id,
                frame_id=query.frame_id,
                limit=query.limit,
                cursor=query.cursor,
            ),
        )

    async def delete_schedule(self, context: RequestContext, _: None) -> None:
        await self._media.ask(
            DeleteSchedule(user_id=context.user_id, schedule_id=context.path_params["schedule_id"]),
        )

    def routes(self) -> tuple[ApiRoute, ...]:
        return (
            api_route(
                "POST",
                "/api/v1/playlists",
                self.create_playlist,
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
                self.list_playlists,
                query=PageQuery,
                response=PlaylistPage,
                tags=("playlists",),
                summary="the caller's playlists",
            ),
            api_route(
                "GET",
                "/api/v1/playlists/{playlist_id}",
                self.get_playlist,
                response=Playlist,
                errors=(404,),
                tags=("playlists",),
                summary="a playlist",
            ),
            api_route(
                "PATCH",
                "/api/v1/playlists/{playlist_id}",
                self.update_playlist,
                body=PlaylistChange,
                response=Playlist,
                errors=(404, 422),
                tags=("playlists",),
                summary="rename a playlist or replace its photos",
            ),
            api_route(
                "DELETE",
                "/api/v1/playlists/{playlist_id}",
                self.delete_playlist,
                status=204,
                errors=(404,),
                tags=("playlists",),
                summary="delete a playlist",
            ),
            api_route(
                "POST",
                "/api/v1/schedules",
                self.create_schedule,
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
                self.list_schedules,
                query=ScheduleQuery,
                response=SchedulePage,
                tags=("schedules",),
                summary="the caller's schedules",
            ),
            api_route(
                "DELETE",
                "/api/v1/schedules/{schedule_id}",
                self.delete_schedule,
                status=204,
                errors=(404,),
                tags=("schedules",),
                summary="delete a schedule",
            ),
        )
