"""The trust domain's state: trusted devices and device groups, as records merged by clock stamp.

Every record has a kind, a key, a body, a hybrid-logical-clock stamp, the device that wrote it and a
deleted flag (`models.cluster.DomainRecord`). Two states merge record by record, the greater (stamp,
origin) winning, so every device that has seen the same records holds the same state whatever the
order it saw them in. Devices exchange their whole state (it is small) when they connect and whenever
it changes. Readers get the typed body of each live record (`TrustedDevice`, `GroupRecord`,
`TrafficGroup`, `MemberState`, `ClusterSettings`, `PeerRecord`); the wire and SQLite forms stay inside.
"""

import hashlib
import logging
import secrets
import uuid
from collections.abc import Callable, Iterable
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from tandem.models.cluster import (
    RECORD_MODELS,
    ClusterSettings,
    DomainRecord,
    DomainState,
    GroupRecord,
    JoinRequest,
    MemberState,
    TrafficGroup,
    TrustedDevice,
    UserRecord,
)
from tandem.models.peering import PeerRecord
from tandem.store import Store

log = logging.getLogger("tandem.domain")

DEVICE, GROUP, TRAFFIC_GROUP = "device", "group", "traffic-group"
MEMBER, CLUSTER, PEER, USER = "member", "cluster", "peer", "user"
"""Kinds of record: a member's cluster-wide state (evacuated), the cluster's settings (its name),
the relationships with peer clusters, and the users (with their password hashes)."""
USERS_SINCE = 2
"""The peer protocol from which domain states carry users and traffic groups with `interface` or `pool` trackers:
a device of the release before (protocol 1) would refuse the whole state for one such record, so it gets the other
records only (and keeps its own users) until it is upgraded."""
NEW_TRACKERS = ("interface", "pool")

RecordKey = tuple[str, str]
M = TypeVar("M", bound=BaseModel)


def _read_by(record: DomainRecord, protocol: int) -> bool:
    """Whether a peer speaking `protocol` reads `record` (see `USERS_SINCE`)."""
    if protocol >= USERS_SINCE:
        return True
    if record.kind == USER:
        return False
    return record.kind != TRAFFIC_GROUP or not any(
        tracker.get("type") in NEW_TRACKERS for tracker in record.body.get("trackers") or ())


