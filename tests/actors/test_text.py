"""check_text: the one check of the text people give the hub (names, models, notes, units)."""

from __future__ import annotations

import re

import pytest

from actors.accounts import NAME_PATTERN, check_name
from actors.errors import Invalid
from actors.text import UNPRINTABLE, check_text


def test_text_is_kept_without_surrounding_white_space() -> None:
    assert check_text("  Summer 2026 \n", "album name", 100) == "Summer 2026"


def test_any_printable_text_is_kept_as_it_was_typed() -> None:
    name = "Zoë 🙂 Müller-Lüdenscheidt, 日本 \uff21\uff22\uff23"
    assert check_text(name, "name", 100) == name


@pytest.mark.parametrize("value", ["", "   ", "\t\n", None])
def test_a_required_text_that_is_empty_or_missing_is_refused(value: str | None) -> None:
    with pytest.raises(Invalid, match=re.escape("model is required (1 to 64 characters)")):
        check_text(value, "model", 64)


@pytest.mark.parametrize("value", ["", "  ", None])
def test_an_optional_text_may_be_empty_or_missing(value: str | None) -> None:
    assert check_text(value, "unit", 32, empty=True) == ""


def test_the_longest_text_is_kept_and_one_character_more_is_refused() -> None:
    assert check_text("x" * 64, "name", 64) == "x" * 64
    with pytest.raises(Invalid, match=r"^name must be 1 to 64 characters long$"):
        check_text("x" * 65, "name", 64)


def test_an_optional_text_too_long_is_refused_with_its_upper_bound_only() -> None:
    with pytest.raises(Invalid, match=r"^notes must be at most 10 characters long$"):
        check_text("x" * 11, "notes", 10, empty=True)


def test_length_is_counted_after_stripping() -> None:
    assert check_text("  " + "x" * 10 + "  ", "name", 10) == "x" * 10


@pytest.mark.parametrize(
    ("char", "code"),
    [
        ("\x00", "U+0000"),
        ("\x07", "U+0007"),
        ("\x9b", "U+009B"),  # C1 control
        ("\u200b", "U+200B"),  # zero-width space
        ("\u202e", "U+202E"),  # right-to-left override
        ("\u2028", "U+2028"),  # line separator
        ("\ue000", "U+E000"),  # private use
        ("\U000e0001", "U+E0001"),  # language tag
        ("\ud800", "U+D800"),  # lone surrogate
        ("\u0378", "U+0378"),  # unassigned
    ],
)
def test_unprintable_characters_are_refused_naming_the_first(char: str, code: str) -> None:
    with pytest.raises(
        Invalid, match=re.escape(f"playlist name must not contain control characters ({code})")
    ):
        check_text(f"a{char}b\x01", "playlist name", 100)


def test_a_newline_inside_is_refused_unless_nothing_is_forbidden() -> None:
    with pytest.raises(Invalid, match=re.escape("(U+000A)")):
        check_text("line one\nline two", "note", 1000, empty=True)
    notes = "line one\nline two\ttabbed"
    assert check_text(notes, "notes", 1000, empty=True, forbidden=frozenset()) == notes


def test_the_forbidden_categories_are_the_callers_to_choose() -> None:
    assert "Cc" in UNPRINTABLE
    assert check_text("a\ue000b", "key", 10, forbidden=frozenset({"Cc"})) == "a\ue000b"
    with pytest.raises(Invalid, match=re.escape("(U+0001)")):
        check_text("a\x01b", "key", 10, forbidden=frozenset({"Cc"}))


def test_a_character_class_forbids_what_it_matches() -> None:
    digits = re.compile(r"[0-9]")
    assert check_text("abc", "word", 10, forbidden=digits) == "abc"
    with pytest.raises(
        Invalid, match=re.escape("word must not contain control characters (U+0037)")
    ):
        check_text("ab7c", "word", 10, forbidden=digits)


@pytest.mark.parametrize("name", [" bob", "bob ", "bob\n", "\u3000bob"])
def test_surrounding_white_space_may_be_refused_instead_of_stripped(name: str) -> None:
    with pytest.raises(Invalid, match=r"^name must not begin or end with white space$"):
        check_text(name, "name", 64, surrounding_space="refuse")


def test_refusing_surrounding_white_space_still_counts_every_character() -> None:
    with pytest.raises(Invalid, match="is required"):
        check_text("", "name", 3, surrounding_space="refuse")
    with pytest.raises(Invalid, match="1 to 3 characters long"):
        check_text("  ab  ", "name", 3, surrounding_space="refuse")


@pytest.mark.parametrize(
    "name",
    [
        "Zoë",
        "bob smith",
        " bob",
        "bob\t",
        "bo\x00b",
        "bo\x85b",
        "soft\u00adhyphen",
        "zero\u200bwidth",
        "bidi\u202eoverride",
        "bom\ufeff",
        "private\ue000use",
        "x" * 64,
    ],
)
def test_a_user_name_passes_the_check_exactly_when_it_matches_the_published_pattern(
    name: str,
) -> None:
    matches = re.fullmatch(NAME_PATTERN, name) is not None
    try:
        check_name(name)
    except Invalid:
        assert not matches, name
    else:
        assert matches, name
