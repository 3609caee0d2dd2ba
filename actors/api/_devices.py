"""Device routes (admin only): pair a frame, list and show frames with their twin, assign
albums, send commands, unpair."""

from __future__ import annotations

import logging
from typing import Annotated

import msgspec
import trio

import wire
from actors.accounts import ACCOUNTS_PATH, IssueFrameToken, RevokeTokens
from actors.devices import (
    DEVICES_PATH,
    MAX_ALBUMS,
    MAX_PANEL_SIDE,
    MAX_TEXT_LENGTH,
    DeleteDevice,
    Device,
    DevicePage,
    GetDevice,
    ListDevices,
    Orientation,
    RegisterDevice,
    Registered,
    SetDeviceAlbums,
)
from actors.frames import (
    FRAMES_PATH,
    USER_COMMANDS,
    CommandView,
    Desired,
    GetCommand,
    GetTwin,
    Reported,
    SendCommand,
    Twin,
)
from actors.http import Page, PageQuery, RequestContext, api_route
from actors.mqtt import MQTT_PATH, FrameEndpoint, GetFrameEndpoint
from actors.ota import OTA_PATH, GetPublicKey
from supervision import ActorCrashed, ActorNotFound

log = logging.getLogger("framehub.http")

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
    """A newly paired frame with its HTTP API token and MQTT credentials (``wire.Pairing``
    plus the device's fields): the only time the secrets are shown."""

    device_id: str
    token: str
    mqtt: wire.MqttCredentials
    public_key: str
    name: str
    model: str
    hw_version: str
    width: int
    height: int
    orientation: Orientation

    def __repr__(self) -> str:
        return f"PairedDevice(device_id={self.device_id!r}, name={self.name!r})"


TOKEN_ATTEMPTS = 3
"""Asks of a frame's token after its device was registered, so that one crash of the
accounts actor does not fail a pairing that is half done."""


async def _frame_token(context: RequestContext, device: Device) -> str:
    for attempt in range(1, TOKEN_ATTEMPTS + 1):
        try:
            token: str = await context.ask(
                ACCOUNTS_PATH, IssueFrameToken(frame_id=device.device_id, name=device.name)
            )
        except ActorCrashed:
            if attempt == TOKEN_ATTEMPTS:
                raise
        else:
            return token
    raise AssertionError("unreachable")


async def _unpair(context: RequestContext, device_id: str) -> None:
    """Undo a pairing that failed after the device was registered (best effort: logged)."""
    revoke = RevokeTokens(kind="frame", principal_id=device_id)
    delete = DeleteDevice(
        device_id=device_id, user_id=context.user_id, correlation_id=context.correlation_id
    )
    for path, message in ((ACCOUNTS_PATH, revoke), (DEVICES_PATH, delete)):
        try:
            await context.ask(path, message)
        except Exception:
            log.exception(
                "could not undo the pairing of %s (%s)", device_id, type(message).__name__
            )


