"""Top-level configuration objects (partitions, monitors, certificates, pools, virtual servers, users): where each is
stored, and its create, update and delete inside a transaction, with the reference checks.

A pool's record holds its member list (`units`): writing a pool writes the unit."""

from collections.abc import Callable, Iterator
from typing import Any, Protocol

from tandem.config import integrity, units
from tandem.config.presentation import HIDDEN_FIELDS, model_fields, present, without_secrets
from tandem.config.query import Query
from tandem.config.validation import validate
from tandem.errors import Conflict, Invalid, NotFound
from tandem.models import Certificate, Partition, Pool, Resource
from tandem.models.conflict import CONFLICTS
from tandem.models.fence import FENCES
from tandem.models.lease import LEASES
from tandem.models.pem import chain_info, check_validity
from tandem.store import GLOBAL, Body, Store, Transaction
from tandem.store.draft import Draft

ObjectIdentity = dict[str, Any]
"""The fields that name an object (`Resource.identity`, and for a child its parent's: `Resource.parent_keys`)."""
Check = Callable[[ObjectIdentity], None]
"""Raises if the object (or parent) named may not be changed here."""
Txn = Transaction | Draft
"""Where writes go: a transaction on the writer, or a draft computed away from it."""
Source = Transaction | Draft | Store
"""What reads go through."""


def store_key(model: type[Resource], identity: ObjectIdentity) -> tuple[str, str]:
    """Where the object `identity` names is stored: (partition, name)."""
    return (identity["partition"], identity["name"]) if "partition" in model.identity else (GLOBAL, identity["name"])


def key_of(obj: Resource) -> tuple[str, str]:
    return store_key(type(obj), {field: getattr(obj, field) for field in type(obj).identity})


def stored_fields(obj: Resource, exclude: set[str]) -> Body:
    """`obj`'s fields but `exclude`, not its computed ones (a certificate's `status`: shown, never stored)."""
    return obj.model_dump(exclude=exclude | set(type(obj).model_computed_fields))


def comparable(obj: Resource) -> Body:
    """`obj` as it would be stored (members in their stored order; write-only fields as they are kept)."""
    shown = stored_fields(obj, set())
    if isinstance(obj, Pool):
        shown["members"] = units.member_list(obj)
    return shown


def write_object(txn: Txn, obj: Resource, stored: Body | None, current: Body | None, extra: Body | None = None) -> None:
    """Store `obj`, new (`stored` None: it gets its incarnation) or over its `stored` record (presented as
    `current`, whose hidden fields it keeps), without the API's checks; `extra`: server-side fields."""
    model = type(obj)
    partition, name = key_of(obj)
    stamp = txn.stamp()
    kept = {k: v for k, v in (stored or {}).items() if k in HIDDEN_FIELDS}
    exclude = {"members"} if isinstance(obj, Pool) else set()
    body = stored_fields(obj, exclude) | kept | (extra or {})
    body.setdefault("incarnation", str(stamp))
    if isinstance(obj, Pool):
        body = units.stored_pool(obj, body, stamp, stored, current["members"] if current else [])
    txn.put(model.kind, partition, name, body, stamp)


def checked_certificate(obj: Resource, stored: Body | None) -> Resource:
    """`obj`, or for a certificate: without a key it takes the `stored` one if any (checked against it again;
    a new one without key is a CA bundle), and a chain that is new must be valid now (not expired, not before
    its time)."""
    if not isinstance(obj, Certificate):
        return obj
    if obj.key is None and stored is not None and stored.get("key"):
        obj = validate(Certificate, stored_fields(obj, set()) | {"key": stored.get("key")})
    if stored is None or obj.certificate != stored.get("certificate"):
        try:
            check_validity(chain_info(obj.certificate))
        except ValueError as error:
            raise Invalid(str(error), target="certificate") from None
    return obj


class Collection(Protocol):
    """The objects of one resource: top-level (`Objects`) or children of another (`PoolMembers`). Writes go
    to `txn` without the read-only check (`ConfigService` makes it); `parent` names the parent of a child
    (`{"partition", "pool"}`), empty for the top level."""

    model: type[Resource]

    def partition_of(self, identity: ObjectIdentity) -> str: ...
    def read(self, source: Source, identity: ObjectIdentity) -> Body: ...
    def create(self, txn: Txn, obj: Resource, parent: ObjectIdentity, extra: Body | None) -> ObjectIdentity: ...
    def created(self, source: Source, obj: Resource, identity: ObjectIdentity) -> Body: ...
    def update(self, txn: Txn, identity: ObjectIdentity, patch: Body, extra: Body | None) -> None: ...
    def delete(self, txn: Txn, identity: ObjectIdentity) -> None: ...
    def update_matching(self, txn: Txn, parent: ObjectIdentity, query: Query, patch: Body, check: Check) -> int: ...
    def delete_matching(self, txn: Txn, parent: ObjectIdentity, query: Query, check: Check) -> int: ...
    def page(self, source: Store, parent: ObjectIdentity,
             query: Query) -> tuple[list[Body], tuple[str, str] | None]: ...


