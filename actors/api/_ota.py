"""Firmware and campaign routes: upload, list and download firmware (admins, and frames with
their own token), plan and steer OTA campaigns (admins)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import msgspec
from starlette.responses import Response

from actors.devices import MAX_TEXT_LENGTH
from actors.errors import Forbidden
from actors.http import (
    ApiRoute,
    Page,
    PageQuery,
    RequestContext,
    UploadForm,
    api_route,
    file_response,
    receive_upload,
)
from actors.ota import (
    CampaignAction,
    CampaignDeviceHistory,
    CampaignPage,
    CampaignSummary,
    CampaignView,
    CancelCampaign,
    CreateCampaign,
    Firmware,
    FirmwareFile,
    FirmwarePage,
    FirmwareStaging,
    GetCampaign,
    GetCampaignDevice,
    GetFirmware,
    GetFirmwareStaging,
    ListCampaigns,
    ListFirmware,
    OpenFirmware,
    OtaMessage,
    PauseCampaign,
    ResumeCampaign,
    RetryFailed,
    RollbackCampaign,
    StartCampaign,
    StoreFirmware,
)
from supervision import ActorRef

STORE_TIMEOUT_S = 300.0
"""Storing an image moves and hashes it (up to the firmware limit) in a worker thread."""
IMMUTABLE = "private, max-age=31536000, immutable"
"""A firmware id's bytes never change."""

FIRMWARE_FORM = UploadForm(
    fields=("version", "model", "min_hw_version", "notes"), handler_reads=True
)
"""``file`` (the image) and its text fields; the fields are checked by the OTA actor (422)."""

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


# -- firmware ----------------------------------------------------------------------------------


def _admins_and_frames(context: RequestContext) -> None:
    principal = context.principal
    if principal.kind == "user" and not principal.admin:
        raise Forbidden("firmware is for admins and frames only")


def _image(context: RequestContext, image: FirmwareFile) -> Response:
    # file_response answers Range (206 Partial Content), so an interrupted download resumes.
    return file_response(
        context.request,
        image.path,
        media_type="application/octet-stream",
        etag=f'"{image.sha256}"',
        headers={"Cache-Control": IMMUTABLE},
        filename=image.file_name,
        missing="the firmware image is missing from the store",
    )


# -- campaigns ---------------------------------------------------------------------------------


class NewCampaign(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    firmware_id: Id
    models: Annotated[
        list[Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT_LENGTH)]],
        msgspec.Meta(max_length=100),
    ] = []
    device_ids: Annotated[list[Id], msgspec.Meta(max_length=10_000)] = []
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=10_000)]
    success_threshold: Annotated[float, msgspec.Meta(ge=0, le=1)] = 1.0
    """The fraction of a batch that must complete before the next batch starts."""
    failure_threshold: Annotated[int, msgspec.Meta(ge=1)] | None = None
    """Failures (not yet acknowledged by a resume) that pause the campaign."""
    failure_threshold_percent: Annotated[float, msgspec.Meta(ge=0, le=100)] | None = 20.0
    """Failures as a percentage of the frames released so far that pause the campaign."""
    start: bool = False


