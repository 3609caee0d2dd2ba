"""Albums (seed album_service): ``Album`` and its messages."""

from ._album import (
    ALBUM_MIGRATIONS,
    MAX_NAME_LENGTH,
    AddPhotoToAlbum,
    Album,
    AlbumContents,
    AlbumDetail,
    AlbumInfo,
    AlbumMessage,
    AlbumPage,
    AlbumPhoto,
    CreateAlbum,
    DeleteAlbum,
    GetAlbum,
    GetAlbumContents,
    ListAlbums,
    RemovePhotoFromAlbum,
)

__all__ = [
    "ALBUM_MIGRATIONS",
    "MAX_NAME_LENGTH",
    "AddPhotoToAlbum",
    "Album",
    "AlbumContents",
    "AlbumDetail",
    "AlbumInfo",
    "AlbumMessage",
    "AlbumPage",
    "AlbumPhoto",
    "CreateAlbum",
    "DeleteAlbum",
    "GetAlbum",
    "GetAlbumContents",
    "ListAlbums",
    "RemovePhotoFromAlbum",
]
