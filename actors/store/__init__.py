"""The hub's SQLite database: transactions that carry events, group commit, migrations."""

from ._group_commit import GroupCommit
from ._store import Entry, Store, StoreError, StoreFull, Transaction

__all__ = ["Entry", "GroupCommit", "Store", "StoreError", "StoreFull", "Transaction"]
