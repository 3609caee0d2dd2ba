"""What a photo holds: EXIF facts, dominant colours, a perceptual hash and faces.

Nothing is invented: ``labels`` and ``objects`` stay empty until a real classifier exists.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import cv2
import msgspec
import numpy as np
from PIL import Image

from actors.events import AiMetadata, Face

from ._decode import flatten, icc_profile, into_srgb, make_upright, open_image, upright_size

ANALYSIS_SIDE = 768
"""Faces are detected on the upright photo reduced to this longest side (greyscale). The
cascade's cost grows with pixels and scales searched; at this size a face a crop should care
about (a twentieth of the short side and up) is still 28 px or more."""
FACE_SCALE_STEP = 1.15
"""How much the cascade's window grows per pass (OpenCV's default 1.1 searches about half as
many sizes again for the same faces, at twice the time on busy photos)."""
PALETTE_COLOURS = 5

_EXIF_IFD = 0x8769
_GPS_IFD = 0x8825
_MAKE, _MODEL, _DATETIME = 0x010F, 0x0110, 0x0132
_DATETIME_ORIGINAL, _OFFSET_TIME_ORIGINAL, _OFFSET_TIME = 0x9003, 0x9011, 0x9010
_GPS_LAT_REF, _GPS_LAT, _GPS_LON_REF, _GPS_LON = 1, 2, 3, 4

# A cascade classifier is not safe to share between threads; each worker thread loads its own,
# once, on first use.
_local = threading.local()


def analyze(path: Path) -> AiMetadata:
    """Analyse the photo at ``path`` (raises ``ImageRejected`` like ``inspect``).

    ``taken_at`` is RFC 3339: the camera's wall-clock time with its EXIF offset when recorded,
    read as UTC ("Z") when not. ``gps`` is (latitude, longitude) in decimal degrees.
    ``width``/``height`` and the face boxes are upright, full-size pixel coordinates.
    """
    with open_image(path) as source:
        image = source.image
        exif = _exif_facts(image)
        turn = source.turn()
        full = upright_size(image.size, turn)
        target = _fit(full, ANALYSIS_SIDE)
        if target[0] < full[0] and target[1] < full[1]:
            image.draft("RGB", upright_size(target, turn))
        source.load()
        profile = icc_profile(image)
        decoded = flatten(image)
    upright = make_upright(decoded, turn)
    if upright.size != target:
        upright = upright.resize(target, Image.Resampling.BILINEAR, reducing_gap=2.0)
    upright = into_srgb(upright, profile)
    grey = upright.convert("L")
    return AiMetadata(
        faces=_faces(grey, full),
        width=full[0],
        height=full[1],
        taken_at=exif.taken_at,
        camera=exif.camera,
        gps=exif.gps,
        orientation=source.recorded_orientation(),
        palette=_palette(upright),
        phash=_phash(grey),
    )


def _fit(size: tuple[int, int], side: int) -> tuple[int, int]:
    width, height = size
    scale = min(1.0, side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


# -- EXIF -------------------------------------------------------------------------------------


class _ExifFacts(msgspec.Struct, frozen=True):
    taken_at: str | None = None
    camera: str | None = None
    gps: tuple[float, float] | None = None


def _exif_facts(image: Image.Image) -> _ExifFacts:
    try:
        exif = image.getexif()
        sub = dict(exif.get_ifd(_EXIF_IFD))
        gps = dict(exif.get_ifd(_GPS_IFD))
    except Exception:
        # EXIF is optional and comes in every state of disrepair; a block Pillow cannot
        # parse (it raises anything from struct.error to KeyError) must not lose the photo.
        return _ExifFacts()
    return _ExifFacts(_taken_at(exif, sub), _camera(exif), _gps(gps))


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    cleaned = value.replace("\x00", " ").strip()
    return cleaned or None


def _taken_at(exif: Mapping[int, Any], sub: Mapping[int, Any]) -> str | None:
    for stamp_tag, offset_tag, ifd in (
        (_DATETIME_ORIGINAL, _OFFSET_TIME_ORIGINAL, sub),
        (_DATETIME, _OFFSET_TIME, exif),
    ):
        stamp = _text(ifd.get(stamp_tag))
        if stamp is None:
            continue
        try:
            moment = datetime.strptime(stamp[:19], "%Y:%m:%d %H:%M:%S")
        except ValueError:
            continue
        offset = _offset(_text(sub.get(offset_tag)))
        return moment.isoformat() + offset
    return None


def _offset(text: str | None) -> str:
    if text is None or len(text) != 6 or text[0] not in "+-" or text[3] != ":":
        return "Z"
    hours, minutes = text[1:3], text[4:6]
    if not (hours.isdigit() and minutes.isdigit() and int(hours) <= 14 and int(minutes) < 60):
        return "Z"
    return "Z" if text in ("+00:00", "-00:00") else text


def _camera(exif: Mapping[int, Any]) -> str | None:
    make, model = _text(exif.get(_MAKE)), _text(exif.get(_MODEL))
    if make and model and model.lower().startswith(make.lower()):
        return model
    return " ".join(part for part in (make, model) if part) or None


def _gps(gps: Mapping[int, Any]) -> tuple[float, float] | None:
    latitude = _degrees(gps.get(_GPS_LAT), _text(gps.get(_GPS_LAT_REF)), "S", 90.0)
    longitude = _degrees(gps.get(_GPS_LON), _text(gps.get(_GPS_LON_REF)), "W", 180.0)
    if latitude is None or longitude is None:
        return None
    return round(latitude, 7), round(longitude, 7)


def _degrees(value: object, ref: str | None, negative: str, limit: float) -> float | None:
    if not isinstance(value, tuple) or not 1 <= len(value) <= 3:
        return None
    try:
        parts = [float(part) for part in value]
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    degrees = sum(part / 60**i for i, part in enumerate(parts))
    if not np.isfinite(degrees) or degrees > limit or any(part < 0 for part in parts):
        return None
    south_or_west = ref is not None and ref.upper().startswith(negative)
    return float(-degrees if south_or_west else degrees)


# -- pixels -----------------------------------------------------------------------------------


def _palette(image: Image.Image) -> list[str]:
    """Up to ``PALETTE_COLOURS`` dominant colours, most frequent first, as ``#rrggbb``."""
    small = image.convert("RGB")
    small.thumbnail((96, 96), Image.Resampling.BILINEAR)
    quantized = small.quantize(PALETTE_COLOURS, Image.Quantize.MEDIANCUT)
    palette = quantized.getpalette() or []
    counts = sorted(quantized.getcolors() or [], reverse=True)
    colours: list[str] = []
    for _, index in counts:
        assert isinstance(index, int)  # a palette image's colours are palette indices
        r, g, b = palette[3 * index : 3 * index + 3]
        colour = f"#{r:02x}{g:02x}{b:02x}"
        if colour not in colours:
            colours.append(colour)
    return colours


