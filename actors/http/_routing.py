"""Declaring API routes: what a route takes, who may call it, what it answers."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Generic, Literal, TypeVar

import msgspec
from starlette.requests import Request

from supervision import ActorSnapshot

from ._uploads import StagedUpload, UploadForm

if TYPE_CHECKING:
    from actors.accounts import Principal
    from supervision import ActorSystem

B = TypeVar("B")
Q = TypeVar("Q")
T = TypeVar("T")

Auth = Literal["user", "admin", "frame", "user_or_frame"]
"""Who may call a route: any user, an admin user, a frame, or any user or frame."""

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
API_PREFIX = "/api/v1"
DEFAULT_MAX_BODY_BYTES = 1 << 20

_PARAMETER = re.compile(r"\{([^{}]*)\}")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

Handler = Callable[["RequestContext", Any], Awaitable[object]]


# -- pagination --------------------------------------------------------------------------------


class PageQuery(msgspec.Struct, frozen=True, kw_only=True):
    """``?limit=`` (1 to 200, default 50) and ``?cursor=`` (opaque, from ``next_cursor``).

    Subclass it to add a list's own filters (``class PhotoQuery(PageQuery): album_id: ...``).
    """

    limit: Annotated[int, msgspec.Meta(ge=1, le=200)] = 50
    cursor: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)] | None = None


class Page(msgspec.Struct, Generic[T], frozen=True, kw_only=True):
    """One page of a list; ``next_cursor`` is null on the last page."""

    items: list[T]
    next_cursor: str | None = None


# -- the route declaration ---------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ApiRoute:
    """One operation of the API. Build it with ``api_route``."""

    method: str
    path: str
    handler: Handler
    auth: Auth | None
    body: type[Any] | None
    upload: UploadForm | None
    query: type[msgspec.Struct] | None
    response: Any
    media_type: str | None
    status: int
    summary: str
    description: str
    errors: tuple[int, ...]
    tags: tuple[str, ...]
    operation_id: str
    max_body_bytes: int
    other_statuses: tuple[int, ...] = ()
    download: bool = False

    @property
    def path_parameters(self) -> list[str]:
        return _PARAMETER.findall(self.path)


def api_route(
    method: str,
    path: str,
    handler: Callable[[RequestContext, B], Awaitable[object]],
    *,
    body: type[B] | None = None,
    upload: UploadForm | None = None,
    query: type[msgspec.Struct] | None = None,
    response: Any = None,
    media_type: str | None = None,
    status: int = 200,
    auth: Auth | None = "user",
    summary: str = "",
    description: str = "",
    errors: tuple[int, ...] = (),
    tags: tuple[str, ...] = (),
    operation_id: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    other_statuses: tuple[int, ...] = (),
    download: bool = False,
) -> ApiRoute:
    """Declare an operation; see the package docstring for the whole story.

    ``handler(context, body)`` gets the decoded JSON ``body`` (a msgspec type), the
    ``StagedUpload`` when ``upload`` is given, or ``None``. It returns a value of type
    ``response`` (encoded as JSON with ``status``), ``None`` (an empty ``status`` reply, e.g.
    204), or a Starlette ``Response`` (binary downloads, 304s; ``media_type`` documents it).
    ``errors`` lists the statuses its domain errors may produce, for the OpenAPI document;
    ``other_statuses`` the other 2xx statuses its own ``Response`` may have (documented with
    the same content as ``status``, e.g. 200 for an upload of bytes already there).
    ``download=True`` says the handler answers with ``file_response`` (``ETag`` and
    ``If-None-Match``, ``Range``): the document adds those headers and 206, 304 and 416.
    Raises ``ValueError`` for an inconsistent declaration.
    """
    method = method.upper()
    where = f"{method} {path}"
    if method not in METHODS:
        raise ValueError(f"{where}: method must be one of {', '.join(METHODS)}")
    if not path.startswith("/") or (path != "/" and path.endswith("/")):
        raise ValueError(f"{where}: path must start and not end with '/'")
    for name in _PARAMETER.findall(path):
        if not _IDENTIFIER.match(name):
            raise ValueError(f"{where}: path parameter {{{name}}} must be a plain identifier")
    if auth is None and (path == API_PREFIX or path.startswith(API_PREFIX + "/")):
        raise ValueError(f"{where}: every {API_PREFIX} route requires a token (auth)")
    if body is not None and upload is not None:
        raise ValueError(f"{where}: a route takes a JSON body or an upload, not both")
    if (body is not None or upload is not None) and method in ("GET", "DELETE"):
        raise ValueError(f"{where}: {method} takes no body")
    if not 200 <= status <= 299:
        raise ValueError(f"{where}: status must be a 2xx success status")
    if status == 204 and (response is not None or media_type is not None):
        raise ValueError(f"{where}: a 204 reply has no body")
    if any(not 200 <= other <= 299 or other == status for other in other_statuses):
        raise ValueError(f"{where}: other_statuses must be other 2xx success statuses")
    if download and (method != "GET" or media_type is None):
        raise ValueError(f"{where}: a download is a GET with a media_type")
    return ApiRoute(
        method=method,
        path=path,
        handler=handler,
        auth=auth,
        body=body,
        upload=upload,
        query=query,
        response=response,
        media_type=media_type,
        status=status,
        summary=summary,
        description=description,
        errors=tuple(sorted(set(errors))),
        tags=tags,
        operation_id=operation_id or str(getattr(handler, "__name__", f"{method} {path}")),
        max_body_bytes=max_body_bytes,
        other_statuses=tuple(sorted(set(other_statuses))),
        download=download,
    )


# -- what a handler sees -----------------------------------------------------------------------


class RequestContext:
    """One request as a handler sees it: the caller and the request's parameters. Handlers
    reach actors through the refs their route module was built with."""

    __slots__ = (
        "_principal",
        "_query",
        "_system",
        "base_url",
        "correlation_id",
        "request",
        "response_headers",
    )

    def __init__(
        self,
        request: Request,
        *,
        principal: Principal | None,
        query: msgspec.Struct | None,
        correlation_id: str,
        base_url: str,
        system: ActorSystem,
    ) -> None:
        self.request = request
        self._principal = principal
        self._query = query
        self.correlation_id = correlation_id
        """From the client's ``X-Correlation-Id`` if it sent a sensible one, else new; pass
        it on in messages so that every event the request causes carries it."""
        self.base_url = base_url
        """The hub's public URL without a trailing slash, for links in replies."""
        self._system = system
        self.response_headers: dict[str, str] = {}
        """Headers to add to the reply (``Location``, ``ETag``, ``Cache-Control``)."""

    @property
    def principal(self) -> Principal:
        """The authenticated caller (only on routes with ``auth``)."""
        if self._principal is None:
            raise RuntimeError("this route has no authenticated caller (auth=None)")
        return self._principal

    def snapshot(self, path: str = "/") -> ActorSnapshot:
        """The actor tree (or the subtree at ``path``), for introspection routes."""
        return self._system.snapshot(path)

    @property
    def user_id(self) -> str:
        """The caller's id, as domain messages take it."""
        return self.principal.id

    @property
    def path_params(self) -> Mapping[str, str]:
        params: Mapping[str, str] = self.request.path_params
        return params

    def query(self, kind: type[Q]) -> Q:
        """The route's decoded ``query`` parameters (``kind`` is the type it declared)."""
        if not isinstance(self._query, kind):
            raise TypeError(f"this route's query parameters are not a {kind.__name__}")
        return self._query


__all__ = [
    "API_PREFIX",
    "ApiRoute",
    "Auth",
    "Page",
    "PageQuery",
    "RequestContext",
    "StagedUpload",
    "UploadForm",
    "api_route",
]
