"""From request to reply: authenticate, rate-limit, decode, call the handler, encode.

Every reply to a declared route passes through ``Pipeline.handle``; errors become problem
responses there, so no exception escapes to Starlette or Hypercorn.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from actors.accounts import AccountsMessage, Authenticate, Principal, hash_token
from actors.events import new_id
from supervision import (
    ActorNotFound,
    ActorRef,
    ActorStopped,
    ActorSystem,
    AskTimeout,
    DomainError,
    MailboxFull,
)

from ._problems import HttpProblem, domain_problem, problem_response, retry_after
from ._ratelimit import RateLimiter
from ._routing import ApiRoute, RequestContext
from ._uploads import read_body, receive_upload

log = logging.getLogger("framehub.http")
access_log = logging.getLogger("framehub.http.access")

_CORRELATION_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_encode = msgspec.json.Encoder().encode


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


class Pipeline:
    """The request path shared by every route of one gateway incarnation."""

    def __init__(
        self,
        *,
        system: ActorSystem,
        accounts: ActorRef[AccountsMessage],
        staging_dir: Path,
        max_upload_bytes: int,
        rate_limit_per_minute: int,
        failed_auth_per_minute: int,
    ) -> None:
        self.system = system
        self.accounts = accounts
        self.staging_dir = staging_dir
        self.max_upload_bytes = max_upload_bytes
        self.requests = RateLimiter(rate_limit_per_minute)
        self.failures = RateLimiter(failed_auth_per_minute)
        self.base_url = ""
        self._decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}

    def decoder(self, kind: type[Any]) -> msgspec.json.Decoder[Any]:
        decoder = self._decoders.get(kind)
        if decoder is None:
            decoder = self._decoders[kind] = msgspec.json.Decoder(kind)
        return decoder

    async def handle(self, route: ApiRoute, request: Request) -> Response:
        started = time.perf_counter()
        supplied = request.headers.get("x-correlation-id", "")
        correlation_id = supplied if _CORRELATION_ID.match(supplied) else new_id()
        principal: Principal | None = None
        try:
            principal = await self._authenticate(route, request) if route.auth else None
            response = await self._call(route, request, principal, correlation_id)
        except HttpProblem as problem:
            response = problem_response(
                problem.status,
                problem.detail,
                headers=problem.headers,
                correlation_id=correlation_id,
            )
        except DomainError as error:
            mapped = domain_problem(error)
            response = problem_response(
                mapped.status,
                mapped.detail,
                headers=mapped.headers,
                correlation_id=correlation_id,
            )
        except (ActorNotFound, ActorStopped, AskTimeout, MailboxFull) as error:
            log.warning("%s %s: %s", request.method, request.url.path, error)
            response = problem_response(
                503,
                "the hub cannot answer this right now; try again shortly",
                headers={"Retry-After": "1"},
                correlation_id=correlation_id,
            )
        except Exception:
            log.exception(
                "%s %s failed (correlation id %s)", request.method, request.url.path, correlation_id
            )
            response = problem_response(
                500,
                f"an unexpected error occurred; it was logged with correlation id {correlation_id}",
                correlation_id=correlation_id,
            )
        response.headers["X-Correlation-Id"] = correlation_id
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(
                "%s %s %d %.1f ms %s",
                request.method,
                request.url.path,
                response.status_code,
                (time.perf_counter() - started) * 1000,
                f"{principal.kind}:{principal.id}" if principal is not None else "-",
            )
        return response

    async def _authenticate(self, route: ApiRoute, request: Request) -> Principal:
        header = request.headers.get("authorization")
        if header is None:
            raise HttpProblem(401, "this route needs an API token: Authorization: Bearer <token>")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise HttpProblem(401, "use the Bearer scheme: Authorization: Bearer <token>")
        client = request.client.host if request.client is not None else "unknown"
        wait = self.failures.wait_time(client)
        if wait > 0:
            raise HttpProblem(
                429,
                "too many failed authentications from this address",
                {"Retry-After": retry_after(wait)},
            )
        try:
            principal = await self.accounts.ask(Authenticate(token=token))
        except DomainError:
            self.failures.take(client)
            raise HttpProblem(401, "the API token is not valid") from None
        wait = self.requests.take(hash_token(token))
        if wait > 0:
            raise HttpProblem(
                429, "too many requests with this token", {"Retry-After": retry_after(wait)}
            )
        allowed = {
            "user": principal.kind == "user",
            "admin": principal.kind == "user" and principal.admin,
            "frame": principal.kind == "frame",
            "user_or_frame": True,
        }[route.auth or "user_or_frame"]
        if not allowed:
            raise HttpProblem(403, f"this route is for {_CALLERS[route.auth or 'user']} only")
        return principal

    async def _call(
        self,
        route: ApiRoute,
        request: Request,
        principal: Principal | None,
        correlation_id: str,
    ) -> Response:
        query = None
        if route.query is not None:
            try:
                query = msgspec.convert(dict(request.query_params), type=route.query, strict=False)
            except msgspec.ValidationError as error:
                raise HttpProblem(400, f"invalid query parameter: {error}") from None
        context = RequestContext(
            request,
            principal=principal,
            query=query,
            correlation_id=correlation_id,
            base_url=self.base_url,
            system=self.system,
        )
        if route.upload is not None and not route.upload.handler_reads:
            upload = await receive_upload(
                request, route.upload, self.staging_dir, self.max_upload_bytes
            )
            try:
                result = await route.handler(context, upload)
            finally:
                upload.path.unlink(missing_ok=True)
        elif route.body is not None:
            if not _is_json(request.headers.get("content-type")):
                raise HttpProblem(415, "the body must be application/json")
            raw = await read_body(request, route.max_body_bytes)
            try:
                body = self.decoder(route.body).decode(raw)
            except msgspec.ValidationError as error:
                raise HttpProblem(422, str(error)) from None
            except msgspec.DecodeError as error:
                raise HttpProblem(400, f"malformed JSON: {error}") from None
            result = await route.handler(context, body)
        else:
            result = await route.handler(context, None)
        return self._render(route, result, context)

    def _render(self, route: ApiRoute, result: object, context: RequestContext) -> Response:
        if isinstance(result, Response):
            response = result
        elif result is None:
            response = Response(status_code=route.status)
        else:
            response = Response(
                _encode(result), status_code=route.status, media_type="application/json"
            )
        response.headers.update(context.response_headers)
        return response


_CALLERS = {
    "user": "users",
    "admin": "admins",
    "frame": "frames",
    "user_or_frame": "users and frames",
}


class _Operations:
    """The ASGI endpoint of one path: dispatches on the method, 405 for the others.

    An ASGI app rather than a function, so that Starlette hands it every method.
    """

    def __init__(self, methods: dict[str, ApiRoute], pipeline: Pipeline) -> None:
        self.methods = methods
        self.allow = ", ".join(sorted(methods))
        self.pipeline = pipeline

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        route = self.methods.get(request.method)
        if route is None:
            response = problem_response(
                405,
                f"{request.method} is not allowed on {request.url.path}; use {self.allow}",
                headers={"Allow": self.allow},
            )
        else:
            response = await self.pipeline.handle(route, request)
        await response(scope, receive, send)


def build_app(routes: Sequence[ApiRoute], pipeline: Pipeline) -> Starlette:
    """A Starlette app serving ``routes``; unknown paths and methods are problems too."""
    by_path: dict[str, dict[str, ApiRoute]] = {}
    for route in routes:
        methods = by_path.setdefault(route.path, {})
        if route.method in methods:
            raise ValueError(f"{route.method} {route.path} is declared twice")
        methods[route.method] = route
    operation_ids = [route.operation_id for route in routes]
    duplicates = {name for name in operation_ids if operation_ids.count(name) > 1}
    if duplicates:
        raise ValueError(f"operation ids must be unique: {sorted(duplicates)}")

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        detail = f"nothing at {request.url.path}" if error.status_code == 404 else str(error.detail)
        return problem_response(error.status_code, detail, headers=error.headers)

    async def internal_error(request: Request, error: Exception) -> Response:
        log.error("%s %s failed", request.method, request.url.path, exc_info=error)
        return problem_response(500, "an unexpected error occurred")

    app = Starlette(
        routes=[Route(path, _Operations(methods, pipeline)) for path, methods in by_path.items()],
        exception_handlers={HTTPException: http_error, Exception: internal_error},
    )
    app.router.redirect_slashes = False
    return app
