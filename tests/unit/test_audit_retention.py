"""The audit trail keeps entries for its retention only."""

import time
from pathlib import Path

from tandem.auth.audit import AuditTrail
from tandem.store import AuditQuery, Store


def test_entries_past_the_retention_are_left_out_then_removed(tmp_path: Path) -> None:
    store = Store(tmp_path / "t.db")
    trail = AuditTrail(store, retention=0.2)
    trail.record("admin", "admin", "127.0.0.1", "api", "POST /api/pools", "/api/pools", 201)
    assert [e.action for e in trail.entries(AuditQuery())] == ["POST /api/pools"]
    time.sleep(0.3)
    assert trail.entries(AuditQuery()) == []
    trail.record("admin", "admin", "127.0.0.1", "api", "DELETE /api/pools/{partition}/{name}", "/api/pools/C/x", 204)
    trail.prune()
    assert [e.status for e in store.audit(AuditQuery())] == [204]  # the old one is gone from the table too
    store.close()
