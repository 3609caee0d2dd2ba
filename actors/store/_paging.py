"""Keyset paging for every list the hub serves: one cursor format, in SQL or in memory.

A list is ordered by a sort key whose last part is unique (a time and an id, or a sequence
number), so the order is total and ties are broken by the id. A page's cursor is the key of
its last item, so the next page starts right after it however items were added or removed
meanwhile: nothing is skipped or shown twice. The cursor is opaque to callers: base64url of
the key as msgspec JSON. Anything that does not decode to a key of the list's shape is a
``BadRequest("malformed cursor")``, never a crash.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import itertools
from collections.abc import (
    Callable,
    ItemsView,
    Iterable,
    Iterator,
    MutableMapping,
    Sequence,
    ValuesView,
)
from typing import Any, Generic, TypeVar, overload

import msgspec

from actors.errors import BadRequest

from ._store import Params, Store

T = TypeVar("T")
K = TypeVar("K", bound=tuple[Any, ...])
D = TypeVar("D")

MAX_PAGE = 500
DEFAULT_PAGE = 50

_INT64 = (-(2**63), 2**63 - 1)
_encode = msgspec.json.Encoder().encode


def check_limit(limit: int, maximum: int = MAX_PAGE) -> None:
    if not 1 <= limit <= maximum:
        raise BadRequest(f"limit must be between 1 and {maximum}, got {limit}")


def encode_cursor(key: tuple[Any, ...]) -> str:
    """The opaque cursor of the sort key ``key``."""
    return base64.urlsafe_b64encode(_encode(key)).rstrip(b"=").decode()


def decode_cursor(cursor: str, key_type: type[K]) -> K:
    """The sort key in ``cursor``, of the shape ``key_type`` (e.g. ``tuple[str, str]``).

    Integers must fit SQLite's (64 bits), so a key read here can always be bound to a query.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor.encode("ascii") + b"=" * (-len(cursor) % 4))
        key: K = msgspec.json.decode(raw, type=key_type)
    except (UnicodeEncodeError, binascii.Error, ValueError, msgspec.ValidationError):
        raise BadRequest("malformed cursor") from None
    if any(isinstance(part, int) and not _INT64[0] <= part <= _INT64[1] for part in key):
        raise BadRequest("malformed cursor")
    return key


class SortedRecords(MutableMapping[str, T], Generic[T, K]):
    """An actor's records by id — a dict — that also keeps them in sort-key order, so that a
    page of them is a binary search and a walk, never a sort of the whole list.

    Iteration is in insertion order, as a dict's; only ``page`` uses the key order. An item's
    key must not change while it is stored: store a replaced record under its id again
    (``records[id] = new``), which moves it. The key's last part is the id, so keys are unique.
    """

    __slots__ = ("_by_id", "_key", "_keys", "_values", "key_type", "newest_first")

    def __init__(
        self, key: Callable[[T], K], key_type: type[K], *, newest_first: bool = False
    ) -> None:
        self._key = key
        self.key_type = key_type
        self.newest_first = newest_first
        self._by_id: dict[str, T] = {}
        self._keys: list[K] = []
        self._values: list[T] = []

    def __getitem__(self, record_id: str) -> T:
        return self._by_id[record_id]

    def __setitem__(self, record_id: str, record: T) -> None:
        if record_id in self._by_id:
            self._unsort(self._by_id[record_id])
        self._by_id[record_id] = record
        key = self._key(record)
        i = bisect.bisect_left(self._keys, key)
        self._keys.insert(i, key)
        self._values.insert(i, record)

    def __delitem__(self, record_id: str) -> None:
        self._unsort(self._by_id.pop(record_id))

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_id)

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, record_id: object) -> bool:
        return record_id in self._by_id

    @overload
    def get(self, record_id: str, /) -> T | None: ...
    @overload
    def get(self, record_id: str, /, default: T | D) -> T | D: ...
    def get(self, record_id: str, /, default: object = None) -> object:
        return self._by_id.get(record_id, default)

    def values(self) -> ValuesView[T]:
        return self._by_id.values()

    def items(self) -> ItemsView[str, T]:
        return self._by_id.items()

    def clear(self) -> None:
        self._by_id.clear()
        self._keys.clear()
        self._values.clear()

    def ordered(self) -> list[T]:
        """Every record, in key order (oldest first)."""
        return list(self._values)

    def _unsort(self, record: T) -> None:
        i = bisect.bisect_left(self._keys, self._key(record))
        del self._keys[i]
        del self._values[i]

    def page(
        self,
        limit: int,
        cursor: str | None,
        where: Callable[[T], bool] | None = None,
    ) -> tuple[list[T], str | None]:
        """One page of the records that satisfy ``where`` (all if None), and the next
        page's cursor (or None)."""
        check_limit(limit)
        values = self._values
        if self.newest_first:
            end = len(values)
            if cursor is not None:
                end = bisect.bisect_left(self._keys, decode_cursor(cursor, self.key_type))
            walk: Iterable[T] = (values[i] for i in range(end - 1, -1, -1))
        else:
            start = 0
            if cursor is not None:
                start = bisect.bisect_right(self._keys, decode_cursor(cursor, self.key_type))
            walk = itertools.islice(values, start, None)
        if where is not None:
            walk = filter(where, walk)
        page = list(itertools.islice(walk, limit + 1))
        if len(page) <= limit:
            return page, None
        del page[limit:]
        return page, encode_cursor(self._key(page[-1]))


class Keyset(Generic[K]):
    """The order of a list kept in SQL: its sort columns (the last one unique) and direction.

    ``key_type`` is the shape of the columns' values in a cursor, e.g. ``tuple[int]`` for a
    sequence number. SQLite compares row values, ``(a, b) < (?, ?)``, and uses an index on
    ``(a, b)`` (after the equality columns of the WHERE) to start right at the cursor.
    """

    __slots__ = ("_after", "_key", "_order", "columns", "key_type", "newest_first")

    def __init__(self, *columns: str, key_type: type[K], newest_first: bool = False) -> None:
        self.columns = columns
        self.key_type = key_type
        self.newest_first = newest_first
        self._key = ", ".join(columns)
        self._after = (
            f"({self._key}) {'<' if newest_first else '>'} ({', '.join('?' * len(columns))})"
        )
        direction = " DESC" if newest_first else ""
        self._order = ", ".join(c + direction for c in columns)

    async def page(
        self,
        store: Store,
        columns: str,
        table: str,
        where: str,
        params: Params,
        of: Callable[[Sequence[Any]], T],
        limit: int,
        cursor: str | None,
    ) -> tuple[list[T], str | None]:
        """One page of ``SELECT columns FROM table WHERE where`` in this order, and the next
        page's cursor (or None).

        ``of`` makes an item of a row (``columns``, then the sort columns). The caller checks
        ``limit``: lists have their own maxima.
        """
        bound = list(params)
        if cursor is not None:
            where = f"({where}) AND {self._after}"
            bound.extend(decode_cursor(cursor, self.key_type))
        rows = await store.fetch_all(
            f"SELECT {columns}, {self._key} FROM {table} WHERE {where} "
            f"ORDER BY {self._order} LIMIT ?",
            [*bound, limit + 1],
        )
        items = [of(row) for row in rows[:limit]]
        if len(rows) <= limit:
            return items, None
        return items, encode_cursor(tuple(rows[limit - 1][-len(self.columns) :]))
