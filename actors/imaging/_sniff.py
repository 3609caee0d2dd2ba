"""What an upload really is, read from its first bytes (never from its name or declared type)."""

from __future__ import annotations

import codecs

ACCEPTED = frozenset(
    {"image/jpeg", "image/png", "image/webp", "image/gif", "image/heic", "image/heif"}
)
SNIFF_BYTES = 64
"""How many leading bytes ``sniff`` needs at most."""

_HEIC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"})
_HEIF_BRANDS = frozenset({b"mif1", b"msf1", b"mif2"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})

# Formats we recognise only to name them in a refusal.
_OTHER_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
    (b"%PDF", "PDF"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"8BPS", "Photoshop PSD"),
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL ", "JPEG XL"),
    (b"PK\x03\x04", "ZIP archive"),
    (b"\x1f\x8b", "gzip archive"),
    (b"\x7fELF", "ELF executable"),
)


def sniff(head: bytes) -> str | None:
    """The content type of a file whose first bytes (up to ``SNIFF_BYTES``) are ``head``.

    Answers one of ``ACCEPTED``, or ``None`` for anything else (including image formats
    framehub does not take, such as TIFF or AVIF). Only the bytes decide.
    """
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    brands = _ftyp_brands(head)
    if brands:
        if brands & _HEIC_BRANDS:
            return "image/heic"
        if brands & _AVIF_BRANDS:
            return None
        if brands & _HEIF_BRANDS:
            return "image/heif"
    return None


def describe(head: bytes) -> str:
    """A short human name for what ``head`` looks like, for refusal messages."""
    for magic, name in _OTHER_MAGIC:
        if head.startswith(magic):
            return name
    brands = _ftyp_brands(head)
    if brands & _AVIF_BRANDS:
        return "AVIF"
    if brands:
        return "an ISO media file (" + b"/".join(sorted(brands)).decode("ascii", "replace") + ")"
    if head.startswith(b"RIFF"):
        return "a RIFF file (" + head[8:12].decode("ascii", "replace") + ")"
    stripped = head.lstrip()
    if stripped.startswith((b"<svg", b"<?xml")):
        return "SVG/XML text"
    if not head:
        return "an empty file"
    try:
        # Incremental: the 64 bytes may end inside a multi-byte character.
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return "unrecognised binary data"
    return "unrecognised binary data" if b"\x00" in head else "text"


def _ftyp_brands(head: bytes) -> frozenset[bytes]:
    """The major and compatible brands of an ISO BMFF ``ftyp`` box at the start of ``head``."""
    if len(head) < 12 or head[4:8] != b"ftyp":
        return frozenset()
    size = int.from_bytes(head[:4], "big")
    end = min(len(head), size) if size >= 16 else min(len(head), 16)
    brands = {head[8:12]}
    brands.update(head[i : i + 4] for i in range(16, end - 3, 4))
    return frozenset(brands)
