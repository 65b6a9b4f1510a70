"""Conflict records: the losing side of concurrent writes, kept in a partition beside its configuration
(`tandem.sync.conflicts` writes and presents them)."""

CONFLICTS = "conflicts"
"""The store kind of conflict records."""
