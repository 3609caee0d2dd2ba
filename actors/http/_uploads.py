"""Request bodies read under a size limit: JSON bodies in memory, uploads streamed to disk.

An upload's ``file`` part goes to a staged file chunk by chunk (python-multipart's streaming
parser), hashed on the way; at most about a MiB of it is in memory at any time. Past the limit
the staged file is deleted and the rest of the body is read and dropped (up to ``DRAIN_MAX``
bytes, so that the client sees the 413 instead of a reset connection), then 413 is answered.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import unicodedata
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import trio
from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header
from starlette.requests import ClientDisconnect, Request

from ._problems import HttpProblem

FLUSH_BYTES = 1 << 20
"""Bytes of a file part buffered before they are written out (in a worker thread)."""
HEAD_BYTES = 4096
"""The start of the file kept in memory for content sniffing."""
FORM_OVERHEAD = 64 * 1024
"""Allowance beyond ``max_bytes`` for boundaries, part headers and text fields."""
DRAIN_MAX = 16 << 20
"""Most bytes read and dropped after a 413 before the connection is simply closed."""
STAGED_PREFIX = "upload-"
STAGED_SUFFIX = ".part"


@dataclass(frozen=True, kw_only=True)
class UploadForm:
    """The shape of a ``multipart/form-data`` upload: one file part and small text fields.

    Parts not named here are refused with 400, as are a missing file or required field.
    """

    file_field: str = "file"
    fields: tuple[str, ...] = ()
    required_fields: tuple[str, ...] = ()
    max_field_bytes: int = 64 * 1024
    handler_reads: bool = False
    """The handler streams the body itself (``receive_upload``, with its own size limit and
    staging directory) and gets None; the form is still what the API documents."""

    def __post_init__(self) -> None:
        unknown = set(self.required_fields) - set(self.fields)
        if unknown:
            raise ValueError(f"required_fields {sorted(unknown)} are not among fields")
        if self.file_field in self.fields:
            raise ValueError(f"{self.file_field!r} is the file part, not a text field")


@dataclass(frozen=True, kw_only=True)
class StagedUpload:
    """A received upload, complete and within the limit, in a staged file.

    The gateway deletes ``path`` when the handler returns or fails: whoever keeps the file
    renames it into place first (it is on the blobs' filesystem, so ``os.replace`` is atomic).
    ``file_name`` is the client's name reduced to its last path component; ``content_type`` is
    what the client declared (sniff ``head`` rather than trust it).
    """

    path: Path
    file_name: str
    content_type: str
    size: int
    sha256: str
    head: bytes
    fields: Mapping[str, str] = field(default_factory=dict)


def declared_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    if not value.isdigit():
        raise HttpProblem(400, "Content-Length must be a non-negative integer")
    return int(value)


async def _drain(chunks: AsyncIterator[bytes]) -> None:
    dropped = 0
    with contextlib.suppress(ClientDisconnect):
        async for chunk in chunks:
            dropped += len(chunk)
            if dropped > DRAIN_MAX:
                return


def _too_large(what: str, limit: int) -> HttpProblem:
    return HttpProblem(413, f"{what} is larger than the limit of {limit} bytes")


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The whole body, refusing with 413 past ``max_bytes`` (at once if Content-Length says so)."""
    length = declared_length(request)
    if length is not None and length > max_bytes:
        raise _too_large("the request body", max_bytes)
    chunks = request.stream().__aiter__()
    parts: list[bytes] = []
    received = 0
    try:
        async for chunk in chunks:
            received += len(chunk)
            if received > max_bytes:
                await _drain(chunks)
                raise _too_large("the request body", max_bytes)
            parts.append(chunk)
    except ClientDisconnect:
        raise HttpProblem(400, "the client disconnected before the body was complete") from None
    return b"".join(parts)


def _clean_file_name(raw: str) -> str:
    """The last path component without control characters; length is the owner's business
    (the uploader shortens long names but keeps their extension)."""
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    return "".join(char for char in name if unicodedata.category(char)[0] != "C").strip()


class _FormReader:
    """The parser's callbacks: they sort part bytes into the file buffer or text fields."""

    def __init__(self, form: UploadForm, max_bytes: int) -> None:
        self.form = form
        self.max_bytes = max_bytes
        self.header_name = bytearray()
        self.header_value = bytearray()
        self.headers: dict[bytes, bytes] = {}
        self.current: str | None = None
        self.text = bytearray()
        self.fields: dict[str, str] = {}
        self.file_seen = False
        self.file_name = ""
        self.content_type = "application/octet-stream"
        self.pending = bytearray()
        self.head = b""
        self.size = 0
        self.finished = False

    def on_part_begin(self) -> None:
        self.headers = {}
        self.current = None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        self.headers[bytes(self.header_name).strip().lower()] = bytes(self.header_value).strip()
        self.header_name.clear()
        self.header_value.clear()

    def on_headers_finished(self) -> None:
        disposition, options = parse_options_header(self.headers.get(b"content-disposition"))
        if disposition != b"form-data" or b"name" not in options:
            raise HttpProblem(400, "each part needs Content-Disposition: form-data; name=...")
        name = options[b"name"].decode("utf-8", "replace")
        if name == self.form.file_field:
            if self.file_seen:
                raise HttpProblem(400, f"more than one {name!r} part")
            self.file_seen = True
            self.file_name = _clean_file_name(
                options.get(b"filename", b"").decode("utf-8", "replace")
            )
            declared = self.headers.get(b"content-type", b"").decode("latin-1").strip()
            self.content_type = declared or "application/octet-stream"
        elif name in self.form.fields:
            if name in self.fields:
                raise HttpProblem(400, f"more than one {name!r} part")
            self.text.clear()
        else:
            raise HttpProblem(400, f"unexpected part {name!r}")
        self.current = name

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.current == self.form.file_field:
            self.size += end - start
            if self.size > self.max_bytes:
                raise _too_large("the file", self.max_bytes)
            self.pending += data[start:end]
            if len(self.head) < HEAD_BYTES:
                self.head += data[start : min(end, start + HEAD_BYTES - len(self.head))]
        elif self.current is not None:
            self.text += data[start:end]
            if len(self.text) > self.form.max_field_bytes:
                raise _too_large(f"the {self.current!r} field", self.form.max_field_bytes)

    def on_part_end(self) -> None:
        if self.current is not None and self.current != self.form.file_field:
            try:
                self.fields[self.current] = self.text.decode("utf-8")
            except UnicodeDecodeError:
                raise HttpProblem(400, f"the {self.current!r} field is not UTF-8") from None
        self.current = None

    def on_end(self) -> None:
        self.finished = True


class _StagedFile:
    """The file being written; writes and hashing happen in a worker thread."""

    def __init__(self, staging_dir: Path) -> None:
        descriptor, name = tempfile.mkstemp(
            prefix=STAGED_PREFIX, suffix=STAGED_SUFFIX, dir=staging_dir
        )
        self.path = Path(name)
        self.file = os.fdopen(descriptor, "wb", buffering=0)
        self.hash = hashlib.sha256()

    def _write(self, block: bytes) -> None:
        self.hash.update(block)
        view = memoryview(block)
        while view:
            written = self.file.write(view)
            view = view[written or 0 :]

    async def write(self, block: bytes) -> None:
        await trio.to_thread.run_sync(self._write, block)

    def discard(self) -> None:
        self.file.close()
        self.path.unlink(missing_ok=True)


async def receive_upload(
    request: Request, form: UploadForm, staging_dir: Path, max_bytes: int
) -> StagedUpload:
    """Stream ``request``'s multipart body to a staged file in ``staging_dir``.

    Raises ``HttpProblem``: 415 if the body is not ``multipart/form-data``, 413 past
    ``max_bytes`` (the file part) or ``max_field_bytes`` (a text field), 400 for a malformed
    body, a missing part or a disconnect. Nothing is left in ``staging_dir`` when it raises.
    """
    media, options = parse_options_header(request.headers.get("content-type"))
    if media != b"multipart/form-data":
        raise HttpProblem(415, f"expected multipart/form-data with a {form.file_field!r} part")
    boundary = options.get(b"boundary")
    if not boundary:
        raise HttpProblem(400, "the multipart Content-Type has no boundary")
    body_limit = max_bytes + FORM_OVERHEAD
    length = declared_length(request)
    if length is not None and length > body_limit:
        raise _too_large("the upload", max_bytes)
    reader = _FormReader(form, max_bytes)
    try:
        parser = MultipartParser(
            boundary,
            callbacks={
                "on_part_begin": reader.on_part_begin,
                "on_part_data": reader.on_part_data,
                "on_part_end": reader.on_part_end,
                "on_header_field": reader.on_header_field,
                "on_header_value": reader.on_header_value,
                "on_header_end": reader.on_header_end,
                "on_headers_finished": reader.on_headers_finished,
                "on_end": reader.on_end,
            },
        )
    except ValueError as error:
        raise HttpProblem(400, f"malformed multipart body: {error}") from None
    staged = _StagedFile(staging_dir)
    chunks = request.stream().__aiter__()
    received = 0
    try:
        try:
            async for chunk in chunks:
                received += len(chunk)
                if received > body_limit:
                    raise _too_large("the upload", max_bytes)
                parser.write(chunk)
                if len(reader.pending) >= FLUSH_BYTES:
                    block, reader.pending = bytes(reader.pending), bytearray()
                    await staged.write(block)
        except ClientDisconnect:
            raise HttpProblem(
                400, "the client disconnected before the upload was complete"
            ) from None
        except MultipartParseError as error:
            raise HttpProblem(400, f"malformed multipart body: {error}") from None
        except HttpProblem as problem:
            if problem.status == 413:
                staged.discard()
                await _drain(chunks)
            raise
        if not reader.finished:
            raise HttpProblem(400, "the multipart body ended before its closing boundary")
        if not reader.file_seen:
            raise HttpProblem(400, f"the {form.file_field!r} part is missing")
        missing = [name for name in form.required_fields if name not in reader.fields]
        if missing:
            raise HttpProblem(400, f"the {missing[0]!r} part is missing")
        if reader.pending:
            await staged.write(bytes(reader.pending))
        staged.file.close()
    except BaseException:
        staged.discard()
        raise
    return StagedUpload(
        path=staged.path,
        file_name=reader.file_name,
        content_type=reader.content_type,
        size=reader.size,
        sha256=staged.hash.hexdigest(),
        head=reader.head,
        fields=reader.fields,
    )
