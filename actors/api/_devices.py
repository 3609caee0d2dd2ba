"""Device routes (admin only): pair a frame, list and show frames, unpair one."""

from __future__ import annotations

from typing import Annotated

import msgspec

from actors.accounts import ACCOUNTS_PATH, IssueFrameToken, RevokeTokens
from actors.devices import (
    DEVICES_PATH,
    MAX_PANEL_SIDE,
    MAX_TEXT_LENGTH,
    DeleteDevice,
    Device,
    DevicePage,
    GetDevice,
    ListDevices,
    Orientation,
    RegisterDevice,
)
from actors.http import PageQuery, RequestContext, api_route

Text = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT_LENGTH)]
Side = Annotated[int, msgspec.Meta(ge=1, le=MAX_PANEL_SIDE)]


class NewDevice(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: Text
    model: Text
    hw_version: Text
    width: Side
    height: Side
    orientation: Orientation


class PairedDevice(msgspec.Struct, frozen=True, kw_only=True):
    """A newly paired frame with its HTTP API token: the only time the token is shown."""

    device_id: str
    token: str
    name: str
    model: str
    hw_version: str
    width: int
    height: int
    orientation: Orientation

    def __repr__(self) -> str:
        return f"PairedDevice(device_id={self.device_id!r}, name={self.name!r})"


async def pair_device(context: RequestContext, body: NewDevice) -> PairedDevice:
    device: Device = await context.ask(
        DEVICES_PATH,
        RegisterDevice(
            name=body.name,
            model=body.model,
            hw_version=body.hw_version,
            width=body.width,
            height=body.height,
            orientation=body.orientation,
            user_id=context.user_id,
            correlation_id=context.correlation_id,
        ),
    )
    token: str = await context.ask(
        ACCOUNTS_PATH, IssueFrameToken(frame_id=device.device_id, name=device.name)
    )
    context.response_headers["Location"] = f"/api/v1/devices/{device.device_id}"
    return PairedDevice(
        device_id=device.device_id,
        token=token,
        name=device.name,
        model=device.model,
        hw_version=device.hw_version,
        width=device.width,
        height=device.height,
        orientation=device.orientation,
    )


async def list_devices(context: RequestContext, _: None) -> DevicePage:
    page = context.query(PageQuery)
    reply: DevicePage = await context.ask(
        DEVICES_PATH, ListDevices(limit=page.limit, cursor=page.cursor)
    )
    return reply


async def get_device(context: RequestContext, _: None) -> Device:
    reply: Device = await context.ask(
        DEVICES_PATH, GetDevice(device_id=context.path_params["device_id"])
    )
    return reply


async def delete_device(context: RequestContext, _: None) -> None:
    device_id = context.path_params["device_id"]
    # Tokens first: once the device is gone a repeated DELETE is a 404, so a failure between
    # the two steps must leave the device there for the retry to revoke its token again.
    await context.ask(DEVICES_PATH, GetDevice(device_id=device_id))
    await context.ask(ACCOUNTS_PATH, RevokeTokens(kind="frame", principal_id=device_id))
    await context.ask(
        DEVICES_PATH,
        DeleteDevice(
            device_id=device_id, user_id=context.user_id, correlation_id=context.correlation_id
        ),
    )


DEVICE_ROUTES = (
    api_route(
        "POST",
        "/api/v1/devices",
        pair_device,
        body=NewDevice,
        response=PairedDevice,
        status=201,
        auth="admin",
        errors=(422,),
        tags=("devices",),
        summary="pair a frame; its API token is in this reply only "
        "(MQTT credentials and the hub's signing key come with the MQTT work)",
    ),
    api_route(
        "GET",
        "/api/v1/devices",
        list_devices,
        query=PageQuery,
        response=DevicePage,
        auth="admin",
        tags=("devices",),
        summary="the paired frames, oldest first",
    ),
    api_route(
        "GET",
        "/api/v1/devices/{device_id}",
        get_device,
        response=Device,
        auth="admin",
        errors=(404,),
        tags=("devices",),
        summary="a paired frame",
    ),
    api_route(
        "DELETE",
        "/api/v1/devices/{device_id}",
        delete_device,
        status=204,
        auth="admin",
        errors=(404,),
        tags=("devices",),
        summary="unpair a frame: its token stops working at once, its schedules go",
    ),
)
