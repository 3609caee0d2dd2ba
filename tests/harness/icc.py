"""Minimal ICC v2 profiles, built in memory (no profile files ship with the system).

``cmyk_profile`` maps CMYK to Lab through a 2-point-per-channel lookup table with a tinted
paper, so that a conversion through it differs visibly from Pillow's plain
``convert("RGB")``; ``swapped_rgb_profile`` is an RGB matrix/TRC profile with red and green
swapped.
"""

from __future__ import annotations

import itertools
import struct

PAPER_LAB = (85.0, 40.0, 5.0)
"""The tinted paper white: light and clearly red-shifted."""


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _lab_of(c: int, m: int, y: int, k: int) -> tuple[float, float, float]:
    """Lab of a corner of the CMYK cube: inks darken and shift the tinted paper."""
    if (c, m, y, k) == (0, 0, 0, 0):
        return PAPER_LAB
    lightness = PAPER_LAB[0] * (1 - 0.45 * (c + m + y) / 3) * (1 - 0.9 * k)
    a = PAPER_LAB[1] + 60 * m - 40 * c - 10 * y
    b = PAPER_LAB[2] + 70 * y - 50 * c - 20 * m
    return lightness, max(-120.0, min(120.0, a)), max(-120.0, min(120.0, b))


def _encode_lab(lab: tuple[float, float, float]) -> bytes:
    lightness, a, b = lab
    return bytes([round(lightness / 100 * 255), max(0, min(255, round(a + 128))), round(b + 128)])


def _tag_desc(text: str) -> bytes:
    ascii_text = text.encode("ascii") + b"\x00"
    return (
        b"desc\x00\x00\x00\x00"
        + struct.pack(">I", len(ascii_text))
        + ascii_text
        + struct.pack(">II", 0, 0)  # no Unicode description
        + struct.pack(">HB", 0, 0)  # no ScriptCode description
        + b"\x00" * 67
    )


def _tag_xyz(x: float, y: float, z: float) -> bytes:
    return b"XYZ \x00\x00\x00\x00" + _s15(x) + _s15(y) + _s15(z)


def _tag_text(text: str) -> bytes:
    return b"text\x00\x00\x00\x00" + text.encode("ascii") + b"\x00"


def _tag_a2b0() -> bytes:
    identity = bytes(range(256))
    matrix = b"".join(_s15(1.0 if row == col else 0.0) for row in range(3) for col in range(3))
    clut = b"".join(_encode_lab(_lab_of(*corner)) for corner in itertools.product((0, 1), repeat=4))
    return (
        b"mft1\x00\x00\x00\x00"
        + bytes([4, 3, 2, 0])  # 4 inputs, 3 outputs, 2 grid points, padding
        + matrix
        + identity * 4
        + clut
        + identity * 3
    )


def cmyk_profile() -> bytes:
    """The bytes of the tinted CMYK profile described in the module docstring."""
    return _profile(
        b"prtrCMYKLab ",
        [
            (b"desc", _tag_desc("framehub test CMYK (tinted paper)")),
            (b"wtpt", _tag_xyz(0.9642, 1.0, 0.8249)),
            (b"cprt", _tag_text("public domain")),
            (b"A2B0", _tag_a2b0()),
        ],
    )


def swapped_rgb_profile() -> bytes:
    """An RGB display profile whose red and green primaries are sRGB's green and red.

    Pure red pixels tagged with it are pure green once converted to sRGB: a test can see at a
    glance whether a conversion took place. (Primaries: sRGB's, adapted to D50; gamma 2.2.)
    """
    gamma = b"curv\x00\x00\x00\x00" + struct.pack(">IH", 1, round(2.2 * 256)) + b"\x00\x00"
    return _profile(
        b"mntrRGB XYZ ",
        [
            (b"desc", _tag_desc("framehub test RGB (red and green swapped)")),
            (b"wtpt", _tag_xyz(0.9642, 1.0, 0.8249)),
            (b"cprt", _tag_text("public domain")),
            (b"rXYZ", _tag_xyz(0.3851, 0.7169, 0.0971)),
            (b"gXYZ", _tag_xyz(0.4361, 0.2225, 0.0139)),
            (b"bXYZ", _tag_xyz(0.1431, 0.0606, 0.7141)),
            (b"rTRC", gamma),
            (b"gTRC", gamma),
            (b"bTRC", gamma),
        ],
    )


def _profile(class_and_spaces: bytes, tags: list[tuple[bytes, bytes]]) -> bytes:
    """An ICC v2 profile: ``class_and_spaces`` is device class, colour space and PCS."""
    table_size = 4 + 12 * len(tags)
    offset = 128 + table_size
    table = struct.pack(">I", len(tags))
    body = b""
    for signature, data in tags:
        padded = data + b"\x00" * (-len(data) % 4)
        table += signature + struct.pack(">II", offset + len(body), len(data))
        body += padded
    size = 128 + len(table) + len(body)
    header = (
        struct.pack(">I", size)
        + b"\x00\x00\x00\x00"  # preferred CMM
        + bytes([2, 0x10, 0, 0])  # version 2.1
        + class_and_spaces
        + struct.pack(">6H", 2024, 1, 1, 0, 0, 0)
        + b"acsp"
        + b"\x00" * 4  # platform
        + b"\x00" * 4  # flags
        + b"\x00" * 8  # manufacturer, model
        + b"\x00" * 8  # attributes
        + struct.pack(">I", 0)  # perceptual
        + _s15(0.9642)
        + _s15(1.0)
        + _s15(0.8249)
        + b"\x00" * 4  # creator
        + b"\x00" * 44  # profile ID and reserved
    )
    assert len(header) == 128
    return header + table + body
