"""The hub's SQLite database: transactions that carry events, group commit, migrations, rows as
Structs, and keyset paging with one cursor format."""

from ._group_commit import GroupCommit
from ._paging import (
    DEFAULT_PAGE,
    MAX_PAGE,
    Keyset,
    SortedRecords,
    check_limit,
    decode_cursor,
    encode_cursor,
)
from ._rows import Rows
from ._store import Entry, Store, StoreError, StoreFull, Transaction

__all__ = [
    "DEFAULT_PAGE",
    "MAX_PAGE",
    "Entry",
    "GroupCommit",
    "Keyset",
    "Rows",
    "SortedRecords",
    "Store",
    "StoreError",
    "StoreFull",
    "Transaction",
    "check_limit",
    "decode_cursor",
    "encode_cursor",
]
