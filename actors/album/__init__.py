"""Albums (seed album_service): ``Album`` (``/domain/album``) and its messages."""

from ._album import (
    ALBUM_MIGRATIONS,
    MAX_NAME_LENGTH,
    AddPhotoToAlbum,
    Album,
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
    check_album_name,
)

__all__ = [
    "ALBUM_MIGRATIONS",
    "MAX_NAME_LENGTH",
    "AddPhotoToAlbum",
    "Album",
    "AlbumDetail",
    "AlbumInfo",
    "AlbumMessage",
    "AlbumPage",
    "AlbumPhoto",
    "CreateAlbum",
    "DeleteAlbum",
    "GetAlbum",
    "ListAlbums",
    "RemovePhotoFromAlbum",
    "check_album_name",
]
