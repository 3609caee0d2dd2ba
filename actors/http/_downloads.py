"""File downloads: ``ETag`` and ``If-None-Match`` (304), ``Range`` (206 or a 416 problem).

Starlette's ``FileResponse`` streams the file and answers ``Range`` itself, but it refuses a
``Range`` it cannot parse with a plain-text 400 and an unsatisfiable one with a bare 416,
outside the API's ``application/problem+json`` contract. ``file_response`` looks at the header
first: a range beyond the end of the file is a 416 problem (with ``Content-Range: bytes
*/<size>``, as RFC 9110 asks), and a header it cannot use (another unit, a malformed or
reversed range) is ignored, as RFC 9110 allows, so the whole file is sent (200); so is a
``Range`` whose ``If-Range`` is not this file's entity tag.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, MalformedRangeHeader, RangeNotSatisfiable, Response
from starlette.types import Receive, Scope, Send

from actors.errors import NotFound

from ._problems import HttpProblem

RANGE_EXAMPLES = ("bytes=0-99", "bytes=-100", "bytes=0-0,2-3", "bytes=1000000000-")
"""``Range`` values the API description gives as examples (the last one is unsatisfiable)."""


class _WholeFile(FileResponse):
    """A ``FileResponse`` that does not see the request's ``Range`` header."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(name, value) for name, value in scope["headers"] if name != b"range"]
        await super().__call__({**scope, "headers": headers}, receive, send)


def _tags(header: str) -> set[str]:
    return {tag.strip() for tag in header.split(",")}


def file_response(
    request: Request,
    path: str | Path,
    *,
    media_type: str,
    etag: str | None = None,
    headers: Mapping[str, str] | None = None,
    filename: str | None = None,
    missing: str = "the file is no longer there",
) -> Response:
    """The file at ``path`` for ``request``: 304 when ``If-None-Match`` names ``etag`` (a
    quoted entity tag), else the whole file or the requested range of it.

    Raises ``NotFound(missing)`` if the file is gone (deleted while the request was on its
    way), ``HttpProblem(416)`` for a range that starts past the end of the file.
    """
    extra = dict(headers or {})
    if etag is not None:
        extra["ETag"] = etag
        if etag in _tags(request.headers.get("if-none-match", "")):
            return Response(status_code=304, headers=extra)
    try:
        size = Path(path).stat().st_size
    except FileNotFoundError:
        raise NotFound(missing) from None
    ranged = request.headers.get("range")
    if_range = request.headers.get("if-range")
    # ``If-Range`` other than this file's strong entity tag (a date, an older tag): the
    # range is ignored and the whole file sent, which RFC 9110 allows for any mismatch.
    whole = ranged is not None and if_range is not None and if_range.strip() != etag
    if ranged is not None and not whole:
        try:
            FileResponse._parse_range_header(ranged, size)
        except MalformedRangeHeader:
            whole = True
        except RangeNotSatisfiable:
            raise HttpProblem(
                416,
                f"the range {ranged!r} is outside the file's {size} bytes",
                {"Content-Range": f"bytes */{size}"},
            ) from None
    kind = _WholeFile if whole else FileResponse
    return kind(path, media_type=media_type, headers=extra, filename=filename)
