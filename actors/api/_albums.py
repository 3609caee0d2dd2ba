"""Album routes: albums and their membership."""

from __future__ import annotations

from typing import Annotated

import msgspec

from actors.album import (
    AddPhotoToAlbum,
    AlbumDetail,
    AlbumInfo,
    AlbumMessage,
    AlbumPage,
    AlbumPhoto,
    CreateAlbum,
    DeleteAlbum,
    GetAlbum,
    ListAlbums,
    RemovePhotoFromAlbum,
)
from actors.http import ApiRoute, PageQuery, RequestContext, api_route
from supervision import ActorRef


class NewAlbum(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class PhotoRef(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    file_id: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class AlbumRoutes:
    """Albums and their photos, asked of the album actor."""

    def __init__(self, album: ActorRef[AlbumMessage]) -> None:
        self._album = album

    async def create_album(self, context: RequestContext, body: NewAlbum) -> AlbumInfo:
        album: AlbumInfo = await self._album.ask(
            CreateAlbum(
                user_id=context.user_id, name=body.name, correlation_id=context.correlation_id
            ),
        )
        context.response_headers["Location"] = f"/api/v1/albums/{album.album_id}"
        return album

    async def list_albums(self, context: RequestContext, _: None) -> AlbumPage:
        page = context.query(PageQuery)
        return await self._album.ask(
            ListAlbums(user_id=context.user_id, limit=page.limit, cursor=page.cursor)
        )

    async def get_album(self, context: RequestContext, _: None) -> AlbumDetail:
        return await self._album.ask(
            GetAlbum(user_id=context.user_id, album_id=context.path_params["album_id"])
        )

    async def delete_album(self, context: RequestContext, _: None) -> None:
        await self._album.ask(
            DeleteAlbum(
                user_id=context.user_id,
                album_id=context.path_params["album_id"],
                correlation_id=context.correlation_id,
            ),
        )

    async def add_photo(self, context: RequestContext, body: PhotoRef) -> AlbumPhoto:
        return await self._album.ask(
            AddPhotoToAlbum(
                user_id=context.user_id,
                album_id=context.path_params["album_id"],
                file_id=body.file_id,
                correlation_id=context.correlation_id,
            ),
        )

    async def remove_photo(self, context: RequestContext, _: None) -> None:
        await self._album.ask(
            RemovePhotoFromAlbum(
                user_id=context.user_id,
                album_id=context.path_params["album_id"],
                file_id=context.path_params["file_id"],
                correlation_id=context.correlation_id,
            ),
        )

    def routes(self) -> tuple[ApiRoute, ...]:
        return (
            api_route(
                "POST",
                "/api/v1/albums",
                self.create_album,
                body=NewAlbum,
                response=AlbumInfo,
                status=201,
                errors=(422,),
                tags=("albums",),
                summary="create an album",
            ),
            api_route(
                "GET",
                "/api/v1/albums",
                self.list_albums,
                query=PageQuery,
                response=AlbumPage,
                tags=("albums",),
                summary="the caller's albums",
            ),
            api_route(
                "GET",
                "/api/v1/albums/{album_id}",
                self.get_album,
                response=AlbumDetail,
                errors=(404,),
                tags=("albums",),
                summary="an album and its photos",
            ),
            api_route(
                "DELETE",
                "/api/v1/albums/{album_id}",
                self.delete_album,
                status=204,
                errors=(404,),
                tags=("albums",),
                summary="delete an album (its photos stay)",
            ),
            api_route(
                "POST",
                "/api/v1/albums/{album_id}/photos",
                self.add_photo,
                body=PhotoRef,
                response=AlbumPhoto,
                status=201,
                errors=(404,),
                tags=("albums",),
                summary="add one of the caller's photos to the album",
            ),
            api_route(
                "DELETE",
                "/api/v1/albums/{album_id}/photos/{file_id}",
                self.remove_photo,
                status=204,
                errors=(404,),
                tags=("albums",),
                summary="take a photo out of the album",
            ),
        )
