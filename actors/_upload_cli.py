"""``run.py upload``: send photos to a running hub over its HTTP API, with a progress line.

It is an ordinary API client (the same routes a phone app uses), so it works against a hub on
this machine or on another one.
"""

from __future__ import annotations

import json
import mimetypes
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import httpx


class UploadError(Exception):
    pass


def _problem(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("title") or response.status_code)
    return f"HTTP {response.status_code}"


def _album_id(client: httpx.Client, name: str) -> str:
    """The id of the caller's album called ``name``, creating it when there is none."""
    cursor: str | None = None
    while True:
        params = {"limit": "200", **({"cursor": cursor} if cursor else {})}
        response = client.get("/api/v1/albums", params=params)
        if response.status_code != 200:
            raise UploadError(f"cannot list albums: {_problem(response)}")
        page = response.json()
        for album in page["items"]:
            if album["name"] == name:
                return str(album["album_id"])
        cursor = page.get("next_cursor")
        if not cursor:
            break
    response = client.post("/api/v1/albums", json={"name": name})
    if response.status_code != 201:
        raise UploadError(f"cannot create album {name!r}: {_problem(response)}")
    return str(response.json()["album_id"])


class _ProgressFile:
    """Wraps an open file: httpx reads it in chunks, and each read redraws a progress line."""

    def __init__(self, file: IO[bytes], out: IO[str], label: str, size: int) -> None:
        self._file = file
        self._out = out
        self._label = label
        self._size = max(size, 1)
        self._sent = 0

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(size)
        if not self._out.isatty():
            return data
        self._sent += len(data)
        percent = min(100, self._sent * 100 // self._size)
        self._out.write(f"\r{self._label} [{'#' * (percent // 5):<20}] {percent:3d}%")
        self._out.flush()
        return data


def upload(
    hub: str,
    token: str,
    paths: Sequence[Path],
    *,
    album: str | None = None,
    out: IO[str] = sys.stderr,
) -> int:
    """Upload ``paths``; returns how many failed. Each result is printed as one line."""
    failures = 0
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=hub.rstrip("/"), headers=headers, timeout=120.0) as client:
        metadata = json.dumps({"album_id": _album_id(client, album)}) if album else None
        for index, path in enumerate(paths, start=1):
            try:
                size = path.stat().st_size
                content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                label = f"[{index}/{len(paths)}] {path.name}"
                with path.open("rb") as file:
                    streamed = _ProgressFile(file, out, label, size)
                    response = client.post(
                        "/api/v1/storage/photos/upload",
                        files={"file": (path.name, streamed, content_type)},  # type: ignore[dict-item]
                        data={"metadata": metadata} if metadata else None,
                    )
            except OSError as error:
                out.write(f"\r{path}: {error}\n")
                failures += 1
                continue
            if response.status_code in (200, 201):
                body = response.json()
                note = "uploaded" if response.status_code == 201 else "already there"
                out.write(f"\r{path}: {note} as {body['file_id']}\n")
            else:
                out.write(f"\r{path}: refused: {_problem(response)}\n")
                failures += 1
    return failures
