"""Keyset pagination over an actor's in-memory records: one page and an opaque next cursor.

The cursor is the sort key of a page's last item, so a page starts after it however items
were added or removed meanwhile. Actors keep their lists in memory, so this sorts there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from actors.errors import BadRequest

T = TypeVar("T")

MAX_PAGE = 500
DEFAULT_PAGE = 50


def check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_PAGE:
        raise BadRequest(f"limit must be between 1 and {MAX_PAGE}, got {limit}")


def page_of(
    items: Iterable[T],
    key: Callable[[T], tuple[str, str]],
    limit: int,
    cursor: str | None,
    *,
    newest_first: bool = False,
) -> tuple[list[T], str | None]:
    """One page of ``items`` ordered by ``key`` (a timestamp and an id) and the next cursor."""
    check_limit(limit)
    ordered = sorted(items, key=key, reverse=newest_first)
    if cursor is not None:
        stamp, sep, ident = cursor.partition("~")
        if not sep or not ident:
            raise BadRequest("malformed cursor")
        after = (stamp, ident)
        ordered = [i for i in ordered if (key(i) < after if newest_first else key(i) > after)]
    page = ordered[:limit]
    if len(ordered) <= limit:
        return page, None
    stamp, ident = key(page[-1])
    return page, f"{stamp}~{ident}"
