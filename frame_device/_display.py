"""Drawing the panel: a photo padded to exactly the panel's size, encoded as PNG.

Encoding is the expensive part (a 1024x600 PNG takes tens of milliseconds), and in the
simulator fifty frames often show the same photo; one ``Renderer`` shared by them encodes
each (photo, panel size) once and hands the same bytes to everyone.
"""

from __future__ import annotations

import asyncio
import io
from collections import OrderedDict
from pathlib import Path

from PIL import Image, ImageOps

RenderKey = tuple[str, int, int]
BLANK = ""
"""The key of a black screen (no photo, or quiet hours)."""


def render_png(source: Path | None, width: int, height: int) -> bytes:
    """The photo at ``source`` (None: black) letterboxed onto a black ``width`` x ``height``
    canvas, as PNG. Raises OSError (or PIL's subclass of it) for an unreadable photo."""
    if source is None:
        canvas = Image.new("RGB", (width, height))
    else:
        with Image.open(source) as photo:
            # JPEG: decode at a reduced scale when much bigger (either way up, for EXIF turns).
            side = max(width, height)
            photo.draft("RGB", (side, side))
            upright = ImageOps.exif_transpose(photo).convert("RGB")
        canvas = ImageOps.pad(upright, (width, height), color=(0, 0, 0))
    buffer = io.BytesIO()
    canvas.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


class Renderer:
    """Encoded panels by (photo SHA-256, width, height), least recently used dropped first.

    Concurrent requests for the same key share one encoding. Used from one event loop.
    """

    def __init__(self, capacity: int = 32) -> None:
        self._capacity = capacity
        self._done: OrderedDict[RenderKey, bytes] = OrderedDict()
        self._pending: dict[RenderKey, asyncio.Task[bytes]] = {}

    async def png(self, source: Path | None, sha256: str, width: int, height: int) -> bytes:
        key = (sha256 if source is not None else BLANK, width, height)
        if key in self._done:
            self._done.move_to_end(key)
            return self._done[key]
        task = self._pending.get(key)
        if task is None:
            task = asyncio.create_task(asyncio.to_thread(render_png, source, width, height))
            self._pending[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        # Shielded: one frame giving up (cancelled) does not cancel the others' encoding.
        return await asyncio.shield(task)

    def _finished(self, key: RenderKey, task: asyncio.Task[bytes]) -> None:
        del self._pending[key]
        if task.cancelled() or task.exception() is not None:
            return
        self._done[key] = task.result()
        while len(self._done) > self._capacity:
            self._done.popitem(last=False)
