"""Why an image is refused; each carries a precise human detail as ``str(error)``."""

from __future__ import annotations


class ImageRejected(Exception):
    """An upload that framehub will not take as a photo."""


class UnsupportedImage(ImageRejected):
    """Not a JPEG, PNG, WebP, GIF or HEIC/HEIF image, judged from its content (HTTP 415)."""


class CorruptImage(ImageRejected):
    """Claims to be an accepted format but is truncated or cannot be decoded (HTTP 422)."""


class ImageTooLarge(ImageRejected):
    """More pixels than ``MAX_PIXELS``: refused from its header, before any decoding (HTTP 413)."""
