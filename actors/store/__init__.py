"""The hub's SQLite database: transactions that carry events, group commit, migrations."""

from ._store import Entry, Store, StoreError, StoreFull, Transaction

__all__ = ["Entry", "Store", "StoreError", "StoreFull", "Transaction"]
