"""Opening an image safely: the plugin chosen by sniffed content, the pixel policy checked on
the header before anything is decoded, and decoder failures turned into ``ImageRejected``.

Pillow's own decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``, a process-wide global)
refuses a 200 MP phone photo. Rather than change that global for every user of Pillow in the
process, images are opened with the plugin class of their sniffed type directly (which skips
``Image.open``'s check) and our own ``MAX_PIXELS`` is applied to the size read from the header.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pillow_heif
from PIL import Image, ImageCms, ImageFile
from PIL.GifImagePlugin import GifImageFile
from PIL.JpegImagePlugin import JpegImageFile
from PIL.PngImagePlugin import PngImageFile
from PIL.WebPImagePlugin import WebPImageFile

from ._errors import CorruptImage, ImageTooLarge, UnsupportedImage
from ._sniff import SNIFF_BYTES, describe, sniff

MAX_PIXELS = 250_000_000
"""A 200 MP phone photo (16320x12240) passes, a 900 MP decompression bomb does not."""

_PLUGINS: dict[str, type[ImageFile.ImageFile]] = {
    "image/jpeg": JpegImageFile,
    "image/png": PngImageFile,
    "image/gif": GifImageFile,
    "image/webp": WebPImageFile,
    "image/heic": pillow_heif.HeifImageFile,
    "image/heif": pillow_heif.HeifImageFile,
}
_HEIF = frozenset({"image/heic", "image/heif"})
_NAMES = {
    "image/jpeg": "JPEG",
    "image/png": "PNG",
    "image/gif": "GIF",
    "image/webp": "WebP",
    "image/heic": "HEIC",
    "image/heif": "HEIF",
}
# What Pillow and libheif raise on data they cannot make sense of.
_DECODER_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error)

_TRANSPOSE: dict[int, tuple[Image.Transpose, ...]] = {
    1: (),
    2: (Image.Transpose.FLIP_LEFT_RIGHT,),
    3: (Image.Transpose.ROTATE_180,),
    4: (Image.Transpose.FLIP_TOP_BOTTOM,),
    5: (Image.Transpose.TRANSPOSE,),
    6: (Image.Transpose.ROTATE_270,),
    7: (Image.Transpose.TRANSVERSE,),
    8: (Image.Transpose.ROTATE_90,),
}
_ORIENTATION_TAG = 0x0112


@dataclass(frozen=True, slots=True)
class Source:
    """An image opened by ``open_image``: its header parsed, its pixels not yet decoded."""

    content_type: str
    image: ImageFile.ImageFile

    @property
    def name(self) -> str:
        return _NAMES[self.content_type]

    def load(self) -> None:
        """Decode the pixels (the first frame); ``CorruptImage`` if the decoder fails."""
        with _decoding(self.name):
            self.image.load()

    def frames(self) -> int:
        with _decoding(self.name):
            return int(getattr(self.image, "n_frames", 1))

    def turn(self) -> int:
        """The EXIF orientation still to apply to the decoded pixels to make them upright."""
        if self.content_type in _HEIF:
            return 1  # libheif applies the container's rotation and mirroring itself
        return orientation_of(self.image)

    def recorded_orientation(self) -> int | None:
        """The orientation the camera recorded in EXIF (1-8), ``None`` if absent or invalid."""
        if self.content_type in _HEIF:
            # pillow-heif resets the EXIF tag (libheif has applied the rotation) and keeps
            # the camera's value aside.
            value = self.image.info.get("original_orientation")
        else:
            value = _exif_orientation(self.image)
        return value if isinstance(value, int) and value in _TRANSPOSE else None


@contextmanager
def open_image(path: Path) -> Iterator[Source]:
    """Open ``path`` as its sniffed type, parse its header and apply the pixel policy.

    Raises ``UnsupportedImage``, ``ImageTooLarge`` or ``CorruptImage`` (an unparseable
    header); filesystem errors propagate. The file is closed on leaving the block; a loaded
    image stays usable after it. Only ``Source`` methods translate decoder errors, so a bug
    in the caller's block is never mistaken for a corrupt upload.

    One limit is Pillow's: its WebP plugin refuses a canvas over twice
    ``PIL.Image.MAX_IMAGE_PIXELS`` (179 MP by default) while parsing the header; that is
    reported as ``ImageTooLarge`` too.
    """
    with path.open("rb") as fp:
        content_type = _sniffed(fp)
        name = _NAMES[content_type]
        with _decoding(name):
            image = _PLUGINS[content_type](fp)
        check_pixels(name, image.size)
        yield Source(content_type, image)


@contextmanager
def _decoding(name: str) -> Iterator[None]:
    """Translate decoder failures of a ``name`` image into ``ImageRejected``."""
    try:
        yield
    except Image.DecompressionBombError as error:
        raise ImageTooLarge(f"{name} image refused as a decompression bomb: {error}") from None
    except _DECODER_ERRORS as error:
        detail = str(error) or type(error).__name__
        raise CorruptImage(f"truncated or corrupt {name} image: {detail}") from None


def check_pixels(name: str, size: tuple[int, int]) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise CorruptImage(f"{name} image declares an empty size {width}x{height}")
    if width * height > MAX_PIXELS:
        raise ImageTooLarge(
            f"{name} image is {width}x{height} = {width * height:,} pixels"
            f" ({width * height / 1e6:,.0f} MP); the limit is {MAX_PIXELS:,} pixels"
        )


def _sniffed(fp: BinaryIO) -> str:
    head = fp.read(SNIFF_BYTES)
    fp.seek(0)
    content_type = sniff(head)
    if content_type is None:
        raise UnsupportedImage(
            f"content is {describe(head)}, not a JPEG, PNG, WebP, GIF or HEIC/HEIF image"
        )
    return content_type


def orientation_of(image: Image.Image) -> int:
    """The EXIF orientation (1-8) of ``image``; 1 when absent, invalid or unreadable."""
    value = _exif_orientation(image)
    return value if isinstance(value, int) and value in _TRANSPOSE else 1


def _exif_orientation(image: Image.Image) -> object:
    try:
        return image.getexif().get(_ORIENTATION_TAG)
    except _DECODER_ERRORS:
        return None


def upright_size(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    return (size[1], size[0]) if orientation >= 5 else size


def make_upright(image: Image.Image, orientation: int) -> Image.Image:
    for method in _TRANSPOSE.get(orientation, ()):
        image = image.transpose(method)
    return image


def icc_profile(image: Image.Image) -> bytes | None:
    """The ICC profile embedded in ``image``, if any."""
    profile = image.info.get("icc_profile")
    return profile if isinstance(profile, bytes) and profile else None


def flatten(image: Image.Image) -> Image.Image:
    """``image`` (loaded) as 8-bit ``RGB`` or ``L``, transparency composited on white.

    CMYK goes through its embedded ICC profile when it has one (else Pillow's plain
    conversion); 16-bit greyscale is scaled to 8 bits (a plain conversion clips it to white);
    palette images are expanded. RGB pixels keep their profile: see ``into_srgb``.
    """
    mode = image.mode
    if mode == "CMYK":
        profile = icc_profile(image)
        converted = _through_icc(image, profile) if profile else None
        return converted or image.convert("RGB")
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _to_8bit(image)
    if mode == "1":
        return image.convert("L")
    if mode == "P":
        palette_mode = image.palette.mode if image.palette is not None else "RGB"
        has_alpha = "transparency" in image.info or palette_mode == "RGBA"
        image = image.convert("RGBA" if has_alpha else "RGB")
    elif mode == "PA":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "RGBa", "La"):
        image = _on_white(image)
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    return image


def into_srgb(image: Image.Image, profile: bytes | None) -> Image.Image:
    """RGB pixels described by ``profile`` (Display P3 from phones, Adobe RGB...) as sRGB.

    Callers apply it after reducing the photo: a colour transform costs about 30 ms per
    megapixel, so it runs on the largest version's pixels rather than the decoded photo's.
    """
    if profile is None or image.mode != "RGB" or _is_srgb(profile):
        return image
    return _through_icc(image, profile) or image


def _on_white(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBa", "La"):
        image = image.convert(image.mode[0:-1] + "A")
    colour = image.mode[:-1]
    background = Image.new(colour, image.size, 255 if colour == "L" else (255, 255, 255))
    background.paste(image.convert(colour), mask=image.getchannel("A"))
    return background


def _to_8bit(image: Image.Image) -> Image.Image:
    """16-bit greyscale (``I;16``, or ``I``/``F`` holding 16-bit values) scaled to ``L``."""
    pixels = np.asarray(image)
    if image.mode == "F":
        top = 1.0 if pixels.max(initial=0.0) <= 1.0 else 65535.0
        scaled = np.clip(pixels, 0.0, top) / top * 255.0
        return Image.fromarray(np.round(scaled).astype(np.uint8))
    wide = np.clip(pixels, 0, 65535).astype(np.uint16)
    return Image.fromarray((wide >> 8).astype(np.uint8))


def _through_icc(image: Image.Image, profile: bytes) -> Image.Image | None:
    """``image`` converted from ``profile`` to sRGB ``RGB``; ``None`` if the profile is unusable."""
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
        result = ImageCms.profileToProfile(
            image,
            source,
            ImageCms.createProfile("sRGB"),
            renderingIntent=ImageCms.Intent.PERCEPTUAL,
            outputMode="RGB",
        )
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None
    return result


def _is_srgb(profile: bytes) -> bool:
    try:
        description = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(profile)))
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return True
    return "srgb" in description.lower()
