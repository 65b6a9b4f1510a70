"""The configuration service: every create, read, update and delete of a resource goes through here.

Each operation runs in one store transaction (a batch: all its operations in one): it validates
the new state against the model and the references around it, then writes. A failed check raises
an `ApiError` and writes nothing. Every object records the stamp of its creation (`incarnation`);
a pool and its members are one unit (see `units`): the pool's record holds its member list, and a
change of one member alone is an overlay of its own.
"""

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from tandem.config import integrity, units
from tandem.config.presentation import HIDDEN_FIELDS, pool_members, present
from tandem.config.query import Query
from tandem.config.validation import invalid_from, validate
from tandem.errors import ApiError, Conflict, Invalid, NotFound
from tandem.models import Partition, Pool, PoolMember, Resource, User
from tandem.models.batch import Operation
from tandem.models.conflict import CONFLICTS
from tandem.models.fields import member_key, parse_member_key
from tandem.models.lease import LEASES
from tandem.models.partial import changes, patch_model
from tandem.store import GLOBAL, Store, Transaction
from tandem.store.draft import Draft

WRITE_ONLY_FIELDS = {"password"}
"""Accepted but never stored as given."""

M = TypeVar("M", bound=BaseModel)


def _store_key(model: type[Resource], identity: dict[str, Any]) -> tuple[str, str]:
    if model is PoolMember:
        raise TypeError("pool members are keyed by their pool")
    return (identity["partition"], identity["name"]) if "partition" in model.identity else (GLOBAL, identity["name"])


def _key_of(obj: Resource) -> tuple[str, str]:
    """Where `obj` is stored: (partition, name)."""
    model = type(obj)
    return _store_key(model, {field: getattr(obj, field) for field in model.identity})


def _stored_body(obj: Resource, extra: dict[str, Any] | None) -> dict[str, Any]:
    exclude = WRITE_ONLY_FIELDS | ({"members"} if isinstance(obj, Pool) else set())
    return obj.model_dump(exclude=exclude) | (extra or {})


def write_object(txn: Transaction, obj: Resource, stored: dict[str, Any] | None, current: dict[str, Any] | None,
                 extra: dict[str, Any] | None = None) -> None:
    """Store `obj`, new (`stored` None: it gets its incarnation) or over its `stored` record (presented as
    `current`, whose hidden fields it keeps), without the API's checks; `extra`: server-side fields."""
    model = type(obj)
    partition, name = _key_of(obj)
    stamp = txn.stamp()
    kept = {k: v for k, v in (stored or {}).items() if k in HIDDEN_FIELDS}
    body = _stored_body(obj, kept | (extra or {}))
    body.setdefault("incarnation", str(stamp))
    if isinstance(obj, Pool):
        body = units.stored_pool(obj, body, stamp, stored, current["members"] if current else [])
    txn.put(model.kind, partition, name, body, stamp)


def stored_member(reader: Transaction | Store, pool: dict[str, Any], key: str) -> dict[str, Any] | None:
    """The member `key` (`address:port`) of a stored pool, or None."""
    name = units.overlay_name(pool["name"], pool.get("incarnation", ""), key)
    return units.member_of(pool, reader.record(units.OVERLAYS, pool["partition"], name), key)


def write_member(txn: Transaction, pool: dict[str, Any], key: str, member: dict[str, Any] | None) -> None:
    """Change one member of a stored pool (None: remove it), without the API's checks."""
    name = units.overlay_name(pool["name"], pool.get("incarnation", ""), key)
    txn.put(units.OVERLAYS, pool["partition"], name, {"member": member})


def comparable(obj: Resource) -> dict[str, Any]:
    """`obj` as it would be presented once stored (members in their stored order)."""
    shown = obj.model_dump(exclude=WRITE_ONLY_FIELDS)
    if isinstance(obj, Pool):
        shown["members"] = units.member_list(obj)
    return shown


def _normalized_key(key: str) -> str:
    """A member key from a URL as stored (`address:port`, the address normalized); NotFound if malformed."""
    try:
        return member_key(*parse_member_key(key))
    except ValueError as error:
        raise NotFound(f"no member {key!r}: {error}", target="member") from None


