"""Device routes (admin only): pair a frame, list and show frames with their twin, assign
albums, send commands, unpair."""

from __future__ import annotations

from typing import Annotated

import msgspec

import wire
from actors.devices import (
    MAX_ALBUMS,
    MAX_PANEL_SIDE,
    MAX_TEXT_LENGTH,
    DeleteDevice,
    Device,
    DeviceMessage,
    GetDevice,
    Orientation,
    PairDevice,
    RegisterDevice,
    SetDeviceAlbums,
)
from actors.frames import (
    USER_COMMANDS,
    CommandView,
    DeviceView,
    FleetMessage,
    FrameDirectory,
    GetCommand,
    GetDeviceView,
    ListDeviceViews,
    ProxyMessage,
    SendCommand,
)
from actors.http import ApiRoute, Page, PageQuery, RequestContext, api_route
from actors.mqtt import BridgeMessage, GetFrameEndpoint
from actors.ota import GetPublicKey, OtaMessage
from supervision import ActorRef

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


class AlbumAssignment(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    album_ids: Annotated[
        list[Annotated[str, msgspec.Meta(min_length=1, max_length=100)]],
        msgspec.Meta(max_length=MAX_ALBUMS),
    ]


class CommandArgs(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    file_id: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] | None = None


class NewCommand(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    command: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    args: CommandArgs = CommandArgs()


class DeviceRoutes:
    """Pairing, the frames' views, album assignment, commands, unpairing."""

    def __init__(
        self,
        devices: ActorRef[DeviceMessage],
        fleet: ActorRef[FleetMessage],
        frames: FrameDirectory,
        ota: ActorRef[OtaMessage],
        mqtt: ActorRef[BridgeMessage],
    ) -> None:
        self._devices = devices
        self._fleet = fleet
        self._frames = frames
        self._ota = ota
        self._mqtt = mqtt

    async def pair_device(self, context: RequestContext, body: NewDevice) -> PairedDevice:
        endpoint = await self._mqtt.ask(GetFrameEndpoint())
        public_key = await self._ota.ask(GetPublicKey())
        paired = await self._devices.ask(
            PairDevice(
                registration=RegisterDevice(
                    name=body.name,
                    model=body.model,
                    hw_version=body.hw_version,
                    width=body.width,
                    height=body.height,
                    orientation=body.orientation,
                    user_id=context.user_id,
                    correlation_id=context.correlation_id,
                )
            ),
        )
        device = paired.device
        context.response_headers["Location"] = f"/api/v1/devices/{device.device_id}"
        return PairedDevice(
            device_id=device.device_id,
            token=paired.token,
            mqtt=wire.MqttCredentials(
                host=endpoint.host,
                port=endpoint.port,
                client_id=device.mqtt_username,
                username=device.mqtt_username,
                password=paired.mqtt_password,
            ),
            public_key=public_key,
            name=device.name,
            model=device.model,
            hw_version=device.hw_version,
            width=device.width,
            height=device.height,
            orientation=device.orientation,
        )

    async def list_devices(self, context: RequestContext, _: None) -> Page[DeviceView]:
        page = context.query(PageQuery)
        views = await self._fleet.ask(ListDeviceViews(limit=page.limit, cursor=page.cursor))
        return Page(items=views.items, next_cursor=views.next_cursor)

    async def get_device(self, context: RequestContext, _: None) -> DeviceView:
        device_id = context.path_params["device_id"]
        return await self._fleet.ask(GetDeviceView(device_id=device_id))

    async def set_device_albums(self, context: RequestContext, body: AlbumAssignment) -> DeviceView:
        device: Device = await self._devices.ask(
            SetDeviceAlbums(
                device_id=context.path_params["device_id"],
                album_ids=body.album_ids,
                user_id=context.user_id,
                correlation_id=context.correlation_id,
            ),
        )
        return await self._fleet.ask(GetDeviceView(device_id=device.device_id))

    async def _proxy_of(self, context: RequestContext) -> ActorRef[ProxyMessage]:
        """The frame's proxy, once the registry said the frame exists (a 404 otherwise)."""
        device_id = context.path_params["device_id"]
        await self._devices.ask(GetDevice(device_id=device_id))
        return self._frames.get(device_id)

    async def send_command(self, context: RequestContext, body: NewCommand) -> CommandView:
        proxy = await self._proxy_of(context)
        view = await proxy.ask(
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

    async def get_command(self, context: RequestContext, _: None) -> CommandView:
        proxy = await self._proxy_of(context)
        return await proxy.ask(GetCommand(command_id=context.path_params["command_id"]))

    async def delete_device(self, context: RequestContext, _: None) -> None:
        await self._devices.ask(
            DeleteDevice(
                device_id=context.path_params["device_id"],
                user_id=context.user_id,
                correlation_id=context.correlation_id,
            ),
        )

    def routes(self) -> tuple[ApiRoute, ...]:
        return (
            api_route(
                "POST",
                "/api/v1/devices",
                self.pair_device,
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
                self.list_devices,
                query=PageQuery,
                response=Page[DeviceView],
                auth="admin",
                tags=("devices",),
                summary="the paired frames and their twins, oldest first",
            ),
            api_route(
                "GET",
                "/api/v1/devices/{device_id}",
                self.get_device,
                response=DeviceView,
                auth="admin",
                errors=(404,),
                tags=("devices",),
                summary=(
                    "a paired frame and its twin: online, on screen, health, desired vs reported"
                ),
            ),
            api_route(
                "PUT",
                "/api/v1/devices/{device_id}/albums",
                self.set_device_albums,
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
                self.send_command,
                body=NewCommand,
                response=CommandView,
                status=202,
                auth=("admin"),
                errors=(404, 422),
                tags=("devices",),
                summary=(
                    f"send a command ({', '.join(USER_COMMANDS)}); "
                    "the frame confirms or it times out"
                ),
            ),
            api_route(
                "GET",
                "/api/v1/devices/{device_id}/commands/{command_id}",
                self.get_command,
                response=CommandView,
                auth="admin",
                errors=(404,),
                tags=("devices",),
                summary="a command's state: pending, done, failed or timed_out",
            ),
            api_route(
                "DELETE",
                "/api/v1/devices/{device_id}",
                self.delete_device,
                status=204,
                auth="admin",
                errors=(404,),
                tags=("devices",),
                summary="unpair a frame: its token stops working at once, its schedules go",
            ),
        )
