"""Is this upload an image framehub takes, and what are its basic facts."""

from __future__ import annotations

from pathlib import Path

import msgspec

from ._decode import open_image, upright_size


class ImageInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What ``inspect`` learned.

    ``width``/``height`` are upright, as every version is rendered. ``orientation`` is what
    the camera recorded (1 when nothing valid was): for JPEG, PNG and WebP the turn that was
    needed; a HEIC/HEIF file's own rotation (applied by libheif) is authoritative.
    ``mode`` is Pillow's mode of the stored pixels (``RGB``, ``CMYK``, ``P``, ``I;16``...).
    """

    content_type: str
    width: int
    height: int
    orientation: int
    frames: int
    mode: str


_JPEG_CHECK_SCALE = 8


def inspect(path: Path) -> ImageInfo:
    """Sniff ``path``, check it against the pixel policy, and decode it once to prove it whole.

    Raises ``UnsupportedImage``, ``ImageTooLarge`` (from the header, nothing decoded) or
    ``CorruptImage``. A JPEG is decoded at 1/8 scale: every entropy-coded byte is still read,
    so truncation and corruption are found, without a full-size bitmap in memory. An animated
    image is checked on its first frame (the one framehub shows); ``frames`` counts them all.
    """
    with open_image(path) as source:
        image = source.image
        mode = image.mode
        width, height = upright_size(image.size, source.turn())
        frames = source.frames()
        if source.content_type == "image/jpeg":
            image.draft(
                None,
                (
                    max(1, image.size[0] // _JPEG_CHECK_SCALE),
                    max(1, image.size[1] // _JPEG_CHECK_SCALE),
                ),
            )
        source.load()
    return ImageInfo(
        content_type=source.content_type,
        width=width,
        height=height,
        orientation=source.recorded_orientation() or 1,
        frames=frames,
        mode=mode,
    )
