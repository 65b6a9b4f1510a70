"""The audit trail of a device: every write asked of its API (who: user and role, from which address; how: the
API, a batch, or an agent with its host id; what: the method and route, on which path; the status answered), and
every refusal (a failed login, a permission refused), kept for `retention` seconds. Each device keeps the trail of
what was asked of it; what replicates to it from other members is in theirs."""

import time

from tandem.store import AuditEntry, AuditQuery, Store

PRUNE_EVERY = 1000
"""Entries recorded between two removals of those past the retention."""


class AuditTrail:
    """Records and reads the entries of one device."""

    def __init__(self, store: Store, retention: float) -> None:
        self._store = store
        self.retention = retention
        """Seconds an entry is kept."""
        self._since_prune = PRUNE_EVERY  # the first entry prunes what an earlier run left

    def record(self, user: str, role: str, source: str, via: str, action: str, target: str, status: int,
               detail: str = "") -> None:
        self._store.add_audit(AuditEntry(0, time.time(), user, role, source, via, action, target, status, detail))
        self._since_prune += 1
        if self._since_prune >= PRUNE_EVERY:
            self.prune()

    def prune(self) -> None:
        """Remove the entries past the retention."""
        self._since_prune = 0
        self._store.prune_audit(time.time() - self.retention)

    def entries(self, query: AuditQuery) -> list[AuditEntry]:
        """The entries matching `query`, newest first (those past the retention left out)."""
        oldest = time.time() - self.retention
        return self._store.audit(query if query.since >= oldest else AuditQuery(**{**vars(query), "since": oldest}))