def _body(model: type[M], data: dict[str, Any]) -> M:
    """`data` as a `model`, or `Invalid` naming the field of the operation's body at fault."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise invalid_from(error, ("body",)) from None


def _located(error: ApiError, index: int, operation: Operation) -> ApiError:
    """`error` of the operation at `index`, its target made relative to the batch request: the
    operation's own `partition` and `name`, else a field of its body."""
    target = error.target
    if isinstance(error, NotFound) or not target:
        where = f"operations.{index}"
    elif target.startswith("body.") or target in ("partition", "name"):
        where = f"operations.{index}.{target}"
    else:
        where = f"operations.{index}.body.{target}"
    path = "/".join(operation.object_identity().values())
    message = f"operation {index} ({operation.action} {operation.resource} {path}): {error.message}"
    return type(error)(message, target=where)


class ConfigService:
    """Validated, atomic access to the configuration resources of one device."""

    def __init__(self, store: Store, read_only: Callable[[str], str | None] = lambda partition: None) -> None:
        self.store = store
        self.read_only = read_only
        """Why a partition may not be changed here (it is a peer cluster's mirror), or None."""

    def _writable(self, model: type[Resource], partition: str, name: str) -> None:
        locked = self.read_only(name if model is Partition else partition)
        if locked:
            raise Conflict(locked, target="partition")

    # -- presentation ---------------------------------------------------------------------------

    def _present(self, model: type[Resource], body: dict[str, Any],
                 reader: Transaction | Store | None = None) -> dict[str, Any]:
        return present(reader or self.store, model.kind, body)

    def _stored(self, txn: Transaction | Store, model: type[Resource], partition: str, name: str) -> dict[str, Any]:
        body = txn.get(model.kind, partition, name)
        if body is None:
            where = f"/{partition}/{name}" if partition else name
            raise NotFound(f"{model.__name__} {where} does not exist", target=where)
        return body

    # -- resources --------------------------------------------------------------------------------

    def read(self, model: type[Resource], identity: dict[str, Any]) -> dict[str, Any]:
        partition, name = _store_key(model, identity)
        return self._present(model, self._stored(self.store, model, partition, name))

    def stored(self, model: type[Resource], identity: dict[str, Any]) -> dict[str, Any] | None:
        """The stored body, hidden fields included, or None."""
        return self.store.get(model.kind, *_store_key(model, identity))

    def create(self, obj: Resource, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Store a new object; `Conflict` if the name is taken. `extra` holds server-side fields."""
        with self.store.transaction() as txn:
            partition, name = self._create(txn, obj, extra)
        return self.read(type(obj), {"partition": partition, "name": name})

    def _create(self, txn: Transaction, obj: Resource, extra: dict[str, Any] | None) -> tuple[str, str]:
        model = type(obj)
        partition, name = _key_of(obj)
        self._writable(model, partition, name)
        if txn.exists(model.kind, partition, name):
            raise Conflict(f"{model.__name__} {name!r} already exists", target="name")
        integrity.check_references(txn, obj)
        write_object(txn, obj, None, None, extra)
        return partition, name

    def _replace(self, txn: Transaction, obj: Resource) -> None:
        """Create the object, or make the stored one equal to it (writing nothing if it already is)."""
        model = type(obj)
        partition, name = _key_of(obj)
        stored = txn.get(model.kind, partition, name)
        if stored is None:
            self._create(txn, obj, None)
            return
        self._writable(model, partition, name)
        integrity.check_references(txn, obj)
        current = self._present(model, stored, txn)
        if comparable(obj) != current:
            write_object(txn, obj, stored, current)

    def update(self, model: type[Resource], identity: dict[str, Any], patch: dict[str, Any],
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Merge `patch` into the stored object and store it if the result is valid."""
        with self.store.transaction() as txn:
            self._update(txn, model, identity, patch, extra)
        return self.read(model, identity)

    def _update(self, txn: Transaction, model: type[Resource], identity: dict[str, Any], patch: dict[str, Any],
                extra: dict[str, Any] | None) -> None:
        partition, name = _store_key(model, identity)
        self._writable(model, partition, name)
        stored = self._stored(txn, model, partition, name)
        for field in model.identity:
            if field in patch and patch[field] != stored.get(field):
                raise Invalid(f"{field} cannot be changed", target=field)
        current = self._present(model, stored, txn)
        obj = validate(model, current | patch)
        integrity.check_references(txn, obj)
        if isinstance(obj, User):
            integrity.check_admin_remains(txn, obj.name, obj.role)
        write_object(txn, obj, stored, current, extra)

    def delete(self, model: type[Resource], identity: dict[str, Any]) -> None:
        """Delete an object; `Conflict` if something still refers to it."""
        with self.store.transaction() as txn:
            self._delete(txn, model, identity)

    def _delete(self, txn: Transaction, model: type[Resource], identity: dict[str, Any]) -> None:
        partition, name = _store_key(model, identity)
        self._writable(model, partition, name)
        self._stored(txn, model, partition, name)
        integrity.check_unreferenced(txn, model.kind, partition, name)
        if model is User:
            integrity.check_admin_remains(txn, name, None)
        if model is Partition:  # what it keeps beside its configuration goes with it
            for kind in (LEASES, CONFLICTS):
                for record in list(txn.records(kind, partition=name)):
                    txn.delete(kind, name, record.name)
        txn.delete(model.kind, partition, name)

    def page(self, model: type[Resource], query: Query) -> tuple[list[dict[str, Any]], tuple[str, str] | None]:
        """One page of the collection matching `query`, and the cursor of the next page."""
        partition = GLOBAL if "partition" not in model.identity else None
        records = ((((r.partition, r.name)), self._present(model, r.body))
                   for r in self.store.records(model.kind, partition=partition, after=query.after))
        return query.page(records, model.identity)

    def _matching(self, txn: Transaction, model: type[Resource], query: Query) -> list[dict[str, Any]]:
        partition = GLOBAL if "partition" not in model.identity else None
        return [r.body for r in txn.records(model.kind, partition=partition) if query.matches(r.body)]

    def update_matching(self, model: type[Resource], query: Query, patch: dict[str, Any]) -> int:
        """Apply `patch` to every object matching `query`, all in one transaction; the count changed."""
        with self.store.transaction() as txn:
            matched = self._matching(txn, model, query)
            for body in matched:
                self._update(txn, model, body, patch, None)
        return len(matched)

    def delete_matching(self, model: type[Resource], query: Query) -> int:
        """Delete every object matching `query`, all in one transaction; the count deleted."""
        with self.store.transaction() as txn:
            matched = self._matching(txn, model, query)
            for body in matched:
                self._delete(txn, model, body)
        return len(matched)

    # -- batches --------------------------------------------------------------------------------

    def apply_batch(self, operations: list[Operation]) -> int | None:
        """Apply `operations` in order in one transaction (all or none, on the writer); the id of the last
        log record written, None if nothing changed. A failure names its operation: `operations.3.body.port`."""
        with self.store.transaction() as txn:
            self.apply_operations(txn, operations)
        return max((record.id for record in txn.logs.values()), default=None)

    def apply_operations(self, txn: Transaction | Draft, operations: list[Operation]) -> None:
        """Apply operations in order in `txn` (a transaction, or a draft); a failure names its operation."""
        for index, operation in enumerate(operations):
            try:
                self._apply(txn, operation)
            except ApiError as error:
                raise _located(error, index, operation) from None

    def _apply(self, txn: Transaction | Draft, operation: Operation) -> None:
        model, identity = operation.model, operation.object_identity()
        for field, value in identity.items():
            if operation.body.get(field, value) != value:
                raise Invalid(f"{field} must be the operation's {field}, {value!r}", target=f"body.{field}")
        if operation.action == "delete":
            self._delete(txn, model, identity)
        elif operation.action == "update":
            self._update(txn, model, identity, changes(_body(patch_model(model), operation.body)), None)
        else:
            obj = _body(model, operation.body | identity)
            if operation.action == "create":
                self._create(txn, obj, None)
            else:
                self._replace(txn, obj)

    # -- pool members ---------------------------------------------------------------------------

    def _pool_members(self, reader: Transaction | Store, partition: str,
                      pool: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """A stored pool and its members by `address:port`; NotFound if there is no such pool."""
        stored = self._stored(reader, Pool, partition, pool)
        return stored, units.keyed(pool_members(reader, stored))

    def _existing_member(self, reader: Transaction | Store, partition: str, pool: str,
                         key: str) -> tuple[dict[str, Any], str, dict[str, Any]]:
        """A stored pool, the member key from a URL as stored, and that member; NotFound for either."""
        stored = self._stored(reader, Pool, partition, pool)
        key = _normalized_key(key)
        member = stored_member(reader, stored, key)
        if member is None:
            raise NotFound(f"pool /{partition}/{pool} has no member {key}", target="member")
        return stored, key, member

    def read_member(self, partition: str, pool: str, key: str) -> dict[str, Any]:
        return self._existing_member(self.store, partition, pool, key)[2]

    def create_member(self, partition: str, pool: str, member: PoolMember) -> dict[str, Any]:
        self._writable(Pool, partition, pool)
        key = member_key(member.address, member.port)
        with self.store.transaction() as txn:
            stored = self._stored(txn, Pool, partition, pool)
            if stored_member(txn, stored, key) is not None:
                raise Conflict(f"pool /{partition}/{pool} already has member {key}", target="address")
            body = member.model_dump()
            write_member(txn, stored, key, body)
        return body

    def update_member(self, partition: str, pool: str, key: str, patch: dict[str, Any]) -> dict[str, Any]:
        self._writable(Pool, partition, pool)
        with self.store.transaction() as txn:
            stored, key, current = self._existing_member(txn, partition, pool, key)
            self._check_member_identity(current, patch)
            body = validate(PoolMember, current | patch).model_dump()
            write_member(txn, stored, key, body)
        return body

    def delete_member(self, partition: str, pool: str, key: str) -> None:
        self._writable(Pool, partition, pool)
        with self.store.transaction() as txn:
            stored, key, _ = self._existing_member(txn, partition, pool, key)
            write_member(txn, stored, key, None)

    def _matching_members(self, txn: Transaction, partition: str, pool: str,
                          query: Query) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        self._writable(Pool, partition, pool)
        stored, members = self._pool_members(txn, partition, pool)
        return stored, {key: body for key, body in members.items() if query.matches(body)}

    def update_matching_members(self, partition: str, pool: str, query: Query, patch: dict[str, Any]) -> int:
        """Apply `patch` to every member of the pool matching `query`, in one transaction."""
        with self.store.transaction() as txn:
            stored, matched = self._matching_members(txn, partition, pool, query)
            for key, current in matched.items():
                self._check_member_identity(current, patch)
                write_member(txn, stored, key, validate(PoolMember, current | patch).model_dump())
        return len(matched)

    def delete_matching_members(self, partition: str, pool: str, query: Query) -> int:
        """Remove every member of the pool matching `query`, in one transaction."""
        with self.store.transaction() as txn:
            stored, matched = self._matching_members(txn, partition, pool, query)
            for key in matched:
                write_member(txn, stored, key, None)
        return len(matched)

    @staticmethod
    def _check_member_identity(stored: dict[str, Any], patch: dict[str, Any]) -> None:
        for field in PoolMember.identity:
            if field in patch and patch[field] != stored[field]:
                raise Invalid(f"{field} cannot be changed", target=field)

    def page_members(self, partition: str, pool: str,
                     query: Query) -> tuple[list[dict[str, Any]], tuple[str, str] | None]:
        _, members = self._pool_members(self.store, partition, pool)
        records: Iterator[tuple[tuple[str, str], dict[str, Any]]] = (
            ((partition, f"{pool}/{key}"), body) for key, body in members.items()
            if query.after is None or (partition, f"{pool}/{key}") > query.after)
        return query.page(records, PoolMember.identity)
