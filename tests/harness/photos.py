"""Photos as a phone sends them: real files of each accepted format, made with Pillow."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image

import actors.imaging  # noqa: F401  (registers pillow-heif's HEIF plug-in with Pillow)
from tests.harness.images import exif_with, jpeg_bytes, marked, scene, stored_as


def encode(image: Image.Image, kind: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, kind, **params)
    return buffer.getvalue()


def jpeg(width: int = 320, height: int = 240, seed: int = 1) -> bytes:
    return jpeg_bytes(scene(width, height, seed), quality=85)


def progressive_jpeg(width: int = 320, height: int = 240, seed: int = 2) -> bytes:
    return jpeg_bytes(scene(width, height, seed), quality=85, progressive=True)


def png(width: int = 320, height: int = 240, seed: int = 3) -> bytes:
    return encode(scene(width, height, seed), "PNG")


def png16(width: int = 320, height: int = 240, seed: int = 4) -> bytes:
    """A 16-bit greyscale PNG (Pillow mode ``I;16``), as scanners and some editors write."""
    grey = np.asarray(scene(width, height, seed).convert("L"), dtype=np.uint16) * 257
    image = Image.fromarray(grey)
    assert image.mode == "I;16", image.mode
    return encode(image, "PNG")


def rgba_png(width: int = 320, height: int = 240, seed: int = 5) -> bytes:
    image = scene(width, height, seed).convert("RGBA")
    alpha = Image.linear_gradient("L").resize((width, height))
    image.putalpha(alpha)
    return encode(image, "PNG")


def webp(width: int = 320, height: int = 240, seed: int = 6) -> bytes:
    return encode(scene(width, height, seed), "WEBP", quality=80)


def animated_gif(width: int = 320, height: int = 240, seed: int = 7) -> bytes:
    frames = [scene(width, height, seed + i).convert("P") for i in range(3)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def heic(width: int = 320, height: int = 240, seed: int = 8) -> bytes:
    return encode(scene(width, height, seed), "HEIF", quality=80)


def rotated_jpeg(orientation: int, width: int = 480, height: int = 320) -> bytes:
    """A JPEG whose pixels are stored turned, tagged with EXIF ``orientation``: upright it is
    ``marked()`` (red block top-left, green block top-right). The EXIF also names the camera
    and where the photo was taken, as a phone's does."""
    exif = exif_with(
        orientation,
        make="Framephone",
        model="FP 1",
        taken="2024:07:14 18:30:00",
        gps=("N", (52.0, 31.0, 12.0), "E", (13.0, 24.0, 36.0)),
    )
    return jpeg_bytes(stored_as(marked(width, height), orientation), exif=exif)


FORMATS: dict[str, tuple[str, Callable[[], bytes], tuple[int, int]]] = {
    # name: (sniffed content type, maker, upright size)
    "jpeg": ("image/jpeg", lambda: jpeg(2400, 1600), (2400, 1600)),
    "progressive-jpeg": ("image/jpeg", progressive_jpeg, (320, 240)),
    "png": ("image/png", png, (320, 240)),
    "png-16-bit": ("image/png", png16, (320, 240)),
    "png-rgba": ("image/png", rgba_png, (320, 240)),
    "webp": ("image/webp", webp, (320, 240)),
    "gif-animated": ("image/gif", animated_gif, (320, 240)),
    "heic": ("image/heic", heic, (320, 240)),
}
"""Every format the upload accepts. The JPEG is larger than the HD box, so both bounds show."""


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def near(pixel: tuple[int, ...], colour: tuple[int, int, int], tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel[:3], colour, strict=True))


def padded_jpeg(size: int, seed: int = 1) -> bytes:
    """A valid JPEG of exactly ``size`` bytes: a small one with comment segments added."""
    base = jpeg(64, 48, seed)
    room = size - len(base)
    assert room >= 0, (size, len(base))
    if room == 0:
        return base
    count = -(-room // (0xFFFF + 2))  # segments of at most 65533 payload bytes + 4 overhead
    payload = room - 4 * count
    assert payload >= 0, (size, room)
    segments = b""
    for index in range(count):
        part = payload // count + (1 if index < payload % count else 0)
        segments += b"\xff\xfe" + (part + 2).to_bytes(2, "big") + b"c" * part
    data = base[:2] + segments + base[2:]
    assert len(data) == size
    return data
