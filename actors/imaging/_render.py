"""Display versions of a photo: thumbnails, HD, and versions sized for a frame's panel."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from pathlib import Path

import msgspec
from PIL import Image

from actors.events import Face

from ._decode import flatten, icc_profile, into_srgb, make_upright, open_image, upright_size


class VersionSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A version to render: ``fill`` covers ``width`` x ``height`` exactly (cropping what falls
    outside); otherwise the photo fits inside the box, aspect ratio kept, never upscaled."""

    name: str
    width: int
    height: int
    fill: bool = False


THUMBNAIL = VersionSpec(name="thumbnail", width=300, height=200)
HD = VersionSpec(name="hd", width=1920, height=1080)


def frame_spec(width: int, height: int, fill: bool = True) -> VersionSpec:
    """The version for a frame whose panel is ``width`` x ``height`` pixels."""
    name = f"frame-{width}x{height}" + ("" if fill else "-fit")
    return VersionSpec(name=name, width=width, height=height, fill=fill)


class RenderedVersion(msgspec.Struct, frozen=True, kw_only=True):
    """One rendered version: a baseline JPEG, sRGB 8-bit, upright, without EXIF, GPS or ICC."""

    name: str
    width: int
    height: int
    data: bytes
    sha256: str


JPEG_QUALITY = 85
_RESAMPLE = Image.Resampling.HAMMING
_REDUCING_GAP = 2.0
"""Pillow's ``thumbnail()`` default gap. A reduction of 2x or more first averages whole blocks
of pixels, then filters the rest. After libjpeg's DCT scaling the largest step is under 2x,
where the HAMMING filter (support 1) costs about 60% of BICUBIC: measured on the benchmark's
photo, its hd version is 30.7 dB from a LANCZOS reduction of the full-size decode, while
merely JPEG-encoding that LANCZOS reference at our quality scores 30.9 dB — the filter's
difference is below what the encoding itself changes."""


class _Plan(msgspec.Struct, frozen=True):
    index: int  # position in the caller's specs
    spec: VersionSpec
    scale: float
    scaled: tuple[int, int]  # the whole upright photo at this version's scale


def render_versions(
    path: Path, specs: Sequence[VersionSpec], faces: Sequence[Face] = ()
) -> list[RenderedVersion]:
    """Render ``specs`` of the photo at ``path``; the result is in the order of ``specs``.

    The photo is decoded once (a JPEG with libjpeg's DCT scaling to the smallest 1/2, 1/4 or
    1/8 scale still covering the largest version; a HEIC from an embedded thumbnail when one
    is big enough) and flattened to 8 bits; it is reduced to the largest version, turned
    upright and converted to sRGB, and each smaller version is reduced from the uncropped
    image of the previous step.
    ``faces`` (upright, full-size coordinates, as ``analyze`` finds them) decide where a fill
    version is cropped: around the centre of their bounding box, else the photo's centre.

    Raises ``ImageRejected`` like ``inspect``; ``ValueError`` for a spec with an empty box.
    """
    for spec in specs:
        if spec.width < 1 or spec.height < 1:
            raise ValueError(f"version {spec.name!r} has an empty box {spec.width}x{spec.height}")
    if not specs:
        return []
    with open_image(path) as source:
        image = source.image
        orientation = source.turn()
        full = upright_size(image.size, orientation)
        plans = sorted(
            (_plan(i, spec, full) for i, spec in enumerate(specs)), key=lambda p: -p.scale
        )
        # Versions reduced from the photo form the chain; a fill version larger than the
        # photo is enlarged from the full-size pixels on its own, never fed back into it.
        chain = [plan for plan in plans if plan.scale <= 1.0]
        largest = chain[0].scaled if chain and len(chain) == len(plans) else full
        if largest[0] < full[0] and largest[1] < full[1]:
            image.draft("RGB", upright_size(largest, orientation))
        source.load()
        profile = icc_profile(image)
        decoded = flatten(image)
    # The first reduction runs on the pixels as stored; only its result is turned upright,
    # which moves far fewer pixels than turning the decoded photo.
    stored = upright_size(largest, orientation)
    if decoded.size != stored:
        decoded = decoded.resize(stored, _RESAMPLE, reducing_gap=_REDUCING_GAP)
    current = into_srgb(make_upright(decoded, orientation), profile)
    centre = _faces_centre(faces, full)

    rendered: dict[int, RenderedVersion] = {}
    for plan in plans:
        if plan.scale > 1.0:
            rendered[plan.index] = _encode(plan.spec.name, _enlarged(current, plan, centre))
            continue
        if current.size != plan.scaled:
            current = current.resize(plan.scaled, _RESAMPLE, reducing_gap=_REDUCING_GAP)
        version = current.crop(_crop_box(plan, centre)) if plan.spec.fill else current
        rendered[plan.index] = _encode(plan.spec.name, version)
    return [rendered[i] for i in range(len(specs))]


def _enlarged(photo: Image.Image, plan: _Plan, centre: tuple[float, float]) -> Image.Image:
    """A fill version larger than ``photo`` (the whole upright photo) on one side: only the
    part its crop box keeps is resized, never the whole photo at that scale (a 1x20000 photo
    filling a 1024x600 panel would be 1024 by 20 million pixels)."""
    left, top, right, bottom = _crop_box(plan, centre)
    x_scale, y_scale = plan.scaled[0] / photo.width, plan.scaled[1] / photo.height
    source = (left / x_scale, top / y_scale, right / x_scale, bottom / y_scale)
    return photo.resize((right - left, bottom - top), _RESAMPLE, box=source)


def _plan(index: int, spec: VersionSpec, full: tuple[int, int]) -> _Plan:
    width, height = full
    if spec.fill:
        scale = max(spec.width / width, spec.height / height)
        scaled = (
            max(spec.width, round(width * scale)),
            max(spec.height, round(height * scale)),
        )
    else:
        scale = min(spec.width / width, spec.height / height, 1.0)
        scaled = (
            min(spec.width, max(1, round(width * scale))),
            min(spec.height, max(1, round(height * scale))),
        )
    return _Plan(index, spec, scale, scaled)


def _faces_centre(faces: Sequence[Face], full: tuple[int, int]) -> tuple[float, float]:
    """The centre of the faces' bounding box as a fraction of the upright photo's size."""
    if not faces:
        return 0.5, 0.5
    left = min(face.x for face in faces)
    top = min(face.y for face in faces)
    right = max(face.x + face.width for face in faces)
    bottom = max(face.y + face.height for face in faces)
    return (left + right) / 2 / full[0], (top + bottom) / 2 / full[1]


def _crop_box(plan: _Plan, centre: tuple[float, float]) -> tuple[int, int, int, int]:
    (width, height), box_w, box_h = plan.scaled, plan.spec.width, plan.spec.height
    left = _clamp(round(centre[0] * width - box_w / 2), 0, width - box_w)
    top = _clamp(round(centre[1] * height - box_h / 2), 0, height - box_h)
    return left, top, left + box_w, top + box_h


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(value, high))


def _encode(name: str, version: Image.Image) -> RenderedVersion:
    if version.mode != "RGB":
        version = version.convert("RGB")
    buffer = io.BytesIO()
    # Only what is passed here is written: no EXIF, no GPS, no ICC profile (sRGB implied).
    version.save(buffer, "JPEG", quality=JPEG_QUALITY, progressive=False)
    data = buffer.getvalue()
    return RenderedVersion(
        name=name,
        width=version.width,
        height=version.height,
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
    )
