"""Errors as RFC 9457 ``application/problem+json`` responses."""

from __future__ import annotations

import math
from collections.abc import Mapping
from http import HTTPStatus

import msgspec
from starlette.responses import Response

from actors.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    RateLimited,
    StorageFull,
    TooLarge,
    Unauthorized,
    UnsupportedMedia,
)
from supervision import DomainError

PROBLEM_JSON = "application/problem+json"


class Problem(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What went wrong, for people (``detail``) and programs (``status``, ``type``).

    ``correlation_id`` names the request in the hub's logs (absent when the request matched
    no route).
    """

    type: str
    title: str
    status: int
    detail: str
    correlation_id: str | None = None


class HttpProblem(Exception):
    """Raised inside the gateway to answer with ``status`` at once (never leaves it)."""

    def __init__(self, status: int, detail: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = dict(headers or {})


STATUS_OF: dict[type[DomainError], int] = {
    BadRequest: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    TooLarge: 413,
    UnsupportedMedia: 415,
    Invalid: 422,
    RateLimited: 429,
    StorageFull: 507,
}
"""Each domain error's status; another ``DomainError`` is a 400 (the request cannot be done)."""

_encode = msgspec.json.Encoder().encode


def retry_after(seconds: float) -> str:
    """A ``Retry-After`` value: whole seconds, at least one."""
    return str(max(1, math.ceil(seconds)))


def problem_response(
    status: int,
    detail: str,
    *,
    headers: Mapping[str, str] | None = None,
    correlation_id: str | None = None,
) -> Response:
    problem = Problem(
        type="about:blank",
        title=HTTPStatus(status).phrase,
        status=status,
        detail=detail,
        correlation_id=correlation_id,
    )
    response = Response(_encode(problem), status_code=status, media_type=PROBLEM_JSON)
    response.headers.update(headers or {})
    if status == 401:
        response.headers.setdefault("WWW-Authenticate", 'Bearer realm="framehub"')
    return response


def domain_problem(error: DomainError) -> HttpProblem:
    """The ``HttpProblem`` a domain error maps to (its message is the detail)."""
    status = next(
        (code for kind, code in STATUS_OF.items() if isinstance(error, kind)),
        HTTPStatus.BAD_REQUEST,
    )
    headers: dict[str, str] = {}
    if isinstance(error, RateLimited):
        headers["Retry-After"] = retry_after(error.retry_after)
    return HttpProblem(int(status), str(error) or HTTPStatus(status).phrase, headers)