async def pair_device(context: RequestContext, body: NewDevice) -> PairedDevice:
    endpoint: FrameEndpoint = await context.ask(MQTT_PATH, GetFrameEndpoint())
    public_key: str = await context.ask(OTA_PATH, GetPublicKey())
    registered: Registered = await context.ask(
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
    device = registered.device
    try:
        token = await _frame_token(context, device)
    except BaseException:
        # Registered, but nobody will ever get its credentials: unpair it again, or a
        # retried pairing leaves an orphan behind (campaigns wait for it forever).
        with trio.CancelScope(shield=True):
            await _unpair(context, device.device_id)
        raise
    context.response_headers["Location"] = f"/api/v1/devices/{device.device_id}"
    return PairedDevice(
        device_id=device.device_id,
        token=token,
        mqtt=wire.MqttCredentials(
            host=endpoint.host,
            port=endpoint.port,
            client_id=device.mqtt_username,
            username=device.mqtt_username,
            password=registered.mqtt_password,
        ),
        public_key=public_key,
        name=device.name,
        model=device.model,
        hw_version=device.hw_version,
        width=device.width,
        height=device.height,
        orientation=device.orientation,
    )


class DeviceView(Device, frozen=True, kw_only=True):
    """A frame: what the registry records (``Device``) and what its proxy knows (the twin).
    ``last_seen`` and ``firmware_version`` are the newer of the two."""

    online: bool
    current_file_id: str | None
    health_score: int
    in_sync: bool
    desired: Desired
    reported: Reported
    pending_commands: int


_NO_TWIN = Twin(
    frame_id="",
    online=False,
    last_seen=None,
    firmware_version=None,
    current_file_id=None,
    health_score=0,
    in_sync=False,
    desired=Desired(version=0, album_ids=[], photos=0, display=wire.DisplaySettings()),
    reported=Reported(
        sync_version=0,
        current_file_id=None,
        firmware_version=None,
        free_bytes=None,
        uptime_s=None,
        cached_photos=None,
    ),
    pending_commands=0,
)


async def _view(context: RequestContext, device: Device) -> DeviceView:
    try:
        twin: Twin = await context.ask(f"{FRAMES_PATH}/{device.device_id}", GetTwin())
    except ActorNotFound:
        twin = _NO_TWIN  # paired a moment ago: its proxy is starting
    seen = [t for t in (device.last_seen, twin.last_seen) if t]
    record = msgspec.structs.asdict(device)
    record.update(
        last_seen=max(seen) if seen else None,
        firmware_version=twin.firmware_version or device.firmware_version,
    )
    return DeviceView(
        **record,
        online=twin.online,
        current_file_id=twin.current_file_id,
        health_score=twin.health_score,
        in_sync=twin.in_sync,
        desired=twin.desired,
        reported=twin.reported,
        pending_commands=twin.pending_commands,
    )


async def list_devices(context: RequestContext, _: None) -> Page[DeviceView]:
    page = context.query(PageQuery)
    reply: DevicePage = await context.ask(
        DEVICES_PATH, ListDevices(limit=page.limit, cursor=page.cursor)
    )
    items = [await _view(context, device) for device in reply.items]
    return Page(items=items, next_cursor=reply.next_cursor)


async def get_device(context: RequestContext, _: None) -> DeviceView:
    device: Device = await context.ask(
        DEVICES_PATH, GetDevice(device_id=context.path_params["device_id"])
    )
    return await _view(context, device)


class AlbumAssignment(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    album_ids: Annotated[
        list[Annotated[str, msgspec.Meta(min_length=1, max_length=100)]],
        msgspec.Meta(max_length=MAX_ALBUMS),
    ]


async def set_device_albums(context: RequestContext, body: AlbumAssignment) -> DeviceView:
    device: Device = await context.ask(
        DEVICES_PATH,
        SetDeviceAlbums(
            device_id=context.path_params["device_id"],
            album_ids=body.album_ids,
            user_id=context.user_id,
            correlation_id=context.correlation_id,
        ),
    )
    return await _view(context, device)


class CommandArgs(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    file_id: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] | None = None


class NewCommand(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    command: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    args: CommandArgs = CommandArgs()


async def _proxy_of(context: RequestContext) -> str:
    device_id = context.path_params["device_id"]
    await context.ask(DEVICES_PATH, GetDevice(device_id=device_id))  # 404 if unknown
    return f"{FRAMES_PATH}/{device_id}"


async def send_command(context: RequestContext, body: NewCommand) -> CommandView:
    proxy = await _proxy_of(context)
    view: CommandView = await context.ask(
        proxy,
        SendCommand(
            command=body.command,
            file_id=body.args.file_id,
            user_id=context.user_id,
            correlation_id=context.correlation_id,
        ),
    )
    context.response_headers["Location"] = (
        f"/api/v1/devices/{view.frame_id}/commands/{view.command_id}"
    )
    return view


async def get_command(context: RequestContext, _: None) -> CommandView:
    proxy = await _proxy_of(context)
    view: CommandView = await context.ask(
        proxy, GetCommand(command_id=context.path_params["command_id"])
    )
    return view


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
        summary="pair a frame; its API token and MQTT password are in this reply only",
    ),
    api_route(
        "GET",
        "/api/v1/devices",
        list_devices,
        query=PageQuery,
        response=Page[DeviceView],
        auth="admin",
        tags=("devices",),
        summary="the paired frames and their twins, oldest first",
    ),
    api_route(
        "GET",
        "/api/v1/devices/{device_id}",
        get_device,
        response=DeviceView,
        auth="admin",
        errors=(404,),
        tags=("devices",),
        summary="a paired frame and its twin: online, on screen, health, desired vs reported",
    ),
    api_route(
        "PUT",
        "/api/v1/devices/{device_id}/albums",
        set_device_albums,
        body=AlbumAssignment,
        response=DeviceView,
        auth="admin",
        errors=(404, 422),
        tags=("devices",),
        summary="choose the albums a frame shows (it gets a full sync)",
    ),
    api_route(
        "POST",
        "/api/v1/devices/{device_id}/commands",
        send_command,
        body=NewCommand,
        response=CommandView,
        status=202,
        auth="admin",
        errors=(404, 422),
        tags=("devices",),
        summary=f"send a command ({', '.join(USER_COMMANDS)}); the frame confirms or it times out",
    ),
    api_route(
        "GET",
        "/api/v1/devices/{device_id}/commands/{command_id}",
        get_command,
        response=CommandView,
        auth="admin",
        errors=(404,),
        tags=("devices",),
        summary="a command's state: pending, done, failed or timed_out",
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
