"""The device's store: SQLite in WAL mode, every write a transaction in a log."""

from tandem.store.database import GLOBAL, LOCAL_SCOPE, NewerStore, ScopeRule, Store, Transaction
from tandem.store.reader import Reader, Record
from tandem.store.records import AuditEntry, AuditQuery, Body, FailoverEvent, LogRecord, Vector, Version

__all__ = ["GLOBAL", "LOCAL_SCOPE", "AuditEntry", "AuditQuery", "Body", "FailoverEvent", "LogRecord", "NewerStore",
           "Reader", "Record", "ScopeRule", "Store", "Transaction", "Vector", "Version"]
