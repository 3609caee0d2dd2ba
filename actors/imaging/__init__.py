"""Image handling for photos: what an upload is, what it shows, and the versions frames display.

Pure, synchronous, CPU-bound functions: callers run them in worker threads with
``trio.to_thread.run_sync(fn, ..., limiter=...)``. Pillow and OpenCV release the GIL while
decoding, resizing and detecting faces, so two workers use two cores; only the final JPEG
encoding of each version (a few ms) holds it.

Importing this package registers pillow-heif's HEIC/HEIF opener with Pillow.
"""

import pillow_heif

from ._analyze import analyze
from ._decode import MAX_PIXELS
from ._errors import CorruptImage, ImageRejected, ImageTooLarge, UnsupportedImage
from ._inspect import ImageInfo, inspect
from ._render import HD, THUMBNAIL, RenderedVersion, VersionSpec, frame_spec, render_versions
from ._sniff import ACCEPTED, SNIFF_BYTES, sniff

pillow_heif.register_heif_opener()

__all__ = [
    "ACCEPTED",
    "HD",
    "MAX_PIXELS",
    "SNIFF_BYTES",
    "THUMBNAIL",
    "CorruptImage",
    "ImageInfo",
    "ImageRejected",
    "ImageTooLarge",
    "RenderedVersion",
    "UnsupportedImage",
    "VersionSpec",
    "analyze",
    "frame_spec",
    "inspect",
    "render_versions",
    "sniff",
]
