"""Checking the text people give the hub: album, playlist and user names, frame names and
models, firmware notes, metric units, alert notes.

One function, so that every actor refuses the same things in the same words (``what`` names
the field, ``N`` is ``longest``):

* white space around the text is stripped, or, where a published schema says names must not
  have any (user names), refused: "<what> must not begin or end with white space";
* a required text that is empty (after stripping) is refused: "<what> is required (1 to N
  characters)";
* a longer one: "<what> must be 1 to N characters long", or "<what> must be at most N
  characters long" where it may be empty;
* a forbidden character: "<what> must not contain control characters (U+XXXX)". By default
  that is any character of the categories in ``UNPRINTABLE``; a caller whose rule is also a
  regular expression in a schema gives that character class instead, so both agree.

File names are not checked here but cleaned (``actors.uploader.clean_file_name``): an upload
is never refused for its name.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

from actors.errors import Invalid

UNPRINTABLE = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
"""Unicode categories that show as nothing or as something else than was typed: control and
format characters (bidi overrides, zero-width marks), line and paragraph separators, lone
surrogates, private-use and unassigned code points."""


def check_text(
    value: str | None,
    what: str,
    longest: int,
    *,
    empty: bool = False,
    surrounding_space: Literal["strip", "refuse"] = "strip",
    forbidden: frozenset[str] | re.Pattern[str] = UNPRINTABLE,
) -> str:
    """``value`` as it is kept (stripped unless ``surrounding_space`` is ``"refuse"``), or
    ``Invalid`` saying what is wrong with it. None counts as empty; ``empty`` allows that.
    ``forbidden`` is a set of Unicode categories or a character class."""
    text = value or ""
    if surrounding_space == "strip":
        text = text.strip()
    if not text and not empty:
        raise Invalid(f"{what} is required (1 to {longest} characters)")
    if len(text) > longest:
        bounds = f"at most {longest}" if empty else f"1 to {longest}"
        raise Invalid(f"{what} must be {bounds} characters long")
    if text != text.strip():
        raise Invalid(f"{what} must not begin or end with white space")
    found = _first_forbidden(text, forbidden)
    if found is not None:
        raise Invalid(f"{what} must not contain control characters (U+{ord(found):04X})")
    return text


def _first_forbidden(text: str, forbidden: frozenset[str] | re.Pattern[str]) -> str | None:
    if isinstance(forbidden, re.Pattern):
        match = forbidden.search(text)
        return None if match is None else match.group()
    for char in text:
        if unicodedata.category(char) in forbidden:
            return char
    return None
