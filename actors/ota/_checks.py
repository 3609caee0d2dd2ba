"""What an operator's request to the OTA actor must carry: versions, names, limits, and
whom its changes are attributed to.

Each check answers the cleaned value or raises ``Invalid`` with a message an operator can act
on.
"""

from __future__ import annotations

import re
import unicodedata

from actors.errors import Invalid
from actors.events import Audit

MAX_NAME_LENGTH = 100
MAX_NOTES_LENGTH = 4000
MAX_VERSION_LENGTH = 48
MAX_FILE_NAME_LENGTH = 200
MAX_BATCH_SIZE = 10_000

SEMVER = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(-(0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(\.(0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*)?"
    r"(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?"
)
"""A semantic version (semver.org 2.0.0): ``1.2.3``, ``1.2.3-rc.1``, ``1.2.3+build.5``."""

_UNPRINTABLE = {"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"}


def check_version(value: str | None) -> str:
    """``value`` stripped if it is a semantic version, else ``Invalid`` saying so."""
    version = (value or "").strip()
    if not version:
        raise Invalid("version is required (a semantic version such as 1.2.3)")
    if len(version) > MAX_VERSION_LENGTH or SEMVER.fullmatch(version) is None:
        raise Invalid(
            f"version must be a semantic version such as 1.2.3, 1.2.3-rc.1 or 1.2.3+build.5 "
            f"(at most {MAX_VERSION_LENGTH} characters), got {version[:80]!r}"
        )
    return version


def check_text(value: str | None, what: str, longest: int) -> str:
    """``value`` stripped: required, at most ``longest`` characters, nothing unprintable."""
    text = (value or "").strip()
    if not text:
        raise Invalid(f"{what} is required")
    if len(text) > longest:
        raise Invalid(f"{what} must be at most {longest} characters long")
    for char in text:
        if unicodedata.category(char) in _UNPRINTABLE:
            raise Invalid(f"{what} must not contain control characters (U+{ord(char):04X})")
    return text


def audit_of(user_id: str | None) -> Audit:
    """The operator who asked, or the OTA actor itself when nobody did."""
    return Audit.system("ota") if user_id is None else Audit.user(user_id)
