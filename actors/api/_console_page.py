"""The operator console's page: ``GET /console`` and its static assets, no token needed.

The page is plain HTML, CSS and a JavaScript module (``actors/console/static``), served as
files. It talks to the console's WebSocket server, which asks for an
admin's token in its ``hello``; ``GET /console/config.json`` tells the page where that server
listens, as seen from the host the browser used to reach the page.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
from starlette.responses import Response

from actors.console import ConsoleAddress, ConsoleMessage, GetConsoleAddress
from actors.errors import NotFound
from actors.http import ApiRoute, RequestContext, api_route, file_response
from supervision import ActorRef

STATIC_DIR = Path(__file__).resolve().parent.parent / "console" / "static"

_ASSETS = {
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
}
_NO_CACHE = {"Cache-Control": "no-cache"}


class ConsoleConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Where the page opens its WebSocket."""

    ws_url: str


async def console_page(context: RequestContext, _: None) -> Response:
    return file_response(
        context.request,
        STATIC_DIR / "console.html",
        media_type="text/html; charset=utf-8",
        headers=_NO_CACHE,
    )


async def console_asset(context: RequestContext, _: None) -> Response:
    name = context.path_params["asset"]
    media_type = _ASSETS.get(name)
    if media_type is None:
        raise NotFound(f"no console asset {name!r}")
    return file_response(
        context.request, STATIC_DIR / name, media_type=media_type, headers=_NO_CACHE
    )


def _host_name(host_header: str) -> str:
    """The host part of a ``Host`` header (``[::1]:8080`` gives ``[::1]``)."""
    if host_header.startswith("["):
        return host_header[: host_header.find("]") + 1] or host_header
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


class ConsolePageRoutes:
    """The console's page, and where its WebSocket server listens."""

    def __init__(self, console: ActorRef[ConsoleMessage]) -> None:
        self._console = console

    async def console_config(self, context: RequestContext, _: None) -> ConsoleConfig:
        address: ConsoleAddress = await self._console.ask(GetConsoleAddress())
        host = _host_name(context.request.headers.get("host", ""))
        if not host:
            host = f"[{address.host}]" if ":" in address.host else address.host
        return ConsoleConfig(ws_url=f"ws://{host}:{address.port}/")

    def routes(self) -> tuple[ApiRoute, ...]:
        return (
            api_route(
                "GET",
                "/console",
                console_page,
                auth=None,
                media_type="text/html",
                download=True,
                tags=("console",),
                summary="the operator console (its WebSocket asks for an admin's token)",
            ),
            api_route(
                "GET",
                "/console/config.json",
                self.console_config,
                auth=None,
                response=ConsoleConfig,
                tags=("console",),
                summary="where the console page opens its WebSocket",
            ),
            api_route(
                "GET",
                "/console/{asset}",
                console_asset,
                auth=None,
                media_type="text/*",
                download=True,
                errors=(404,),
                tags=("console",),
                summary="the console page's stylesheet and script",
            ),
        )
