"""The HTTP gateway: the API that phones, scripts and frames call.

Routes only translate: a request becomes a typed message, the owning actor is asked, and its
reply (or domain error) becomes the response. A route is declared with ``api_route``; the
gateway does the rest for every route alike:

* authentication (``Authorization: Bearer <token>``, asked of the accounts actor) and the
  caller check given by ``auth``: ``"user"``, ``"admin"``, ``"frame"``, ``"user_or_frame"``,
  or ``None`` (only outside ``/api/v1``);
* rate limiting per token (``http.rate_limit_per_minute``) and of failed authentications per
  client address, answered with 429 and ``Retry-After``;
* decoding: a JSON ``body`` into its msgspec type (400 malformed JSON, 415 not JSON, 422 wrong
  types or missing fields, with msgspec's precise message), ``query`` parameters into a Struct
  (400 on a bad value; ``PageQuery`` gives ``?limit=`` and ``?cursor=``), or an ``upload``
  streamed to a staged file (``StagedUpload``; 413 past ``http.max_upload_bytes``);
* errors as ``application/problem+json`` (``actors.errors`` map to 400/401/403/404/409/413/
  415/422/429/507; an unavailable actor is 503; anything unexpected is a logged 500 that
  reveals nothing but a correlation id);
* the route's entry in ``GET /openapi.json`` (OpenAPI 3.1, from the msgspec types; any valid
  token may read it).

A route module is built with the refs of the actors it asks, and declares its routes::

    class NewAlbum(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
        name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]

    class AlbumRoutes:
        def __init__(self, album: ActorRef[AlbumMessage]) -> None:
            self._album = album

        async def create_album(self, context: RequestContext, body: NewAlbum) -> AlbumInfo:
            return await self._album.ask(
                CreateAlbum(user_id=context.user_id, name=body.name,
                            correlation_id=context.correlation_id)
            )

        async def list_albums(self, context: RequestContext, _: None) -> AlbumPage:
            page = context.query(PageQuery)
            return await self._album.ask(
                ListAlbums(user_id=context.user_id, limit=page.limit, cursor=page.cursor)
            )

        def routes(self) -> tuple[ApiRoute, ...]:
            return (
                api_route("POST", "/api/v1/albums", self.create_album, body=NewAlbum,
                          response=AlbumInfo, status=201, errors=(422,),
                          summary="create an album"),
                api_route("GET", "/api/v1/albums", self.list_albums, query=PageQuery,
                          response=AlbumPage, summary="the caller's albums"),
            )

and is served by passing ``routes=[*AlbumRoutes(album).routes(), ...]`` to ``HttpGateway``.
A route that takes an ``upload=UploadForm(...)`` gets the ``StagedUpload``. Path parameters
(``/api/v1/albums/{album_id}``) are in ``context.path_params``; a handler may also return a
Starlette ``Response`` and add headers through ``context.response_headers``. A download
(``download=True``) returns ``file_response(...)``: ETag and 304, Range and 206, and a 416
problem for a range past the end.
"""

from ._account_routes import NewUserRequest, account_routes
from ._downloads import file_response
from ._gateway import (
    GatewayMessage,
    GetHttpAddress,
    GetRoutes,
    Health,
    HttpAddress,
    HttpGateway,
    PublicUrl,
    ReadinessCheck,
    ServedRoute,
)
from ._openapi import openapi_document
from ._problems import PROBLEM_JSON, STATUS_OF, HttpProblem, Problem, retry_after
from ._ratelimit import RateLimiter
from ._routing import (
    API_PREFIX,
    ApiRoute,
    Auth,
    Page,
    PageQuery,
    RequestContext,
    api_route,
)
from ._uploads import StagedUpload, UploadForm, receive_upload

__all__ = [
    "API_PREFIX",
    "PROBLEM_JSON",
    "STATUS_OF",
    "ApiRoute",
    "Auth",
    "GatewayMessage",
    "GetHttpAddress",
    "GetRoutes",
    "Health",
    "HttpAddress",
    "HttpGateway",
    "HttpProblem",
    "NewUserRequest",
    "Page",
    "PageQuery",
    "Problem",
    "PublicUrl",
    "RateLimiter",
    "ReadinessCheck",
    "RequestContext",
    "ServedRoute",
    "StagedUpload",
    "UploadForm",
    "account_routes",
    "api_route",
    "file_response",
    "openapi_document",
    "receive_upload",
    "retry_after",
]
