"""The HTTP gateway: the HTTP API, served by Hypercorn on the actor system's own Trio run."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import msgspec
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from hypercorn.typing import ASGIFramework
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

import wire
from actors.accounts import AccountsMessage
from actors.store import Store
from config import HttpSettings
from supervision import Actor, ActorRef, ActorSnapshot, ActorSystem, Request

from ._account_routes import account_routes
from ._openapi import openapi_document
from ._pipeline import Pipeline, _Operations, build_app
from ._problems import HttpProblem
from ._routing import ApiRoute, Auth, RequestContext, api_route
from ._uploads import STAGED_PREFIX, STAGED_SUFFIX

log = logging.getLogger("framehub.http")

DATABASE_CHECK_TIMEOUT_S = 2.0


class GetHttpAddress(Request["HttpAddress"], frozen=True):
    """Where the API listens; answers ``HttpAddress``."""


class HttpAddress(msgspec.Struct, frozen=True, kw_only=True):
    """The bound address (``port`` is the real one when 0 was configured) and the base URL
    frames are given (``public_url`` if set, else ``http://host:port``)."""

    host: str
    port: int
    base_url: str


class GetRoutes(Request["list[ServedRoute]"], frozen=True):
    """What the running server dispatches, read from its router; answers
    ``list[ServedRoute]`` (introspection: an audit checks each route asks for a token)."""


class ServedRoute(msgspec.Struct, frozen=True, kw_only=True):
    """One method of one path as the router serves it. ``declared`` is False for anything
    not made with ``api_route`` (then ``method`` is ``"*"`` and nothing is known of it)."""

    method: str
    path: str
    auth: Auth | None
    declared: bool = True


GatewayMessage = GetHttpAddress | GetRoutes


def _served_routes(app: Starlette) -> list[ServedRoute]:
    served: list[ServedRoute] = []
    for route in app.router.routes:
        operations = route.app if isinstance(route, Route) else None
        if isinstance(operations, _Operations):
            served.extend(
                ServedRoute(method=method, path=api.path, auth=api.auth)
                for method, api in operations.methods.items()
            )
        else:
            path = str(getattr(route, "path", route))
            served.append(ServedRoute(method="*", path=path, auth=None, declared=False))
    return served


class PublicUrl:
    """The base URL frames are given, known once the gateway has bound its port.

    Shared by the gateway (which sets it on every start) and the actors that put links in
    what they send to frames (which wait for it); create one next to the tree.
    """

    __slots__ = ("_ready", "_value")

    def __init__(self, value: str = "") -> None:
        self._value = value
        self._ready = trio.Event()
        if value:
            self._ready.set()

    def set(self, value: str) -> None:
        self._value = value
        self._ready.set()

    @property
    def value(self) -> str:
        """The URL, or "" before the gateway first bound."""
        return self._value

    async def wait(self) -> str:
        await self._ready.wait()
        return self._value


class Health(msgspec.Struct, frozen=True, kw_only=True):
    status: str


ReadinessCheck = Callable[[ActorSystem], Awaitable[str | None]]
"""A part of readiness beyond the actors and the database: None when fine, else why not."""


def _not_running(node: ActorSnapshot) -> list[str]:
    found = [] if node.state == "running" else [f"{node.path} is {node.state}"]
    for child in node.children:
        found.extend(_not_running(child))
    return found


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class HttpGateway(Actor[GatewayMessage]):
    """Serves ``routes`` plus ``/api/v1/me``, ``/api/v1/users``, the probes and the OpenAPI
    document, for as long as it lives.

    Start it after the actors its routes ask: it stops first then, finishing requests in
    flight (up to ``graceful_timeout_s``) while they still answer.
    Uploads are staged in ``staging_dir``, which must be on the blobs' filesystem. Callers
    are authenticated by ``accounts``.
    """

    def __init__(
        self,
        settings: HttpSettings,
        *,
        store: Store,
        staging_dir: Path,
        accounts: ActorRef[AccountsMessage],
        routes: Sequence[ApiRoute] = (),
        failed_auth_per_minute: int = 30,
        graceful_timeout_s: float = 3.0,
        title: str = "framehub",
        version: str = "0.1.0",
        public_url: PublicUrl | None = None,
        readiness: Sequence[ReadinessCheck] = (),
    ) -> None:
        self._settings = settings
        self._public_url = public_url
        self._readiness = tuple(readiness)
        self._store = store
        self._staging_dir = staging_dir
        self._routes = tuple(routes)
        self._accounts = accounts
        self._failed_auth_per_minute = failed_auth_per_minute
        self._graceful_timeout_s = graceful_timeout_s
        self._title = title
        self._version = version
        self._address: HttpAddress | None = None
        self._finished = trio.Event()
        self._served: list[ApiRoute] = []
        self._table: list[ServedRoute] = []
        self._openapi: bytes | None = None
        self._asyncapi: bytes | None = None

    async def on_start(self) -> None:
        self._staging_dir.mkdir(parents=True, exist_ok=True)
        for stale in self._staging_dir.glob(f"{STAGED_PREFIX}*{STAGED_SUFFIX}"):
            stale.unlink(missing_ok=True)  # left by a process that was killed mid-upload
        settings = self._settings
        pipeline = Pipeline(
            system=self.context.system,
            accounts=self._accounts,
            staging_dir=self._staging_dir,
            max_upload_bytes=settings.max_upload_bytes,
            rate_limit_per_minute=settings.rate_limit_per_minute,
            failed_auth_per_minute=self._failed_auth_per_minute,
        )
        routes = [*self._probe_routes(pipeline), *account_routes(self._accounts), *self._routes]
        app = build_app(routes, pipeline)
        self._served = routes
        self._table = _served_routes(app)
        config = Config()
        config.bind = [_bind(settings.host, settings.port)]
        config.accesslog = None
        config.errorlog = logging.getLogger("framehub.http.server")
        config.graceful_timeout = self._graceful_timeout_s
        config.include_server_header = False
        binds: list[str] = await self.context.start_service(self._serve, app, config)
        port = urlsplit(binds[0]).port
        assert port is not None
        pipeline.base_url = settings.base_url(port)
        if self._public_url is not None:
            self._public_url.set(pipeline.base_url)
        self._address = HttpAddress(host=settings.host, port=port, base_url=pipeline.base_url)
        log.info("HTTP API listening on %s (public URL %s)", binds[0], pipeline.base_url)

    async def on_stop(self) -> None:
        # The incarnation's end has already asked the server to stop (see ``_serve``): return
        # once it has closed its listener and answered the requests in flight.
        with trio.move_on_after(self._graceful_timeout_s + 1.0):
            await self._finished.wait()

    async def receive(self, message: GatewayMessage) -> HttpAddress | list[ServedRoute]:
        match message:
            case GetHttpAddress():
                assert self._address is not None
                return self._address
            case GetRoutes():
                return list(self._table)

    async def _serve(
        self,
        app: Starlette,
        config: Config,
        task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run Hypercorn until this incarnation ends, then shut it down gracefully.

        The runtime ends a service by cancelling it. Hypercorn runs shielded from that, so
        that cancellation becomes its graceful shutdown instead: stop accepting, let requests
        in flight finish within ``graceful_timeout_s``, close the connections.
        """
        shutdown = trio.Event()
        server_scope = trio.CancelScope(shield=True)

        async def run_server(task_status: trio.TaskStatus[list[str]]) -> None:
            with server_scope:
                try:
                    await serve(
                        cast(ASGIFramework, app),  # the same ASGI types, spelt differently
                        config,
                        shutdown_trigger=shutdown.wait,
                        task_status=task_status,
                    )
                finally:
                    self._finished.set()

        async with trio.open_nursery() as nursery:
            try:
                binds: list[str] = await nursery.start(run_server)
                task_status.started(binds)
                await trio.sleep_forever()
            finally:
                shutdown.set()
                with trio.CancelScope(shield=True) as waiting:
                    waiting.deadline = trio.current_time() + self._graceful_timeout_s + 1.0
                    await self._finished.wait()
                server_scope.cancel()

    # -- probes and the API description ---------------------------------------------------------

    def _probe_routes(self, pipeline: Pipeline) -> list[ApiRoute]:
        async def healthz(context: RequestContext, _: None) -> Health:
            return Health(status="ok")

        async def readyz(context: RequestContext, _: None) -> Health:
            problems = _not_running(self.context.system.snapshot())
            try:
                with trio.fail_after(DATABASE_CHECK_TIMEOUT_S):
                    await self._store.fetch_one("SELECT 1")
            except trio.TooSlowError:
                problems.append(
                    f"the database did not answer within {DATABASE_CHECK_TIMEOUT_S:g} s"
                )
            except Exception as error:
                problems.append(f"the database failed: {error}")
            for check in self._readiness:
                problem = await check(self.context.system)
                if problem:
                    problems.append(problem)
            if problems:
                raise HttpProblem(503, "not ready: " + "; ".join(problems))
            return Health(status="ready")

        async def openapi(context: RequestContext, _: None) -> Response:
            if self._openapi is None:
                document = openapi_document(
                    self._served,
                    title=self._title,
                    version=self._version,
                    server_url=pipeline.base_url,
                )
                self._openapi = msgspec.json.encode(document)
            return Response(self._openapi, media_type="application/json")

        async def asyncapi(context: RequestContext, _: None) -> Response:
            if self._asyncapi is None:
                self._asyncapi = msgspec.json.encode(wire.asyncapi_document())
            return Response(self._asyncapi, media_type="application/json")

        return [
            api_route(
                "GET",
                "/healthz",
                healthz,
                response=Health,
                auth=None,
                summary="liveness: 200 while the process serves",
                tags=("probes",),
            ),
            api_route(
                "GET",
                "/readyz",
                readyz,
                response=Health,
                auth=None,
                errors=(503,),
                summary="readiness: 200 when every actor runs, the database answers and the "
                "MQTT broker is connected",
                tags=("probes",),
            ),
            api_route(
                "GET",
                "/openapi.json",
                openapi,
                response=dict[str, Any],
                auth="user_or_frame",
                summary="this API's OpenAPI 3.1 description (any valid token)",
                tags=("probes",),
            ),
            api_route(
                "GET",
                "/asyncapi.json",
                asyncapi,
                response=dict[str, Any],
                auth="user_or_frame",
                summary="the frames' MQTT topics as an AsyncAPI 3.0 description (any valid token)",
                tags=("probes",),
            ),
        ]
