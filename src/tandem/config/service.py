"""The configuration service: every create, read, update and delete of a resource goes through here.

Each operation runs in one store transaction (a batch: all its operations in one): it validates
the new state against the model and the references around it, then writes. A failed check raises
an `ApiError` and writes nothing. Pool members are stored as objects of their own (`members`, named
`pool/address:port`) so that changes to different members never collide; a pool is presented with
them embedded.
"""

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from tandem.config import integrity
from tandem.config.query import Query
from tandem.config.validation import invalid_from, validate
from tandem.errors import ApiError, Conflict, Invalid, NotFound
from tandem.models import Partition, Pool, PoolMember, Resource, User
from tandem.models.batch import Operation
from tandem.models.fields import member_key, parse_member_key
from tandem.models.lease import LEASES
from tandem.models.partial import changes, patch_model
from tandem.store import GLOBAL, Store, Transaction

HIDDEN_FIELDS = {"password_hash"}
"""Stored but never presented."""
WRITE_ONLY_FIELDS = {"password"}
"""Accepted but never stored as given."""

M = TypeVar("M", bound=BaseModel)


def _store_key(model: type[Resource], identity: dict[str, Any]) -> tuple[str, str]:
    if model is PoolMember:
        raise TypeError("pool members are keyed by their pool")
    return (identity["partition"], identity["name"]) if "partition" in model.identity else (GLOBAL, identity["name"])


def _member_name(pool: str, address: str, port: int) -> str:
    return f"{pool}/{member_key(address, port)}"


