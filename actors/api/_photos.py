"""Photo routes: upload, list, describe, download (original and versions), delete."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from starlette.responses import Response

from actors.devices import DeviceMessage, GetDevice
from actors.errors import BadRequest, Forbidden
from actors.frames import FrameDirectory, OpenFrameVersion
from actors.http import (
    ApiRoute,
    PageQuery,
    RequestContext,
    StagedUpload,
    UploadForm,
    api_route,
    file_response,
)
from actors.media import (
    GetFrameVersion,
    GetPhoto,
    GetVersion,
    ListPhotos,
    MediaMessage,
    PhotoPage,
    PhotoView,
    VersionBlob,
)
from actors.uploader import DeletePhoto, OpenOriginal, StoredPhoto, StorePhoto, UploaderMessage
from supervision import ActorRef

UPLOAD_TIMEOUT_S = 120.0
"""An upload waits for validation in a worker thread, possibly behind others: be patient."""

IMMUTABLE = "private, max-age=31536000, immutable"
"""A file id's bytes never change (a new upload is a new id), so clients may keep them."""


class UploadedFile(msgspec.Struct, frozen=True, kw_only=True):
    file_id: str
    file_name: str
    content_type: str
    file_size: int
    sha256: str


class DownloadQuery(msgspec.Struct, frozen=True, kw_only=True):
    size: Literal["original", "thumbnail", "hd", "frame"] = "original"
    frame_id: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] | None = None


def _metadata(text: str | None) -> dict[str, str]:
    if not text:
        return {}
    try:
        value = msgspec.json.decode(text, type=dict[str, str])
    except msgspec.DecodeError as error:
        raise BadRequest(f"metadata must be a JSON object of strings: {error}") from None
    return value


def _file(context: RequestContext, path: str, content_type: str, sha256: str) -> Response:
    # Deleted between the reply and now (the photo is going away): gone (404), not an error.
    return file_response(
        context.request,
        path,
        media_type=content_type,
        etag=f'"{sha256}"',
        headers={"Cache-Control": IMMUTABLE},
    )


class PhotoRoutes:
    """Uploads, photos and their versions."""

    def __init__(
        self,
        uploader: ActorRef[UploaderMessage],
        media: ActorRef[MediaMessage],
        devices: ActorRef[DeviceMessage],
        frames: FrameDirectory,
    ) -> None:
        self._uploader = uploader
        self._media = media
        self._devices = devices
        self._frames = frames

    async def upload_photo(
        self, context: RequestContext, upload: StagedUpload
    ) -> UploadedFile | Response:
        stored: StoredPhoto = await self._uploader.ask(
            StorePhoto(
                user_id=context.user_id,
                staged_path=str(upload.path),
                file_name=upload.file_name,
                metadata=_metadata(upload.fields.get("metadata")),
                correlation_id=context.correlation_id,
            ),
            timeout=UPLOAD_TIMEOUT_S,
        )
        reply = UploadedFile(
            file_id=stored.file_id,
            file_name=stored.file_name,
            content_type=stored.content_type,
            file_size=stored.file_size,
            sha256=stored.sha256,
        )
        context.response_headers["Location"] = f"/api/v1/photos/{stored.file_id}"
        if stored.created:
            return reply
        # The same bytes again from the same user: the existing photo, not a copy.
        return Response(
            msgspec.json.encode(reply),
            status_code=200,
            media_type="application/json",
            headers=context.response_headers,
        )

    async def list_photos(self, context: RequestContext, _: None) -> PhotoPage:
        page = context.query(PageQuery)
        return await self._media.ask(
            ListPhotos(
                user_id=context.user_id,
                base_url=context.base_url,
                limit=page.limit,
                cursor=page.cursor,
            ),
        )

    async def get_photo(self, context: RequestContext, _: None) -> PhotoView:
        return await self._media.ask(
            GetPhoto(
                user_id=context.user_id,
                file_id=context.path_params["file_id"],
                base_url=context.base_url,
            ),
        )

    async def _frame_version(
        self, context: RequestContext, file_id: str, frame_id: str | None
    ) -> VersionBlob:
        """The photo made to cover the panel of ``frame_id`` exactly, recorded as cached for it.

        A user gets versions of their own photos for any paired frame; a frame gets them for
        itself only (``frame_id`` defaults to it), from its proxy, which knows what it may show.
        """
        principal = context.principal
        if principal.kind == "frame":
            if frame_id not in (None, principal.id):
                raise Forbidden("a frame may only fetch versions made for itself")
            proxy = self._frames.get(principal.id)
            return await proxy.ask(OpenFrameVersion(file_id=file_id))
        if frame_id is None:
            raise BadRequest("size=frame needs frame_id")
        device = await self._devices.ask(GetDevice(device_id=frame_id))
        return await self._media.ask(
            GetFrameVersion.filling(device.panel, file_id, frame_id, user_id=principal.id)
        )

    async def download(self, context: RequestContext, _: None) -> Response:
        query = context.query(DownloadQuery)
        file_id = context.path_params["file_id"]
        if context.principal.kind == "frame" and query.size != "frame":
            # A frame shows its panel's version: it has no claim to anyone's originals.
            raise Forbidden("a frame may only fetch versions made for it (size=frame)")
        if query.size == "original":
            original = await self._uploader.ask(
                OpenOriginal(user_id=context.user_id, file_id=file_id)
            )
            return _file(context, original.path, original.content_type, original.sha256)
        if query.size == "frame":
            version = await self._frame_version(context, file_id, query.frame_id)
            return _file(context, version.path, version.content_type, version.sha256)
        version = await self._media.ask(
            GetVersion(user_id=context.user_id, file_id=file_id, size=query.size)
        )
        return _file(context, version.path, version.content_type, version.sha256)

    async def delete_file(self, context: RequestContext, _: None) -> None:
        await self._uploader.ask(
            DeletePhoto(
                user_id=context.user_id,
                file_id=context.path_params["file_id"],
                correlation_id=context.correlation_id,
            ),
        )

    def routes(self) -> tuple[ApiRoute, ...]:
        return (
            api_route(
                "POST",
                "/api/v1/storage/photos/upload",
                self.upload_photo,
                upload=UploadForm(fields=("metadata",)),
                response=UploadedFile,
                status=201,
                other_statuses=(200,),
                errors=(400, 413, 415, 422, 507),
                tags=("photos",),
                summary=(
                    "upload a photo (JPEG, PNG, WebP, GIF, HEIC/HEIF); 200 if the same bytes exist"
                ),
            ),
            api_route(
                "GET",
                "/api/v1/photos",
                self.list_photos,
                query=PageQuery,
                response=PhotoPage,
                tags=("photos",),
                summary="the caller's photos, newest first",
            ),
            api_route(
                "GET",
                "/api/v1/photos/{file_id}",
                self.get_photo,
                response=PhotoView,
                errors=(404,),
                tags=("photos",),
                summary="a photo with its versions and analysis",
            ),
            api_route(
                "GET",
                "/api/v1/files/download/{file_id}",
                self.download,
                query=DownloadQuery,
                media_type="image/*",
                download=True,
                auth="user_or_frame",
                errors=(400, 403, 404),
                tags=("photos",),
                summary="the original bytes or a version (ETag; 304 on If-None-Match); "
                "a frame may fetch only size=frame, for itself, of the photos in its albums",
            ),
            api_route(
                "DELETE",
                "/api/v1/files/{file_id}",
                self.delete_file,
                status=204,
                errors=(404,),
                tags=("photos",),
                summary="delete a photo everywhere",
            ),
        )
