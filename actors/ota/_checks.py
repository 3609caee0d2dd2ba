"""What an operator's request to the OTA actor must carry: versions and limits (names and
other text: ``actors.text``), and whom its changes are attributed to.

Each check answers the cleaned value or raises ``Invalid`` with a message an operator can act
on.
"""

from __future__ import annotations

import re

from actors.errors import Invalid

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
