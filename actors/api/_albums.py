"""Album routes: albums and their membership."""

from __future__ import annotations

from typing import Annotated

import msgspec

from actors.album import (
    AddPhotoToAlbum,
    AlbumDetail,
    AlbumInfo,
    AlbumPage,
    AlbumPhoto,
    CreateAlbum,
    DeleteAlbum,
    GetAlbum,
    ListAlbums,
    RemovePhotoFromAlbum,
)
from actors.http import PageQuery, api_route

from ._peers import Api


class NewAlbum(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class PhotoRef(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    file_id: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


async def create_album(context: Api, body: NewAlbum) -> AlbumInfo:
    album: AlbumInfo = await context.peers.album.ask(
        CreateAlbum(user_id=context.user_id, name=body.name, correlation_id=context.correlation_id),
    )
    context.response_headers["Location"] = f"/api/v1/albums/{album.album_id}"
    return album


async def list_albums(context: Api, _: None) -> AlbumPage:
    page = context.query(PageQuery)
    reply: AlbumPage = await context.peers.album.ask(
        ListAlbums(user_id=context.user_id, limit=page.limit, cursor=page.cursor)
    )
    return reply


async def get_album(context: Api, _: None) -> AlbumDetail:
    reply: AlbumDetail = await context.peers.album.ask(
        GetAlbum(user_id=context.user_id, album_id=context.path_params["album_id"])
    )
    return reply


async def delete_album(context: Api, _: None) -> None:
    await context.peers.album.ask(
        DeleteAlbum(
            user_id=context.user_id,
            album_id=context.path_params["album_id"],
            correlation_id=context.correlation_id,
        ),
    )


async def add_photo(context: Api, body: PhotoRef) -> AlbumPhoto:
    reply: AlbumPhoto = await context.peers.album.ask(
        AddPhotoToAlbum(
            user_id=context.user_id,
            album_id=context.path_params["album_id"],
            file_id=body.file_id,
            correlation_id=context.correlation_id,
        ),
    )
    return reply


async def remove_photo(context: Api, _: None) -> None:
    await context.peers.album.ask(
        RemovePhotoFromAlbum(
            user_id=context.user_id,
            album_id=context.path_params["album_id"],
            file_id=context.path_params["file_id"],
            correlation_id=context.correlation_id,
        ),
    )


ALBUM_ROUTES = (
    api_route(
        "POST",
        "/api/v1/albums",
        create_album,
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
        list_albums,
        query=PageQuery,
        response=AlbumPage,
        tags=("albums",),
        summary="the caller's albums",
    ),
    api_route(
        "GET",
        "/api/v1/albums/{album_id}",
        get_album,
        response=AlbumDetail,
        errors=(404,),
        tags=("albums",),
        summary="an album and its photos",
    ),
    api_route(
        "DELETE",
        "/api/v1/albums/{album_id}",
        delete_album,
        status=204,
        errors=(404,),
        tags=("albums",),
        summary="delete an album (its photos stay)",
    ),
    api_route(
        "POST",
        "/api/v1/albums/{album_id}/photos",
        add_photo,
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
        remove_photo,
        status=204,
        errors=(404,),
        tags=("albums",),
        summary="take a photo out of the album",
    ),
)