class OtaRoutes:
    """Firmware images and update campaigns, asked of the OTA actor."""

    def __init__(self, ota: ActorRef[OtaMessage]) -> None:
        self._ota = ota

    async def upload_firmware(self, context: RequestContext, _: None) -> Firmware:
        # Streamed here rather than by the gateway: the firmware limit is the OTA actor's
        # setting, and the staged file must be on the firmware store's filesystem.
        staging: FirmwareStaging = await self._ota.ask(GetFirmwareStaging())
        upload = await receive_upload(
            context.request, FIRMWARE_FORM, Path(staging.directory), staging.max_bytes
        )
        try:
            fields = upload.fields
            firmware: Firmware = await self._ota.ask(
                StoreFirmware(
                    staged_path=str(upload.path),
                    file_name=upload.file_name,
                    size=upload.size,
                    sha256=upload.sha256,
                    version=fields.get("version"),
                    model=fields.get("model"),
                    min_hw_version=fields.get("min_hw_version"),
                    notes=fields.get("notes"),
                    user_id=context.user_id,
                    correlation_id=context.correlation_id,
                ),
                timeout=STORE_TIMEOUT_S,
            )
        finally:
            upload.path.unlink(missing_ok=True)
        context.response_headers["Location"] = f"/api/v1/firmware/{firmware.firmware_id}"
        return firmware

    async def list_firmware(self, context: RequestContext, _: None) -> FirmwarePage:
        _admins_and_frames(context)
        page = context.query(PageQuery)
        return await self._ota.ask(ListFirmware(limit=page.limit, cursor=page.cursor))

    async def get_firmware(self, context: RequestContext, _: None) -> Firmware:
        _admins_and_frames(context)
        return await self._ota.ask(GetFirmware(firmware_id=context.path_params["firmware_id"]))

    async def download_firmware(self, context: RequestContext, _: None) -> Response:
        _admins_and_frames(context)
        image: FirmwareFile = await self._ota.ask(
            OpenFirmware(firmware_id=context.path_params["firmware_id"])
        )
        return _image(context, image)

    async def create_campaign(self, context: RequestContext, body: NewCampaign) -> CampaignView:
        view: CampaignView = await self._ota.ask(
            CreateCampaign(
                name=body.name,
                firmware_id=body.firmware_id,
                models=body.models,
                device_ids=body.device_ids,
                batch_size=body.batch_size,
                success_threshold=body.success_threshold,
                failure_threshold=body.failure_threshold,
                failure_threshold_percent=body.failure_threshold_percent,
                start=body.start,
                user_id=context.user_id,
                correlation_id=context.correlation_id,
            ),
        )
        context.response_headers["Location"] = f"/api/v1/campaigns/{view.campaign_id}"
        return view

    async def list_campaigns(self, context: RequestContext, _: None) -> Page[CampaignSummary]:
        page = context.query(PageQuery)
        reply: CampaignPage = await self._ota.ask(
            ListCampaigns(limit=page.limit, cursor=page.cursor)
        )
        return Page(items=reply.items, next_cursor=reply.next_cursor)

    async def get_campaign(self, context: RequestContext, _: None) -> CampaignView:
        return await self._ota.ask(GetCampaign(campaign_id=context.path_params["campaign_id"]))

    async def get_campaign_device(self, context: RequestContext, _: None) -> CampaignDeviceHistory:
        return await self._ota.ask(
            GetCampaignDevice(
                campaign_id=context.path_params["campaign_id"],
                device_id=context.path_params["device_id"],
            ),
        )

    def _action_route(self, action: str, kind: type[CampaignAction], summary: str) -> ApiRoute:
        async def handler(context: RequestContext, _: None) -> CampaignView:
            return await self._ota.ask(
                kind(
                    campaign_id=context.path_params["campaign_id"],
                    user_id=context.user_id,
                    correlation_id=context.correlation_id,
                ),
            )

        handler.__name__ = f"{action.replace('-', '_')}_campaign"
        return api_route(
            "POST",
            f"/api/v1/campaigns/{{campaign_id}}/{action}",
            handler,
            response=CampaignView,
            auth="admin",
            errors=(404, 409),
            tags=("ota",),
            summary=summary,
        )

    def routes(self) -> tuple[ApiRoute, ...]:
        return (
            api_route(
                "POST",
                "/api/v1/firmware",
                self.upload_firmware,
                upload=FIRMWARE_FORM,
                response=Firmware,
                status=201,
                auth="admin",
                errors=(400, 409, 413, 415, 422, 507),
                tags=("ota",),
                summary=(
                    "upload a firmware image (multipart: file, version, model, min_hw_version, "
                    "notes); its SHA-256 is recorded"
                ),
                description=(
                    "`version` is a semantic version such as 1.2.3; `model`, `min_hw_version` "
                    "are required too, `notes` optional. 409 when the model already has that "
                    "version; 413 past `ota.max_firmware_bytes`."
                ),
            ),
            api_route(
                "GET",
                "/api/v1/firmware",
                self.list_firmware,
                query=PageQuery,
                response=FirmwarePage,
                auth="user_or_frame",
                errors=(403,),
                tags=("ota",),
                summary="the firmware images, newest first (admins and frames)",
            ),
            api_route(
                "GET",
                "/api/v1/firmware/{firmware_id}",
                self.get_firmware,
                response=Firmware,
                auth="user_or_frame",
                errors=(403, 404),
                tags=("ota",),
                summary="a firmware image's record (admins and frames)",
            ),
            api_route(
                "GET",
                "/api/v1/firmware/{firmware_id}/download",
                self.download_firmware,
                media_type="application/octet-stream",
                download=True,
                auth="user_or_frame",
                errors=(403, 404),
                tags=("ota",),
                summary="the image's bytes (admins and frames); Range resumes a download, ETag is "
                "the SHA-256",
            ),
            api_route(
                "POST",
                "/api/v1/campaigns",
                self.create_campaign,
                body=NewCampaign,
                response=CampaignView,
                status=201,
                auth="admin",
                errors=(404, 422),
                tags=("ota",),
                summary="plan a campaign: targets by models and/or device ids, compatible frames "
                "only, staged in batches; start at once with start=true",
            ),
            api_route(
                "GET",
                "/api/v1/campaigns",
                self.list_campaigns,
                query=PageQuery,
                response=Page[CampaignSummary],
                auth="admin",
                tags=("ota",),
                summary="the campaigns, newest first",
            ),
            api_route(
                "GET",
                "/api/v1/campaigns/{campaign_id}",
                self.get_campaign,
                response=CampaignView,
                auth="admin",
                errors=(404,),
                tags=("ota",),
                summary="a campaign: state, counts per device state, current batch, thresholds, "
                "and each frame's state, progress, error and attempts",
            ),
            api_route(
                "GET",
                "/api/v1/campaigns/{campaign_id}/devices/{device_id}",
                self.get_campaign_device,
                response=CampaignDeviceHistory,
                auth="admin",
                errors=(404,),
                tags=("ota",),
                summary="one frame in a campaign, with its timestamped history",
            ),
            self._action_route(
                "start", StartCampaign, "start a draft campaign: its first batch goes out"
            ),
            self._action_route(
                "pause", PauseCampaign, "pause: no more commands; updates in flight go on"
            ),
            self._action_route(
                "resume",
                ResumeCampaign,
                "resume a paused campaign; the failures so far are acknowledged",
            ),
            self._action_route(
                "cancel",
                CancelCampaign,
                "cancel: queued frames are cancelled, updates in flight are followed to their end",
            ),
            self._action_route(
                "rollback",
                RollbackCampaign,
                "roll back: every frame that completed goes back to the firmware it ran before",
            ),
            self._action_route(
                "retry-failed",
                RetryFailed,
                "queue the failed and rolled-back frames again (a new command each)",
            ),
        )