class Domain:
    """This device's view of its trust domain."""

    def __init__(self, store: Store, me: TrustedDevice) -> None:
        self._store = store
        self.device_id = store.device_id
        self.listeners: list[Callable[[], None]] = []
        """Called after every change of the state."""
        self._records: dict[RecordKey, DomainRecord] = {}
        self._bodies: dict[RecordKey, BaseModel] = {}
        """The typed body of every live record."""
        for record in store.domain_records():
            self._remember(record)
        if store.meta("domain_id") is None or store.meta("domain_secret") is None:
            self._new_domain()
        if self.device(self.device_id) != me:
            self._write(DEVICE, self.device_id, me)

    def _new_domain(self) -> None:
        self._store.set_meta("domain_id", str(uuid.uuid4()))
        self._store.set_meta("domain_secret", secrets.token_hex(32))

    def _remember(self, record: DomainRecord) -> None:
        key = (record.kind, record.key)
        self._records[key] = record
        if record.deleted:
            self._bodies.pop(key, None)
        else:
            self._bodies[key] = RECORD_MODELS[record.kind].model_validate(record.body)

    def _forget_all(self) -> None:
        self._store.clear_domain()
        self._records.clear()
        self._bodies.clear()

    # -- reads ----------------------------------------------------------------------------------

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

    def _live(self, kind: str, model: type[M]) -> list[M]:
        return [body for (k, _), body in sorted(self._bodies.items(), key=lambda item: item[0])
                if k == kind and isinstance(body, model)]

    def _one(self, kind: str, key: str, model: type[M]) -> M | None:
        body = self._bodies.get((kind, key))
        return body if isinstance(body, model) else None

    @property
    def cluster_name(self) -> str:
        """The cluster's name (its settings record), by default `cluster-` and the start of the domain id."""
        settings = self._one(CLUSTER, CLUSTER, ClusterSettings)
        return settings.name if settings else f"cluster-{self.domain_id[:8]}"

    def devices(self) -> list[TrustedDevice]:
        """The trusted devices, this one included, by name."""
        return sorted(self._live(DEVICE, TrustedDevice), key=lambda d: d.name)

    def peers(self) -> list[TrustedDevice]:
        """The trusted devices but this one."""
        return [d for d in self.devices() if d.id != self.device_id]

    def device(self, device_id: str) -> TrustedDevice | None:
        return self._one(DEVICE, device_id, TrustedDevice)

    def device_named(self, name: str) -> TrustedDevice | None:
        return next((d for d in self.devices() if d.name == name), None)

    def device_with_fingerprint(self, fingerprint: str) -> TrustedDevice | None:
        return next((d for d in self.devices() if d.fingerprint == fingerprint), None)

    @property
    def me(self) -> TrustedDevice:
        me = self.device(self.device_id)
        assert me is not None
        return me

    def evacuated(self, device_id: str) -> bool:
        """Whether the cluster evacuated the device (it takes no traffic group)."""
        state = self._one(MEMBER, device_id, MemberState)
        return state is not None and state.evacuated

    def groups(self) -> list[GroupRecord]:
        """The device groups, by name."""
        return self._live(GROUP, GroupRecord)

    def group(self, name: str) -> GroupRecord | None:
        return self._one(GROUP, name, GroupRecord)

    def traffic_groups(self) -> list[TrafficGroup]:
        """The traffic groups, by name."""
        return self._live(TRAFFIC_GROUP, TrafficGroup)

    def traffic_group(self, name: str) -> TrafficGroup | None:
        return self._one(TRAFFIC_GROUP, name, TrafficGroup)

    def peer_records(self) -> list[PeerRecord]:
        """The relationships with peer clusters, by uuid."""
        return self._live(PEER, PeerRecord)

    def peer_record(self, uuid: str) -> PeerRecord | None:
        return self._one(PEER, uuid, PeerRecord)

    def state(self, protocol: int = USERS_SINCE) -> DomainState:
        """Everything a peer speaking `protocol` needs to merge this state: the domain id and every record it
        knows the kind of."""
        return DomainState.model_construct(domain_id=self.domain_id, records=[
            r for r in self._records.values() if _read_by(r, protocol)])

    def join_request(self) -> JoinRequest:
        """What a device being added needs: the state and the domain's secret."""
        return JoinRequest.model_construct(domain_id=self.domain_id, secret=self.secret,
                                           records=list(self._records.values()))

    def digest(self, protocol: int = USERS_SINCE) -> str:
        """A short hash of the stamps of the records a peer speaking `protocol` knows: equal digests, equal
        states."""
        stamps = sorted(f"{k}/{key}/{r.hlc}/{r.origin}" for (k, key), r in self._records.items()
                        if _read_by(r, protocol))
        return hashlib.sha256("\n".join(stamps).encode()).hexdigest()[:16]

    # -- changes --------------------------------------------------------------------------------

    def _write(self, kind: str, key: str, body: BaseModel, deleted: bool = False,
               stamp: tuple[int, str] | None = None) -> None:
        """Write a record, stamped now (or with `stamp`: a record carried over from before, with the stamp of the
        object it was)."""
        hlc, origin = stamp or (self._store.clock.now(), self.device_id)
        record = DomainRecord.model_construct(kind=kind, key=key, body=body.model_dump(), hlc=hlc, origin=origin,
                                              deleted=deleted)
        self._store.put_domain_record(record)
        self._remember(record)
        self._changed()

    def _changed(self) -> None:
        for listener in self.listeners:
            listener()

    def _delete(self, kind: str, key: str) -> None:
        """A tombstone that wins over every older write (it keeps the last body)."""
        record = self._records[(kind, key)]
        self._write(kind, key, RECORD_MODELS[kind].model_validate(record.body), deleted=True)

    def put_device(self, device: TrustedDevice) -> None:
        self._write(DEVICE, device.id, device)

    def remove_device(self, device_id: str) -> None:
        """Remove a device from trust, and its cluster-wide state (a device added again starts afresh)."""
        if self._one(MEMBER, device_id, MemberState) is not None:
            self._delete(MEMBER, device_id)
        self._delete(DEVICE, device_id)

    def set_evacuated(self, device_id: str, evacuated: bool) -> None:
        self._write(MEMBER, device_id, MemberState(id=device_id, evacuated=evacuated))

    def rename_cluster(self, name: str) -> None:
        self._write(CLUSTER, CLUSTER, ClusterSettings(name=name))

    def put_group(self, group: GroupRecord) -> None:
        self._write(GROUP, group.name, group)

    def delete_group(self, name: str) -> None:
        self._delete(GROUP, name)

    def put_traffic_group(self, group: TrafficGroup) -> None:
        self._write(TRAFFIC_GROUP, group.name, group)

    def delete_traffic_group(self, name: str) -> None:
        self._delete(TRAFFIC_GROUP, name)

    def users(self) -> list[UserRecord]:
        """The users of the trust domain, by name."""
        return self._live(USER, UserRecord)

    def user(self, name: str) -> UserRecord | None:
        return self._one(USER, name, UserRecord)

    def put_user(self, user: UserRecord, stamp: tuple[int, str] | None = None) -> None:
        self._write(USER, user.name, user, stamp=stamp)

    def user_stamp(self, name: str) -> tuple[int, str] | None:
        """(hybrid clock, origin) of the user's record (None: there is none)."""
        record = self._records.get((USER, name))
        return (record.hlc, record.origin) if record else None

    def delete_user(self, name: str) -> None:
        self._delete(USER, name)

    def put_peer_record(self, record: PeerRecord) -> None:
        self._write(PEER, record.uuid, record)

    def delete_peer_record(self, uuid: str) -> None:
        self._delete(PEER, uuid)

    def merge(self, wire_state: object) -> bool:
        """Take every record of a peer's state (its wire form) that is newer than ours; True if anything
        changed. A state from another domain, or malformed, is ignored. If it removes this device, it leaves."""
        try:
            state = DomainState.model_validate(wire_state)
        except ValidationError:
            log.warning("ignored a malformed trust domain state")
            return False
        if state.domain_id != self.domain_id:
            return False
        changed = False
        for record in state.records:
            self._store.clock.observe(record.hlc)
            mine = self._records.get((record.kind, record.key))
            if mine is None or (record.hlc, record.origin) > (mine.hlc, mine.origin):
                self._store.put_domain_record(record)
                self._remember(record)
                changed = True
        if changed:
            if self.device(self.device_id) is None:
                self.leave()
                return True
            self._changed()
        return changed

    def adopt(self, join: JoinRequest) -> None:
        """Join the domain of `join`: its id and records replace ours (this device's record stays, and its users
        whose names the domain does not have join it: a name both have is the domain's user)."""
        me = self.me
        own_users = self._user_records()
        self._forget_all()
        self._store.set_meta("domain_id", join.domain_id)
        self._store.set_meta("domain_secret", join.secret)
        for record in join.records:
            self._store.clock.observe(record.hlc)
            self._store.put_domain_record(record)
            self._remember(record)
        self._write(DEVICE, self.device_id, me)
        self._keep(record for record in own_users if (USER, record.key) not in self._records)  # never over a deletion

    def leave(self) -> None:
        """Start a domain of this device alone (it was removed from its domain), keeping the users it had."""
        me = self.me if self.device(self.device_id) else TrustedDevice.model_validate(
            self._records[(DEVICE, self.device_id)].body)
        users = self._user_records()
        self._forget_all()
        self._new_domain()
        self._write(DEVICE, self.device_id, me)
        self._keep(users)

    def _user_records(self) -> list[DomainRecord]:
        """The live user records, with their stamps."""
        return [record for (kind, _), record in self._records.items() if kind == USER and not record.deleted]

    def _keep(self, records: Iterable[DomainRecord]) -> None:
        """Take `records` as they are (their stamps too: a record carried into a domain does not outrank a later
        change there)."""
        for record in records:
            self._store.put_domain_record(record)
            self._remember(record)
        self._changed()