class Objects:
    """The objects of one top-level resource."""

    def __init__(self, model: type[Resource]) -> None:
        self.model = model
        self._global = "partition" not in model.identity

    def partition_of(self, identity: ObjectIdentity) -> str:
        """The partition whose write permission and read-only state govern the object."""
        return identity["name"] if self.model is Partition else identity.get("partition", GLOBAL)

    def stored(self, source: Source, identity: ObjectIdentity) -> Body:
        """The stored record; NotFound if there is none."""
        partition, name = store_key(self.model, identity)
        body = source.get(self.model.kind, partition, name)
        if body is None:
            where = f"/{partition}/{name}" if partition else name
            raise NotFound(f"{self.model.__name__} {where} does not exist", target=where)
        return body

    def read(self, source: Source, identity: ObjectIdentity) -> Body:
        return present(source, self.model.kind, self.stored(source, identity))

    def create(self, txn: Txn, obj: Resource, parent: ObjectIdentity, extra: Body | None) -> ObjectIdentity:
        partition, name = key_of(obj)
        if txn.exists(self.model.kind, partition, name):
            raise Conflict(f"{self.model.__name__} {name!r} already exists", target="name")
        obj = checked_certificate(obj, None)
        integrity.check_references(txn, obj)
        write_object(txn, obj, None, None, extra)
        return {field: getattr(obj, field) for field in self.model.identity}

    def created(self, source: Source, obj: Resource, identity: ObjectIdentity) -> Body:
        """The object just created, as presented (read back: presenting resolves it)."""
        return self.read(source, identity)

    def replace(self, txn: Txn, obj: Resource) -> bool:
        """Make the stored object equal to `obj` (writing nothing if it already is); False if there is none."""
        stored = txn.get(self.model.kind, *key_of(obj))
        if stored is None:
            return False
        obj = checked_certificate(obj, stored)
        integrity.check_references(txn, obj)
        current = model_fields(txn, self.model.kind, stored)
        if comparable(obj) != current:
            write_object(txn, obj, stored, current)
        return True

    def update(self, txn: Txn, identity: ObjectIdentity, patch: Body, extra: Body | None) -> None:
        stored = self.stored(txn, identity)
        for field in self.model.identity:
            if field in patch and patch[field] != stored.get(field):
                raise Invalid(f"{field} cannot be changed", target=field)
        current = model_fields(txn, self.model.kind, stored)
        obj = checked_certificate(validate(self.model, current | patch), stored)
        integrity.check_references(txn, obj)
        write_object(txn, obj, stored, current, extra)

    def delete(self, txn: Txn, identity: ObjectIdentity) -> None:
        partition, name = store_key(self.model, identity)
        self.stored(txn, identity)
        integrity.check_unreferenced(txn, self.model.kind, partition, name)
        if self.model is Partition:  # what it keeps beside its configuration goes with it
            for kind in (LEASES, CONFLICTS, FENCES):
                for record in list(txn.records(kind, partition=name)):
                    txn.delete(kind, name, record.name)
        txn.delete(self.model.kind, partition, name)

    def _matching(self, txn: Txn, query: Query) -> list[Body]:
        partition = GLOBAL if self._global else None
        kind = self.model.kind
        return [r.body for r in txn.records(kind, partition=partition) if query.matches(without_secrets(kind, r.body))]

    def update_matching(self, txn: Txn, parent: ObjectIdentity, query: Query, patch: Body, check: Check) -> int:
        matched = self._matching(txn, query)
        for body in matched:
            check(body)
            self.update(txn, body, patch, None)
        return len(matched)

    def delete_matching(self, txn: Txn, parent: ObjectIdentity, query: Query, check: Check) -> int:
        matched = self._matching(txn, query)
        for body in matched:
            check(body)
            self.delete(txn, body)
        return len(matched)

    def page(self, source: Store, parent: ObjectIdentity, query: Query) -> tuple[list[Body], tuple[str, str] | None]:
        partition = GLOBAL if self._global else None
        records: Iterator[tuple[tuple[str, str], Body]] = (
            ((r.partition, r.name), present(source, self.model.kind, r.body))
            for r in source.records(self.model.kind, partition=partition, after=query.after))
        return query.page(records, self.model.identity)