def _stored_body(obj: Resource, extra: dict[str, Any] | None) -> dict[str, Any]:
    exclude = WRITE_ONLY_FIELDS | ({"members"} if isinstance(obj, Pool) else set())
    return obj.model_dump(exclude=exclude) | (extra or {})


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

    def __init__(self, store: Store) -> None:
        self.store = store
        self.read_only: Callable[[str], str | None] = lambda partition: None
        """Why a partition may not be changed here (it is a peer cluster's mirror), or None."""

    def _writable(self, model: type[Resource], partition: str, name: str) -> None:
        locked = self.read_only(name if model is Partition else partition)
        if locked:
            raise Conflict(locked, target="partition")

    # -- presentation ---------------------------------------------------------------------------

    def _present(self, model: type[Resource], body: dict[str, Any]) -> dict[str, Any]:
        shown = {k: v for k, v in body.items() if k not in HIDDEN_FIELDS}
        if model is Pool:
            prefix = f"{body['name']}/"
            shown["members"] = [r.body for r in self.store.records(PoolMember.kind, partition=body["partition"],
                                                                    prefix=prefix)]
        return shown

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
        partition, name = _store_key(model, obj.model_dump(include=set(model.identity)))
        self._writable(model, partition, name)
        if txn.exists(model.kind, partition, name):
            raise Conflict(f"{model.__name__} {name!r} already exists", target="name")
        integrity.check_references(txn, obj)
        txn.put(model.kind, partition, name, _stored_body(obj, extra))
        if isinstance(obj, Pool):
            self._put_members(txn, obj, [])
        return partition, name

    def _replace(self, txn: Transaction, obj: Resource) -> None:
        """Create the object, or make the stored one equal to it (writing nothing if it already is)."""
        model = type(obj)
        partition, name = _store_key(model, obj.model_dump(include=set(model.identity)))
        stored = txn.get(model.kind, partition, name)
        if stored is None:
            self._create(txn, obj, None)
            return
        self._writable(model, partition, name)
        integrity.check_references(txn, obj)
        body = _stored_body(obj, {k: v for k, v in stored.items() if k in HIDDEN_FIELDS})
        if body != stored:
            txn.put(model.kind, partition, name, body)
        if isinstance(obj, Pool):
            before = [r.body for r in txn.records(PoolMember.kind, partition=partition, prefix=f"{name}/")]
            self._put_members(txn, obj, before)

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
        current = {k: v for k, v in stored.items() if k not in HIDDEN_FIELDS}
        if model is Pool:
            current["members"] = [r.body for r in txn.records(PoolMember.kind, partition=partition,
                                                              prefix=f"{name}/")]
        obj = validate(model, current | patch)
        integrity.check_references(txn, obj)
        if isinstance(obj, User):
            integrity.check_admin_remains(txn, obj.name, obj.role)
        kept = {k: v for k, v in stored.items() if k in HIDDEN_FIELDS}
        txn.put(model.kind, partition, name, _stored_body(obj, kept | (extra or {})))
        if isinstance(obj, Pool) and "members" in patch:
            self._put_members(txn, obj, current["members"])

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
        if model is Pool:
            for member in list(txn.records(PoolMember.kind, partition=partition, prefix=f"{name}/")):
                txn.delete(PoolMember.kind, partition, member.name)
        if model is Partition:
            for lease in list(txn.records(LEASES, partition=name)):
                txn.delete(LEASES, name, lease.name)
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
        """Apply `operations` in order in one transaction (all or none); the id of the last commit written,
        None if nothing changed. A failure names its operation: `operations.3.body.port`."""
        with self.store.transaction() as txn:
            for index, operation in enumerate(operations):
                try:
                    self._apply(txn, operation)
                except ApiError as error:
                    raise _located(error, index, operation) from None
            return self.store.last_commit_id() if txn.commits else None

    def _apply(self, txn: Transaction, operation: Operation) -> None:
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

    def _put_members(self, txn: Transaction, pool: Pool, before: list[dict[str, Any]]) -> None:
        """Make the stored members of `pool` equal to `pool.members` (previously `before`)."""
        wanted: dict[str, dict[str, Any]] = {}
        for index, member in enumerate(pool.members):
            key = _member_name(pool.name, member.address, member.port)
            if key in wanted:
                raise Invalid(f"member {member_key(member.address, member.port)} is listed twice",
                              target=f"members.{index}")
            wanted[key] = member.model_dump()
        old = {_member_name(pool.name, m["address"], m["port"]): m for m in before}
        for key in old.keys() - wanted.keys():
            txn.delete(PoolMember.kind, pool.partition, key)
        for key, body in wanted.items():
            if old.get(key) != body:
                txn.put(PoolMember.kind, pool.partition, key, body)

    def _member_parts(self, txn: Transaction | Store, partition: str, pool: str, key: str) -> str:
        self._stored(txn, Pool, partition, pool)
        try:
            address, port = parse_member_key(key)
        except ValueError as error:
            raise NotFound(f"no member {key!r}: {error}", target="member") from None
        return _member_name(pool, address, port)

    def read_member(self, partition: str, pool: str, key: str) -> dict[str, Any]:
        name = self._member_parts(self.store, partition, pool, key)
        body = self.store.get(PoolMember.kind, partition, name)
        if body is None:
            raise NotFound(f"pool /{partition}/{pool} has no member {key}", target="member")
        return body

    def create_member(self, partition: str, pool: str, member: PoolMember) -> dict[str, Any]:
        self._writable(Pool, partition, pool)
        with self.store.transaction() as txn:
            self._stored(txn, Pool, partition, pool)
            name = _member_name(pool, member.address, member.port)
            if txn.exists(PoolMember.kind, partition, name):
                raise Conflict(f"pool /{partition}/{pool} already has member "
                               f"{member_key(member.address, member.port)}", target="address")
            body = member.model_dump()
            txn.put(PoolMember.kind, partition, name, body)
        return body

    def update_member(self, partition: str, pool: str, key: str, patch: dict[str, Any]) -> dict[str, Any]:
        self._writable(Pool, partition, pool)
        with self.store.transaction() as txn:
            name = self._member_parts(txn, partition, pool, key)
            stored = txn.get(PoolMember.kind, partition, name)
            if stored is None:
                raise NotFound(f"pool /{partition}/{pool} has no member {key}", target="member")
            self._check_member_identity(stored, patch)
            body = validate(PoolMember, stored | patch).model_dump()
            txn.put(PoolMember.kind, partition, name, body)
        return body

    def delete_member(self, partition: str, pool: str, key: str) -> None:
        self._writable(Pool, partition, pool)
        with self.store.transaction() as txn:
            name = self._member_parts(txn, partition, pool, key)
            if not txn.exists(PoolMember.kind, partition, name):
                raise NotFound(f"pool /{partition}/{pool} has no member {key}", target="member")
            txn.delete(PoolMember.kind, partition, name)

    def _matching_members(self, txn: Transaction, partition: str, pool: str, query: Query) -> list[str]:
        self._writable(Pool, partition, pool)
        self._stored(txn, Pool, partition, pool)
        return [r.name for r in txn.records(PoolMember.kind, partition=partition, prefix=f"{pool}/")
                if query.matches(r.body)]

    def update_matching_members(self, partition: str, pool: str, query: Query, patch: dict[str, Any]) -> int:
        """Apply `patch` to every member of the pool matching `query`, in one transaction."""
        with self.store.transaction() as txn:
            names = self._matching_members(txn, partition, pool, query)
            for name in names:
                stored = txn.get(PoolMember.kind, partition, name)
                assert stored is not None
                self._check_member_identity(stored, patch)
                txn.put(PoolMember.kind, partition, name, validate(PoolMember, stored | patch).model_dump())
        return len(names)

    def delete_matching_members(self, partition: str, pool: str, query: Query) -> int:
        """Remove every member of the pool matching `query`, in one transaction."""
        with self.store.transaction() as txn:
            names = self._matching_members(txn, partition, pool, query)
            for name in names:
                txn.delete(PoolMember.kind, partition, name)
        return len(names)

    @staticmethod
    def _check_member_identity(stored: dict[str, Any], patch: dict[str, Any]) -> None:
        for field in PoolMember.identity:
            if field in patch and patch[field] != stored[field]:
                raise Invalid(f"{field} cannot be changed", target=field)

    def page_members(self, partition: str, pool: str,
                     query: Query) -> tuple[list[dict[str, Any]], tuple[str, str] | None]:
        self._stored(self.store, Pool, partition, pool)
        records: Iterator[tuple[tuple[str, str], dict[str, Any]]] = (
            ((r.partition, r.name), r.body)
            for r in self.store.records(PoolMember.kind, partition=partition, prefix=f"{pool}/",
                                        after=query.after))
        return query.page(records, PoolMember.identity)
