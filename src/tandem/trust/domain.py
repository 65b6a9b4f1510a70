"""The trust domain's state: trusted devices and device groups, as records merged by clock stamp.

Every record has a key, a body, a hybrid-logical-clock stamp, the device that wrote it and a
deleted flag. Two states merge record by record, the greater (stamp, origin) winning, so every
device that has seen the same records holds the same state whatever the order it saw them in.
Devices exchange their whole state (it is small) when they connect and whenever it changes.
"""

import hashlib
import logging
import secrets
import uuid
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from tandem.models.cluster import DomainState
from tandem.store import Store

log = logging.getLogger("tandem.domain")

DEVICE, GROUP, TRAFFIC_GROUP = "device", "group", "traffic-group"
MEMBER, CLUSTER, PEER = "member", "cluster", "peer"
"""Kinds of record: a member's cluster-wide state (evacuated), the cluster's settings (its name),
and the relationships with peer clusters."""


class Domain:
    """This device's view of its trust domain."""

    def __init__(self, store: Store, self_record: dict[str, Any]) -> None:
        self._store = store
        self.device_id = store.device_id
        self.listeners: list[Callable[[], None]] = []
        """Called after every change of the state."""
        self._records: dict[tuple[str, str], dict[str, Any]] = {
            (r["kind"], r["key"]): r for r in store.domain_records()}
        if store.meta("domain_id") is None or store.meta("domain_secret") is None:
            self._new_domain()
        if self.device(self.device_id) != self_record:
            self._write(DEVICE, self.device_id, self_record)

    # -- reads ----------------------------------------------------------------------------------

    def _new_domain(self) -> None:
        self._store.set_meta("domain_id", str(uuid.uuid4()))
        self._store.set_meta("domain_secret", secrets.token_hex(32))

    @property
    def secret(self) -> str:
        """The domain's shared secret (heartbeat keys derive from it); it never leaves the members."""
        secret = self._store.meta("domain_secret")
        assert secret is not None
        return secret

    @property
    def domain_id(self) -> str:
        domain_id = self._store.meta("domain_id")
        assert domain_id is not None
        return domain_id

    @property
    def cluster_name(self) -> str:
        """The cluster's name (its settings record), by default `cluster-` and the start of the domain id."""
        settings = self.record(CLUSTER, CLUSTER)
        return settings["name"] if settings else f"cluster-{self.domain_id[:8]}"

    def records(self, kind: str) -> list[dict[str, Any]]:
        """The bodies of the live records of one kind, by key."""
        return [r["body"] for (k, _), r in sorted(self._records.items()) if k == kind and not r["deleted"]]

    def record(self, kind: str, key: str) -> dict[str, Any] | None:
        """The body of one live record, or None."""
        record = self._records.get((kind, key))
        return None if record is None or record["deleted"] else record["body"]

    def devices(self) -> list[dict[str, Any]]:
        """The trusted devices, this one included."""
        return sorted(self.records(DEVICE), key=lambda d: d["name"])

    def peers(self) -> list[dict[str, Any]]:
        """The trusted devices but this one."""
        return [d for d in self.devices() if d["id"] != self.device_id]

    def device(self, device_id: str) -> dict[str, Any] | None:
        return self.record(DEVICE, device_id)

    def device_named(self, name: str) -> dict[str, Any] | None:
        return next((d for d in self.devices() if d["name"] == name), None)

    def device_with_fingerprint(self, fingerprint: str) -> dict[str, Any] | None:
        return next((d for d in self.devices() if d["fingerprint"] == fingerprint), None)

    @property
    def me(self) -> dict[str, Any]:
        me = self.device(self.device_id)
        assert me is not None
        return me

    def evacuated(self, device_id: str) -> bool:
        """Whether the cluster evacuated the device (it takes no traffic group)."""
        state = self.record(MEMBER, device_id)
        return bool(state and state["evacuated"])

    def groups(self) -> list[dict[str, Any]]:
        return sorted(self.records(GROUP), key=lambda g: g["name"])

    def group(self, name: str) -> dict[str, Any] | None:
        return self.record(GROUP, name)

    def traffic_groups(self) -> list[dict[str, Any]]:
        return sorted(self.records(TRAFFIC_GROUP), key=lambda g: g["name"])

    def traffic_group(self, name: str) -> dict[str, Any] | None:
        return self.record(TRAFFIC_GROUP, name)

    def put_traffic_group(self, body: dict[str, Any]) -> None:
        self.put(TRAFFIC_GROUP, body["name"], body)

    def delete_traffic_group(self, name: str) -> None:
        self.delete(TRAFFIC_GROUP, name)

    def state(self) -> dict[str, Any]:
        """Everything a peer needs to merge this state: the domain id and every record."""
        return {"domain_id": self.domain_id, "records": list(self._records.values())}

    def digest(self) -> str:
        """A short hash of the record stamps: equal digests, equal states."""
        stamps = sorted(f"{k}/{key}/{r['hlc']}/{r['origin']}" for (k, key), r in self._records.items())
        return hashlib.sha256("\n".join(stamps).encode()).hexdigest()[:16]

    # -- changes --------------------------------------------------------------------------------

    def _write(self, kind: str, key: str, body: dict[str, Any], deleted: bool = False) -> None:
        record = {"kind": kind, "key": key, "body": body, "hlc": self._store.clock.now(),
                  "origin": self.device_id, "deleted": deleted}
        self._store.put_domain_record(record)
        self._records[(kind, key)] = record
        self._changed()

    def _changed(self) -> None:
        for listener in self.listeners:
            listener()

    def put(self, kind: str, key: str, body: dict[str, Any]) -> None:
        """Write one record (every member takes it on merge)."""
        self._write(kind, key, body)

    def delete(self, kind: str, key: str) -> None:
        """Delete one record: a tombstone that wins over every older write."""
        self._write(kind, key, self._records[(kind, key)]["body"], deleted=True)

    def put_device(self, body: dict[str, Any]) -> None:
        self.put(DEVICE, body["id"], body)

    def remove_device(self, device_id: str) -> None:
        self.delete(DEVICE, device_id)

    def put_group(self, body: dict[str, Any]) -> None:
        self.put(GROUP, body["name"], body)

    def delete_group(self, name: str) -> None:
        self.delete(GROUP, name)

    def merge(self, state: dict[str, Any]) -> bool:
        """Take every record of `state` that is newer than ours; True if anything changed.
        A state from another domain, or malformed, is ignored. If it removes this device, it leaves."""
        try:
            state = DomainState.model_validate(state).model_dump()
        except ValidationError:
            log.warning("ignored a malformed trust domain state")
            return False
        if state["domain_id"] != self.domain_id:
            return False
        changed = False
        for record in state.get("records", []):
            key = (record["kind"], record["key"])
            self._store.clock.observe(record["hlc"])
            mine = self._records.get(key)
            if mine is None or (record["hlc"], record["origin"]) > (mine["hlc"], mine["origin"]):
                self._store.put_domain_record(record)
                self._records[key] = record
                changed = True
        if changed:
            if self.device(self.device_id) is None:
                self.leave()
                return True
            self._changed()
        return changed

    def adopt(self, state: dict[str, Any]) -> None:
        """Join the domain of `state`: its id and records replace ours (this device's record stays)."""
        me = self.me
        self._store.clear_domain()
        self._store.set_meta("domain_id", state["domain_id"])
        self._store.set_meta("domain_secret", state["secret"])
        self._records = {}
        for record in state["records"]:
            self._store.clock.observe(record["hlc"])
            self._store.put_domain_record(record)
            self._records[(record["kind"], record["key"])] = record
        self._write(DEVICE, self.device_id, me)

    def leave(self) -> None:
        """Start a domain of this device alone (it was removed from its domain)."""
        me = self.me if self.device(self.device_id) else self._records[(DEVICE, self.device_id)]["body"]
        self._store.clear_domain()
        self._new_domain()
        self._records = {}
        self._write(DEVICE, self.device_id, me)
