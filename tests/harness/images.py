"""Real images for the imaging tests, written with Pillow (or byte by byte where Pillow cannot
write them cheaply: a 200 MP JPEG and a 900 MP PNG header)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

RED = (220, 30, 30)
GREEN = (30, 200, 40)
BLUE = (40, 60, 200)

# How a camera stores an upright picture for each EXIF orientation: the inverse of the turn
# that orientation asks the viewer to make (EXIF 2.3, tag 0x0112).
_STORE: dict[int, tuple[Image.Transpose, ...]] = {
    1: (),
    2: (Image.Transpose.FLIP_LEFT_RIGHT,),
    3: (Image.Transpose.ROTATE_180,),
    4: (Image.Transpose.FLIP_TOP_BOTTOM,),
    5: (Image.Transpose.TRANSPOSE,),
    6: (Image.Transpose.ROTATE_90,),
    7: (Image.Transpose.TRANSVERSE,),
    8: (Image.Transpose.ROTATE_270,),
}


def marked(width: int = 240, height: int = 160) -> Image.Image:
    """An upright picture: blue, a red block top-left and a green block top-right."""
    image = Image.new("RGB", (width, height), BLUE)
    draw = ImageDraw.Draw(image)
    block_w, block_h = width * 3 // 10, height * 3 // 10
    draw.rectangle((0, 0, block_w - 1, block_h - 1), fill=RED)
    draw.rectangle((width - block_w, 0, width - 1, block_h - 1), fill=GREEN)
    return image


def stored_as(upright: Image.Image, orientation: int) -> Image.Image:
    """The pixels a camera writes for ``upright`` when it tags them with ``orientation``."""
    image = upright
    for method in _STORE.get(orientation, ()):
        image = image.transpose(method)
    return image


def exif_with(
    orientation: int | None = None,
    *,
    make: str | None = None,
    model: str | None = None,
    taken: str | None = None,
    offset: str | None = None,
    gps: tuple[str, tuple[float, ...], str, tuple[float, ...]] | None = None,
) -> Image.Exif:
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    if make is not None:
        exif[0x010F] = make
    if model is not None:
        exif[0x0110] = model
    if taken is not None:
        exif.get_ifd(0x8769)[0x9003] = taken
    if offset is not None:
        exif.get_ifd(0x8769)[0x9011] = offset
    if gps is not None:
        lat_ref, lat, lon_ref, lon = gps
        exif.get_ifd(0x8825).update({1: lat_ref, 2: lat, 3: lon_ref, 4: lon})
    return exif


def scene(width: int, height: int, seed: int = 1) -> Image.Image:
    """A photo-like picture: smooth gradients plus a little noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    pixels = np.stack(
        [
            100 + 80 * np.sin(x / width * 3 + seed),
            120 + 60 * np.cos(y / height * 4 + seed),
            110 + 50 * np.sin((x + y) / (width + height) * 5),
        ],
        axis=-1,
    )
    pixels += rng.normal(0.0, 6.0, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def draw_face(image: Image.Image, box: tuple[int, int, int]) -> None:
    """Draw a simple frontal face (head, brows, eyes, nose, mouth) of side ``size`` at (x, y).

    OpenCV's default frontal-face Haar cascade detects this drawing reliably at 100 to 300
    pixels (checked with blur 0 to 4 px); nothing else in these test images resembles a face.
    """
    x, y, size = box
    face = Image.new("L", (size, size), 60)
    draw = ImageDraw.Draw(face)

    def s(*values: float) -> list[float]:
        return [v * size / 200 for v in values]

    draw.ellipse(s(40, 20, 160, 180), fill=190)
    draw.ellipse(s(62, 70, 92, 88), fill=40)
    draw.ellipse(s(108, 70, 138, 88), fill=40)
    draw.rectangle(s(58, 58, 96, 64), fill=70)
    draw.rectangle(s(104, 58, 142, 64), fill=70)
    nose = s(100, 85, 90, 122, 110, 122)
    draw.polygon(list(zip(nose[::2], nose[1::2], strict=True)), fill=150)
    draw.ellipse(s(75, 135, 125, 150), fill=80)
    image.paste(face.filter(ImageFilter.GaussianBlur(size / 100)).convert(image.mode), (x, y))


def grey_jpeg(path: Path, width: int, height: int) -> None:
    """A mid-grey baseline JPEG of any size (multiples of 16), written without encoding pixels.

    At mid-grey every 16x16 MCU (4:2:0) of Pillow's baseline JPEG codes to the same 4 bytes
    (each block: DC difference 0, then end-of-block), so a 200 MP JPEG is Pillow's 16x16 one
    with the frame size patched and its single MCU repeated: about 3 MB, written in
    milliseconds. Decoding it is real work for the decoder like any other JPEG.
    """
    assert width % 16 == 0 and height % 16 == 0
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (128, 128, 128)).save(buffer, "JPEG", quality=90)
    data = buffer.getvalue()
    sos = data.index(b"\xff\xda")
    scan = sos + 2 + struct.unpack(">H", data[sos + 2 : sos + 4])[0]
    mcu = data[scan:-2]
    assert mcu == bytes.fromhex("28a28a00"), mcu.hex()
    header = bytearray(data[:scan])
    sof = header.index(b"\xff\xc0")
    header[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    path.write_bytes(bytes(header) + mcu * ((width // 16) * (height // 16)) + b"\xff\xd9")


def png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG that declares ``width`` x ``height`` (1-bit greyscale) but holds one row of data:
    any attempt to decode it would fail as truncated, so a refusal by size proves that
    nothing was decoded."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(row))
        + chunk(b"IEND", b"")
    )


def with_app1(jpeg: bytes, payload: bytes) -> bytes:
    """``jpeg`` with an extra APP1 segment holding ``payload`` right after SOI."""
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return jpeg[:2] + segment + jpeg[2:]


def jpeg_bytes(image: Image.Image, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **params)
    return buffer.getvalue()


def shapes(seed: int, width: int = 640, height: int = 480) -> Image.Image:
    """A picture with structure at several scales: random filled ellipses and rectangles."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (width, height), (120, 120, 120))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y = int(rng.integers(0, width * 7 // 8)), int(rng.integers(0, height * 5 // 6))
        w, h = (int(v) for v in rng.integers(width // 16, width // 3, 2))
        colour = tuple(int(v) for v in rng.integers(0, 255, 3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x, y, x + w, y + h), fill=colour)
    return image
