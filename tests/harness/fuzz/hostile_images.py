"""A corpus of malformed and hostile uploads, built in memory (Pillow and byte surgery).

Each ``Specimen`` carries the answer the upload API owes it (``POST
/api/v1/storage/photos/upload``, see ``actors/api/_photos.py``): 201 for anything that is a
real image however odd (its sniffed type, its upright size, and whether upright it shows
``marked()``), 413 for a declared size past the pixel policy or a file past the upload limit,
415 for content that is not an accepted format whatever its name says, 422 for an accepted
format that cannot be decoded (truncated, corrupt, an empty size).

``corpus(seed)`` is the hand-made corpus; ``mutants(seed, count)`` adds seeded random
truncations and byte flips of valid images, whose answer cannot be decided up front (they must
come out as a 201 with versions or a 4xx, never anything else).
"""

from __future__ import annotations

import io
import random
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image

from tests.harness.icc import cmyk_profile
from tests.harness.images import exif_with, jpeg_bytes, marked, scene, stored_as, with_app1
from tests.harness.photos import encode, heic, jpeg, png, webp

STORED, TOO_LARGE, UNSUPPORTED, CORRUPT = 201, 413, 415, 422
MARKED = (240, 160)
"""The size of ``marked()`` upright."""


@dataclass(frozen=True)
class Specimen:
    name: str
    data: bytes
    expect: int
    """201, 413, 415 or 422; 0 for a mutant (201 or any 4xx)."""
    file_name: str = "photo.jpg"
    declared: str = "image/jpeg"
    """The part's declared content type: never what decides."""
    sniffed: str | None = None
    """For a 201: the content type the hub must find."""
    upright: tuple[int, int] | None = None
    """For a 201: the upright size of the photo."""
    marked: bool = False
    """For a 201: upright, it shows ``marked()`` (red top-left, green top-right)."""


def stored(
    name: str,
    data: bytes,
    sniffed: str,
    upright: tuple[int, int],
    *,
    marked: bool = False,
    file_name: str = "photo.jpg",
    declared: str = "image/jpeg",
) -> Specimen:
    return Specimen(name, data, STORED, file_name, declared, sniffed, upright, marked)


# -- bytes -------------------------------------------------------------------------------------


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def raw_png(width: int, height: int, depth: int, colour: int, rows: bytes, *extra: bytes) -> bytes:
    """A PNG written byte by byte: ``rows`` are the filtered scanlines, ``extra`` chunks go
    between IHDR and IDAT."""
    return _png(width, height, depth, colour, zlib.compress(rows, 9), extra)


def _png(
    width: int, height: int, depth: int, colour: int, idat: bytes, extra: tuple[bytes, ...]
) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + b"".join(extra)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def flat_png(width: int, height: int, *extra: bytes, grey: bool = False) -> bytes:
    """An 8-bit PNG of one mid-grey (RGB, or greyscale), compressed row by row: cheap to make
    at any size, and tiny (a 240 MP one is about 250 KB)."""
    row = b"\x00" + b"\x80" * (width if grey else 3 * width)
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return _png(width, height, 8, 0 if grey else 2, idat, extra)


def exif_app1(tiff: bytes) -> bytes:
    return b"Exif\x00\x00" + tiff


def tiff_ifd(entries: list[tuple[int, int, int, bytes]], next_ifd: int) -> bytes:
    """A big-endian IFD: (tag, type, count, 4-byte value or offset) entries, then the offset
    of the next IFD."""
    body = struct.pack(">H", len(entries))
    for tag, kind, count, value in entries:
        body += struct.pack(">HHI", tag, kind, count) + value.ljust(4, b"\x00")
    return body + struct.pack(">I", next_ifd)


def exif_jpeg(tiff_after_header: bytes, first_ifd: int = 8, turned: int = 1) -> bytes:
    """``marked()`` as a JPEG whose EXIF is ``MM*`` + ``first_ifd`` + the given bytes; its
    pixels stored as for orientation ``turned``."""
    tiff = b"MM\x00*" + struct.pack(">I", first_ifd) + tiff_after_header
    picture = jpeg_bytes(stored_as(marked(), turned), quality=92)
    return with_app1(picture, exif_app1(tiff))


def segments(marker: bytes, prefix: bytes, payload: bytes, size: int = 65_000) -> bytes:
    """``payload`` split over as many JPEG segments ``marker`` as it takes, each starting
    with ``prefix``."""
    out = []
    for start in range(0, len(payload), size):
        body = prefix + payload[start : start + size]
        out.append(marker + struct.pack(">H", len(body) + 2) + body)
    return b"".join(out)


