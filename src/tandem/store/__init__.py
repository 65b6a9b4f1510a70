"""The device's store: SQLite in WAL mode, every write a commit in a log."""

from tandem.store.database import GLOBAL, LOCAL_SCOPE, Record, ScopeRule, Store, Transaction, Vector

__all__ = ["GLOBAL", "LOCAL_SCOPE", "Record", "ScopeRule", "Store", "Transaction", "Vector"]
