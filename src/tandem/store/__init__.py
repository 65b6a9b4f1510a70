"""The device's store: SQLite in WAL mode, every write a commit in a log."""

from tandem.store.database import GLOBAL, Record, Store, Transaction

__all__ = ["GLOBAL", "Record", "Store", "Transaction"]
