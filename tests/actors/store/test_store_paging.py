"""Keyset paging: one opaque cursor format, pages in SQL and in memory that neither skip nor
repeat items across inserts and deletes, ties broken by id, malformed cursors refused."""

from __future__ import annotations

import base64
from pathlib import Path

import msgspec
import pytest

from actors.errors import BadRequest
from actors.store import (
    MAX_PAGE,
    Keyset,
    Rows,
    SortedRecords,
    Store,
    decode_cursor,
    encode_cursor,
)
from supervision import open_asyncio_bridge


class Item(msgspec.Struct, frozen=True, kw_only=True):
    item_id: str
    owner: str
    stamp: str


ITEMS = Rows(Item)
BY_STAMP = Keyset("stamp", "item_id", key_type=tuple[str, str], newest_first=True)
BY_SEQ = Keyset("seq", key_type=tuple[int])


def item(n: int, stamp: str = "", owner: str = "alice") -> Item:
    return Item(item_id=f"i{n:03d}", owner=owner, stamp=stamp or f"2026-01-{n % 28 + 1:02d}")


def key(i: Item) -> tuple[str, str]:
    return (i.stamp, i.item_id)


# -- the cursor codec --------------------------------------------------------------------------


def test_a_cursor_round_trips_its_key_and_says_nothing_readable() -> None:
    for k in [("2026-01-01T00:00:00Z", "a~b"), (7,), (2**63 - 1, "é")]:
        cursor = encode_cursor(k)
        assert cursor.isascii() and "=" not in cursor and "~" not in cursor
        assert decode_cursor(cursor, tuple[int | str, ...]) == k


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "nonsense",
        "not-a-cursor!",
        "%C2%B2",
        "²",
        "9" * 40,
        encode_cursor(("only-one",)),
        encode_cursor((1, 2)),
        encode_cursor((2**63,)),
        base64.urlsafe_b64encode(b'{"a": 1}').decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ],
)
def test_a_malformed_cursor_is_a_bad_request(cursor: str) -> None:
    with pytest.raises(BadRequest, match="malformed cursor"):
        decode_cursor(cursor, tuple[str, str])
    with pytest.raises(BadRequest, match="malformed cursor"):
        decode_cursor(cursor, tuple[int])


# -- in memory ---------------------------------------------------------------------------------


def pages(records: SortedRecords[Item, tuple[str, str]], limit: int, owner: str) -> list[list[str]]:
    out, cursor = [], None
    while True:
        page, cursor = records.page(limit, cursor, lambda i: i.owner == owner)
        out.append([i.item_id for i in page])
        if cursor is None:
            return out


def test_memory_pages_follow_the_key_with_ties_broken_by_id() -> None:
    records: SortedRecords[Item, tuple[str, str]] = SortedRecords(key, tuple[str, str])
    for n in (5, 3, 4, 1, 2):
        records[f"i{n:03d}"] = item(n, stamp="same")
    records["i009"] = item(9, stamp="earlier")
    records["i008"] = item(8, stamp="same", owner="bob")
    assert list(records) == ["i005", "i003", "i004", "i001", "i002", "i009", "i008"]
    assert pages(records, 2, "alice") == [["i009", "i001"], ["i002", "i003"], ["i004", "i005"]]
    newest: SortedRecords[Item, tuple[str, str]] = SortedRecords(
        key, tuple[str, str], newest_first=True
    )
    newest.update(records)
    assert pages(newest, 4, "alice") == [["i005", "i004", "i003", "i002"], ["i001", "i009"]]
    assert pages(newest, 4, "carol") == [[]]


def test_memory_pages_skip_nothing_across_inserts_deletes_and_replacements() -> None:
    records: SortedRecords[Item, tuple[str, str]] = SortedRecords(key, tuple[str, str])
    for n in range(10):
        records[f"i{n:03d}"] = item(n, stamp=f"s{n}")
    first, cursor = records.page(4, None)
    assert [i.item_id for i in first] == ["i000", "i001", "i002", "i003"]
    del records["i003"]  # the cursor's own item
    del records["i005"]
    records["i100"] = item(100, stamp="s45")  # after the cursor: shown
    records["i101"] = item(101, stamp="s0")  # before it: not
    records["i004"] = msgspec.structs.replace(records["i004"], owner="bob")
    rest, cursor = records.page(MAX_PAGE, cursor)
    assert [i.item_id for i in rest] == ["i004", "i100", "i006", "i007", "i008", "i009"]
    assert rest[0].owner == "bob" and cursor is None
    assert len(records) == 10 and "i005" not in records


def test_memory_paging_checks_limit_and_cursor() -> None:
    records: SortedRecords[Item, tuple[str, str]] = SortedRecords(key, tuple[str, str])
    for limit in (0, MAX_PAGE + 1):
        with pytest.raises(BadRequest, match="limit"):
            records.page(limit, None)
    with pytest.raises(BadRequest, match="malformed cursor"):
        records.page(1, encode_cursor((1,)))


# -- in SQL ------------------------------------------------------------------------------------


async def test_sql_pages_keep_order_across_inserts_and_deletes(tmp_path: Path) -> None:
    async with open_asyncio_bridge() as bridge, Store.open(tmp_path / "hub.db", bridge) as store:
        await store.migrate(
            "items",
            [
                "CREATE TABLE items (item_id TEXT PRIMARY KEY, owner TEXT, stamp TEXT, "
                "seq INTEGER UNIQUE)"
            ],
        )
        async with store.transaction() as tx:
            for n in range(7):
                tx.execute(
                    f"INSERT INTO items ({ITEMS.columns}, seq) VALUES ({ITEMS.placeholders}, ?)",
                    (*ITEMS.values(item(n, stamp="tie" if n < 4 else f"s{n}")), n),
                )

        async def page(
            keyset: Keyset[tuple[str, str]] | Keyset[tuple[int]], cursor: str | None
        ) -> tuple[list[str], str | None]:
            items, after = await keyset.page(
                store, ITEMS.columns, "items", "owner = ?", ("alice",), ITEMS.of, 3, cursor
            )
            return [i.item_id for i in items], after

        ids, cursor = await page(BY_STAMP, None)
        assert ids == ["i003", "i002", "i001"]
        async with store.transaction() as tx:
            tx.execute("DELETE FROM items WHERE item_id IN ('i001', 'i004')")
            tx.execute("INSERT INTO items VALUES ('i010', 'alice', 'tie', 10)")  # id after i003
            tx.execute("INSERT INTO items VALUES ('i000b', 'alice', 'tie', 11)")
        ids, cursor = await page(BY_STAMP, cursor)
        assert ids == ["i000b", "i000", "i006"]
        ids, cursor = await page(BY_STAMP, cursor)
        assert (ids, cursor) == (["i005"], None)

        ids, cursor = await page(BY_SEQ, None)
        assert ids == ["i000", "i002", "i003"]
        ids, cursor = await page(BY_SEQ, cursor)
        assert (ids, cursor) == (["i005", "i006", "i010"], encode_cursor((10,)))
        ids, cursor = await page(BY_SEQ, cursor)
        assert (ids, cursor) == (["i000b"], None)
        with pytest.raises(BadRequest, match="malformed cursor"):
            await page(BY_SEQ, encode_cursor(("s1", "i001")))