def icc_segments(profile: bytes) -> bytes:
    """``profile`` as JPEG APP2 ``ICC_PROFILE`` segments (sequence numbers and count)."""
    parts = [profile[i : i + 65_000] for i in range(0, len(profile), 65_000)]
    out = []
    for number, part in enumerate(parts, 1):
        body = b"ICC_PROFILE\x00" + bytes([number, len(parts)]) + part
        out.append(b"\xff\xe2" + struct.pack(">H", len(body) + 2) + body)
    return b"".join(out)


def after_soi(jpeg_data: bytes, extra: bytes) -> bytes:
    return jpeg_data[:2] + extra + jpeg_data[2:]


def gif_declaring(width: int, height: int) -> bytes:
    """A GIF whose screen and only image declare ``width`` x ``height``, with one code of
    pixel data (a bomb if decoded)."""
    header = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00" * 2
    image = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0)
    return header + image + b"\x02\x02\x44\x01\x00" + b"\x3b"


def jpeg_declaring(width: int, height: int) -> bytes:
    data = bytearray(jpeg(64, 48))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def webp_declaring(width: int, height: int) -> bytes:
    """A lossless WebP whose VP8L header declares ``width`` x ``height`` (14 bits each)."""
    data = bytearray(encode(scene(64, 48), "WEBP", lossless=True))
    start = data.index(b"VP8L") + 8 + 1  # chunk header, then the signature byte 0x2f
    bits = int.from_bytes(data[start : start + 4], "little")
    bits = (bits & ~0xFFFFFFF) | (width - 1) | (height - 1) << 14
    data[start : start + 4] = bits.to_bytes(4, "little")
    return bytes(data)


def animated_gif(frames: int, size: int = 16, seed: int = 1) -> bytes:
    """A GIF of ``frames`` frames: two drawn by Pillow, the second one's bytes repeated (each
    a whole frame of its own: Pillow merges identical frames it writes itself)."""
    rng = np.random.default_rng(seed)
    pictures = [
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).convert("P")
        for _ in range(2)
    ]
    data = encode(pictures[0], "GIF", save_all=True, append_images=pictures[1:], duration=20)
    second = data.rindex(b"\x21\xf9\x04")
    return data[:second] + data[second:-1] * (frames - 1) + b"\x3b"


def marked_jpeg(orientation: int | None = None) -> bytes:
    """``marked()`` stored as a camera stores it for ``orientation`` (as is when that is not
    a valid one) and tagged with it."""
    exif = exif_with(orientation) if orientation is not None else Image.Exif()
    picture = marked()
    if orientation is not None and 1 <= orientation <= 8:
        picture = stored_as(picture, orientation)
    return jpeg_bytes(picture, quality=92, exif=exif)


def random_bytes(rng: random.Random, size: int) -> bytes:
    return rng.randbytes(size)


def cut(data: bytes, at: int) -> bytes:
    return data[:at]


# -- the corpus --------------------------------------------------------------------------------


def corpus(seed: int, upload_limit: int, *, long: bool = False) -> list[Specimen]:
    """Every hand-made case; ``seed`` picks the pictures' noise, ``upload_limit`` is the hub's
    ``http.max_upload_bytes``; ``long`` makes the biggest images bigger (a 240 MP PNG, a GIF
    of 20,000 frames)."""
    return list(_corpus(random.Random(seed), seed, upload_limit, long))