def _phash(grey: Image.Image) -> str:
    """A 64-bit DCT perceptual hash as 16 hex digits: the 8x8 lowest frequencies of a 32x32
    greyscale image, each bit set when above their median."""
    pixels = np.asarray(grey.resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float32)
    low = cv2.dct(pixels)[:8, :8]
    bits = (low > np.median(low)).flatten()
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    return f"{value:016x}"


def _faces(grey: Image.Image, full: tuple[int, int]) -> list[Face]:
    """Frontal faces found by OpenCV's Haar cascade, in upright full-size coordinates."""
    pixels = cv2.equalizeHist(np.asarray(grey, dtype=np.uint8))
    smallest = max(24, min(grey.size) // 20)
    found = _cascade().detectMultiScale(
        pixels, scaleFactor=FACE_SCALE_STEP, minNeighbors=5, minSize=(smallest, smallest)
    )
    scale_x, scale_y = full[0] / grey.width, full[1] / grey.height
    faces = [
        Face(
            x=round(x * scale_x),
            y=round(y * scale_y),
            width=round(w * scale_x),
            height=round(h * scale_y),
        )
        for x, y, w, h in (tuple(int(v) for v in box) for box in found)
    ]
    return sorted(faces, key=lambda face: (face.y, face.x))


def _cascade() -> cv2.CascadeClassifier:
    cascade: cv2.CascadeClassifier | None = getattr(_local, "cascade", None)
    if cascade is None:
        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"  # type: ignore[attr-defined]
        cascade = cv2.CascadeClassifier(path)
        if cascade.empty():
            raise RuntimeError(f"cannot load OpenCV's face cascade from {path}")
        _local.cascade = cascade
    return cascade
