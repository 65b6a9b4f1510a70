"""The device's store: SQLite in WAL mode, every write a transaction in a log."""

from tandem.store.database import GLOBAL, LOCAL_SCOPE, ScopeRule, Store, Transaction, Vector
from tandem.store.reader import Reader, Record

__all__ = ["GLOBAL", "LOCAL_SCOPE", "Reader", "Record", "ScopeRule", "Store", "Transaction", "Vector"]