def _corpus(rng: random.Random, seed: int, upload_limit: int, long: bool) -> Iterator[Specimen]:
    photo = jpeg(640, 480, seed)
    progressive = jpeg_bytes(scene(640, 480, seed + 1), quality=85, progressive=True)
    picture = png(320, 240, seed + 2)
    lossy = webp(320, 240, seed + 3)
    moving = animated_gif(3, 64)
    apple = heic(320, 240, seed + 4)
    scan = photo.index(b"\xff\xda")

    # Truncated or corrupt, in an accepted format: 422.
    yield Specimen("JPEG cut in half", cut(photo, len(photo) // 2), CORRUPT)
    yield Specimen("JPEG cut right after its scan header", cut(photo, scan + 20), CORRUPT)
    yield Specimen("progressive JPEG cut after its first scans", cut(progressive, 4000), CORRUPT)
    yield Specimen("JPEG: just the SOI marker", photo[:2] + b"\xff", CORRUPT)
    yield Specimen("PNG cut inside its pixels", cut(picture, len(picture) * 2 // 3), CORRUPT)
    yield Specimen("PNG: signature only", picture[:8], CORRUPT)
    yield Specimen("WebP cut in half", cut(lossy, len(lossy) // 2), CORRUPT)
    yield Specimen("GIF cut inside its first frame", cut(moving, 400), CORRUPT)
    yield Specimen("HEIC cut in half", cut(apple, len(apple) // 2), CORRUPT)
    yield Specimen("HEIF brand and nothing else", apple[:32], CORRUPT)
    yield Specimen("PNG declaring 0x0", raw_png(0, 0, 8, 2, b""), CORRUPT)
    yield Specimen("GIF declaring 640x0", gif_declaring(640, 0), CORRUPT)
    yield Specimen("GIF header on HTML", b"GIF89a<html><script>x()</script></html>", CORRUPT)
    yield Specimen("PNG signature on HTML", b"\x89PNG\r\n\x1a\n<html>x</html>", CORRUPT)
    yield Specimen("empty file", b"", CORRUPT)

    # Decompression bombs and huge sizes, refused from the header: 413.
    one_row = b"\x00" + bytes(50_000 // 8)
    yield Specimen(
        "PNG declaring 50000x50000 (one row of data)",
        raw_png(50_000, 50_000, 1, 0, one_row),
        TOO_LARGE,
    )
    yield Specimen("GIF declaring 50000x50000", gif_declaring(50_000, 50_000), TOO_LARGE)
    yield Specimen("JPEG declaring 65000x65000", jpeg_declaring(65_000, 65_000), TOO_LARGE)
    yield Specimen("WebP declaring 16384x16384", webp_declaring(16_384, 16_384), TOO_LARGE)
    yield Specimen(
        "a file over http.max_upload_bytes",
        after_soi(photo, segments(b"\xff\xfe", b"", b"c" * (upload_limit + 1))),
        TOO_LARGE,
    )

    # Not an accepted format, whatever the name and declared type say: 415.
    for name, data in (
        ("HTML named .jpg", b"<!DOCTYPE html><html><body><script>alert(1)</script></body>"),
        ("SVG named .jpg", b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>'),
        ("PDF named .jpg", b"%PDF-1.7\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"),
        ("ZIP named .jpg", _zip()),
        ("gzip named .jpg", b"\x1f\x8b\x08\x00" + bytes(20)),
        ("ELF executable named .jpg", b"\x7fELF\x02\x01\x01" + bytes(57)),
        ("TIFF", encode(scene(64, 48, seed), "TIFF")),
        ("LAB TIFF", encode(scene(64, 48, seed).convert("LAB"), "TIFF")),
        ("BMP", encode(scene(64, 48, seed), "BMP")),
        ("AVIF brand", b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + bytes(40)),
        ("JavaScript", b"/*\xff\xd8*/ fetch('/api/v1/photos').then(r => r.text())"),
    ):
        yield Specimen(name, data, UNSUPPORTED)

    # Type lies around real images, and polyglots that are real images: 201.
    yield stored(
        "PNG named .heic, declared image/heic",
        picture,
        "image/png",
        (320, 240),
        file_name="photo.heic",
        declared="image/heic",
    )
    yield stored(
        "JPEG named .png, declared image/png",
        photo,
        "image/jpeg",
        (640, 480),
        file_name="photo.png",
        declared="image/png",
    )
    yield stored("WebP named .gif", lossy, "image/webp", (320, 240), file_name="photo.gif")
    yield stored("JPEG with a ZIP appended (polyglot)", photo + _zip(), "image/jpeg", (640, 480))
    html = segments(b"\xff\xfe", b"", b"<html><script>alert(document.cookie)</script></html>")
    yield stored("JPEG with HTML in a comment", after_soi(photo, html), "image/jpeg", (640, 480))

    # Odd sizes: 201 (versions never empty, never enormous: filling a 1024x600 panel, the
    # whole of a 1x20000 photo enlarged would be 63 GB, of a 40000x1 one 43 GB).
    yield stored(
        "1x1 JPEG", jpeg_bytes(Image.new("RGB", (1, 1), (9, 99, 199))), "image/jpeg", (1, 1)
    )
    yield stored("1x1 PNG", encode(Image.new("P", (1, 1)), "PNG"), "image/png", (1, 1))
    yield stored("1x20000 PNG", flat_png(1, 20_000), "image/png", (1, 20_000))
    yield stored("40000x1 PNG", flat_png(40_000, 1), "image/png", (40_000, 1))
    width, height = (16_000, 15_000) if long else (4_000, 3_000)
    big = flat_png(width, height, grey=True)
    name = f"{width}x{height} PNG of one grey ({len(big) // 1024} KB)"
    yield stored(name, big, "image/png", (width, height))
    frames, side = (20_000, 4) if long else (2_000, 16)
    many = animated_gif(frames, side)
    yield stored(f"GIF of {frames} frames", many, "image/gif", (side, side))

    # EXIF that lies or loops: the photo is taken, upright as recorded where that is valid.
    for value in (0, 9, 65535):
        yield stored(
            f"EXIF orientation {value}", marked_jpeg(value), "image/jpeg", MARKED, marked=True
        )
    yield stored("EXIF orientation 6", marked_jpeg(6), "image/jpeg", MARKED, marked=True)
    orientation_text = tiff_ifd([(0x0112, 2, 2, b"6\x00")], 0)
    yield stored(
        "EXIF orientation as text", exif_jpeg(orientation_text), "image/jpeg", MARKED, marked=True
    )
    yield stored(
        "EXIF pointing past the file",
        exif_jpeg(b"", first_ifd=0x7FFFFF00),
        "image/jpeg",
        MARKED,
        marked=True,
    )
    looping = tiff_ifd([(0x0112, 3, 1, struct.pack(">H", 6))], 8)  # IFD0's next IFD is IFD0
    yield stored(
        "EXIF IFD chain looping on itself",
        exif_jpeg(looping, turned=6),
        "image/jpeg",
        MARKED,
        marked=True,
    )
    # IFD0 points at an EXIF sub-IFD at 26, whose GPS pointer leads back to IFD0.
    sub_loop = tiff_ifd([(0x8769, 4, 1, struct.pack(">I", 26))], 0) + tiff_ifd(
        [(0x8825, 4, 1, struct.pack(">I", 8))], 0
    )
    yield stored(
        "EXIF sub-IFDs pointing at each other",
        exif_jpeg(sub_loop),
        "image/jpeg",
        MARKED,
        marked=True,
    )
    many = tiff_ifd([(0x010E, 2, 0xFFFFFFF, struct.pack(">I", 8))], 0)  # 256 M characters
    yield stored("EXIF entry claiming 256 MB", exif_jpeg(many), "image/jpeg", MARKED, marked=True)
    comment = random_bytes(rng, 60_000)
    big_exif = tiff_ifd([(0x9286, 7, len(comment), struct.pack(">I", 26))], 0) + comment
    yield stored("EXIF of 60 KB", exif_jpeg(big_exif), "image/jpeg", MARKED, marked=True)
    xmp = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/">' + b"<rdf:li>x</rdf:li>" * 110_000 + b"</x:xmpmeta>"
    )
    xmp_segments = segments(b"\xff\xe1", b"http://ns.adobe.com/xap/1.0/\x00", xmp)
    yield stored(
        "XMP of 2 MB", after_soi(marked_jpeg(), xmp_segments), "image/jpeg", MARKED, marked=True
    )
    junk_icc = random_bytes(rng, 3 << 20)
    yield stored(
        "ICC profile of 3 MB garbage",
        after_soi(marked_jpeg(), icc_segments(junk_icc)),
        "image/jpeg",
        MARKED,
        marked=True,
    )
    for taken in ("9999:99:99 99:99:99", "0000:00:00 00:00:00", "\x00" * 19, "2024:02:30 25:61:61"):
        exif = exif_with(1, taken=taken, offset="+99:99")
        data = jpeg_bytes(marked(), quality=92, exif=exif)
        yield stored(f"EXIF date {taken!r}", data, "image/jpeg", MARKED, marked=True)
    # IFD0 (at 8) points at a GPS IFD (at 26) whose rationals (at 80 and 104) divide by 0.
    gps = tiff_ifd([(0x8825, 4, 1, struct.pack(">I", 26))], 0) + tiff_ifd(
        [
            (1, 2, 2, b"N\x00"),
            (2, 5, 3, struct.pack(">I", 80)),
            (3, 2, 2, b"E\x00"),
            (4, 5, 3, struct.pack(">I", 104)),
        ],
        0,
    )
    gps += struct.pack(">6I", 52, 0, 31, 0, 12, 0) + struct.pack(">6I", 13, 0, 24, 0, 36, 0)
    yield stored(
        "EXIF GPS with zero denominators", exif_jpeg(gps), "image/jpeg", MARKED, marked=True
    )
    png_exif = marked().transpose(Image.Transpose.ROTATE_90)
    yield stored(
        "PNG with EXIF orientation 6 (eXIf chunk)",
        encode(png_exif, "PNG", exif=exif_with(6)),
        "image/png",
        MARKED,
        marked=True,
    )

    # Pixel formats: 201.
    cmyk = scene(320, 240, seed).convert("CMYK")
    yield stored("CMYK JPEG", jpeg_bytes(cmyk), "image/jpeg", (320, 240))
    yield stored(
        "CMYK JPEG with its ICC profile",
        jpeg_bytes(cmyk, icc_profile=cmyk_profile()),
        "image/jpeg",
        (320, 240),
    )
    yield stored(
        "greyscale JPEG", jpeg_bytes(scene(320, 240, seed).convert("L")), "image/jpeg", (320, 240)
    )
    wide = np.frombuffer(np.random.default_rng(seed).bytes(64 * 48 * 6), dtype=">u2")
    rows48 = b"".join(b"\x00" + wide[y * 64 * 3 : (y + 1) * 64 * 3].tobytes() for y in range(48))
    yield stored("16-bit RGB PNG", raw_png(64, 48, 16, 2, rows48), "image/png", (64, 48))
    rows_la = b"".join(b"\x00" + wide[y * 64 * 2 : (y + 1) * 64 * 2].tobytes() for y in range(48))
    yield stored(
        "16-bit grey and alpha PNG", raw_png(64, 48, 16, 4, rows_la), "image/png", (64, 48)
    )
    yield stored(
        "1-bit PNG", encode(scene(64, 48, seed).convert("1"), "PNG"), "image/png", (64, 48)
    )
    palette = png_chunk(b"PLTE", b"\xff\x00\x00\x00\xff\x00")
    stray = b"".join(b"\x00" + random_bytes(rng, 64) for _ in range(48))
    yield stored(
        "palette PNG with indices past its palette",
        raw_png(64, 48, 8, 3, stray, palette),
        "image/png",
        (64, 48),
    )
    trns = png_chunk(b"tRNS", b"\x00" * 40)
    yield stored(
        "palette PNG with a tRNS longer than its palette",
        raw_png(64, 48, 8, 3, stray, palette, trns),
        "image/png",
        (64, 48),
    )
    yield stored(
        "interlaced PNG", encode(scene(64, 48, seed), "PNG", interlace=1), "image/png", (64, 48)
    )
    yield stored(
        "RGBA lossless WebP",
        encode(scene(64, 48, seed).convert("RGBA"), "WEBP", lossless=True),
        "image/webp",
        (64, 48),
    )
    shots = [scene(64, 48, seed + i) for i in range(30)]
    yield stored(
        "animated WebP",
        encode(shots[0], "WEBP", save_all=True, append_images=shots[1:]),
        "image/webp",
        (64, 48),
    )

    # Metadata bombs in PNG chunks: past Pillow's limit on a decompressed chunk, corrupt: 422.
    for kind, head in ((b"zTXt", b"Comment\x00\x00"), (b"iCCP", b"icc\x00\x00")):
        bomb = png_chunk(kind, head + zlib.compress(bytes(16 << 20), 1))
        yield Specimen(
            f"PNG with a 16 MB {kind.decode()} chunk ({len(bomb) // 1024} KB on disk)",
            flat_png(64, 48, bomb),
            CORRUPT,
            declared="image/png",
        )


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.html", "<script>alert(1)</script>")
    return buffer.getvalue()


# -- mutants -----------------------------------------------------------------------------------


def mutants(seed: int, count: int) -> list[Specimen]:
    """``count`` seeded mutations of valid images: cut at a random byte, random bytes
    overwritten, a random run deleted or repeated."""
    rng = random.Random(seed)
    sources: list[Callable[[], bytes]] = [
        lambda: jpeg(320, 240, seed),
        lambda: png(160, 120, seed),
        lambda: webp(160, 120, seed),
        lambda: animated_gif(4, 48),
        lambda: marked_jpeg(6),
    ]
    originals = [make() for make in sources]
    found = []
    for number in range(count):
        data = bytearray(rng.choice(originals))
        how = rng.choice(("cut", "flip", "delete", "repeat"))
        at = rng.randrange(16, len(data) - 1)
        if how == "cut":
            data = data[:at]
        elif how == "flip":
            for _ in range(rng.randrange(1, 16)):
                data[rng.randrange(16, len(data))] = rng.randrange(256)
        elif how == "delete":
            del data[at : at + rng.randrange(1, 256)]
        else:
            data[at:at] = data[at : at + rng.randrange(1, 256)] * rng.randrange(2, 8)
        found.append(Specimen(f"mutant {number} ({how})", bytes(data), 0))
    return found
