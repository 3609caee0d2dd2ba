"""What a client says about its upload, made safe to keep and to show."""

from __future__ import annotations

import unicodedata

from actors.errors import Invalid

MAX_FILE_NAME = 200
MAX_METADATA_KEYS = 20
MAX_METADATA_CHARS = 200

EXTENSIONS = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "image/heic": ".heic",
    "image/heif": ".heif",
}

# Control characters, bidi overrides and zero-width marks (which can disguise an extension),
# lone surrogates (not encodable as UTF-8), line and paragraph separators.
_DROPPED = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_UNPRINTABLE = frozenset({"Cc", "Cs"})


def clean_file_name(name: str, content_type: str) -> str:
    """The client's file name as framehub keeps it: a bare name, printable, at most 200 chars.

    Anything before the last ``/`` or ``\\`` goes (``../../etc/passwd.jpg`` is ``passwd.jpg``),
    as do leading dots; when nothing is left the name is ``photo`` with the extension of the
    sniffed ``content_type``. A long name keeps its extension.
    """
    name = unicodedata.normalize("NFC", name)
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch) not in _DROPPED)
    name = name.strip().lstrip(".").strip()
    if len(name) > MAX_FILE_NAME:
        stem, dot, extension = name.rpartition(".")
        if dot and stem and 0 < len(extension) <= 10:
            name = f"{stem[: MAX_FILE_NAME - len(extension) - 1].rstrip()}.{extension}"
        else:
            name = name[:MAX_FILE_NAME].rstrip()
    return name or f"photo{EXTENSIONS.get(content_type, '')}"


def check_metadata(metadata: dict[str, str]) -> None:
    """Raise ``Invalid`` unless ``metadata`` is small: 20 keys, 200 printable chars each."""
    if len(metadata) > MAX_METADATA_KEYS:
        raise Invalid(f"metadata has {len(metadata)} keys; at most {MAX_METADATA_KEYS} are allowed")
    for key, value in metadata.items():
        if not key:
            raise Invalid("metadata keys must not be empty")
        for text, what in ((key, "key"), (value, "value")):
            if len(text) > MAX_METADATA_CHARS:
                raise Invalid(
                    f"metadata {what} {text[:40]!r}... is {len(text)} characters long; "
                    f"at most {MAX_METADATA_CHARS} are allowed"
                )
            if any(unicodedata.category(ch) in _UNPRINTABLE for ch in text):
                raise Invalid(f"metadata {what} {text[:40]!r} contains control characters")
