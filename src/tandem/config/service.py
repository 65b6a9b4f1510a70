"""The configuration service: every create, read, update and delete of a resource goes through here.

Each operation runs in one store transaction (a batch: all its operations in one): it validates
the new state against the model and the references around it, then writes. A failed check raises
an `ApiError` and writes nothing. Every object records the stamp of its creation (`incarnation`);
a pool and its members are one unit (see `units`): the pool's record holds its member list, and a
change of one member alone is an overlay of its own. Each resource's objects are a `Collection`:
the top-level ones (`Objects`) and a pool's members (`PoolMembers`) answer the same calls.
"""

from collections.abc import Callable
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from tandem.config.fences import check_fence
from tandem.config.objects import Collection, ObjectIdentity, Objects, Txn, store_key
from tandem.config.pool_members import PoolMembers
from tandem.config.query import Query
from tandem.config.validation import invalid_from
from tandem.errors import ApiError, Conflict, Invalid, NotFound
from tandem.models import CONFIG_RESOURCES, Partition, PoolMember, Resource
from tandem.models.batch import BatchRequest, Operation
from tandem.models.partial import changes, patch_model
from tandem.store import Body, Store

M = TypeVar("M", bound=BaseModel)


def _body(model: type[M], data: Body) -> M:
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
    """Validated, atomic access to the configuration resources of one device. A child resource
    (`PoolMember`) takes its parent's identity as `parent` (`{"partition", "pool"}`)."""

    def __init__(self, store: Store, read_only: Callable[[str], str | None] = lambda partition: None,
                 managers: Callable[[str], list[str]] = lambda partition: []) -> None:
        self.store = store
        self.read_only = read_only
        """Why a partition may not be changed here (it is a peer cluster's mirror), or None."""
        self.managers = managers
        """The users a partition is assigned to (it cannot be deleted while it has any)."""
        self._collections: dict[type[Resource], Collection] = {model: Objects(model) for model in CONFIG_RESOURCES}
        self._collections[PoolMember] = PoolMembers()

    def _writable(self, collection: Collection, identity: ObjectIdentity) -> None:
        """Conflict if the object (or parent) `identity` names is in a partition read-only here."""
        locked = self.read_only(collection.partition_of(identity))
        if locked:
            raise Conflict(locked, target="partition")

    def _deletable(self, collection: Collection, identity: ObjectIdentity) -> None:
        """Conflict if the object may not be changed here, or is a partition some user is assigned to."""
        self._writable(collection, identity)
        managers = self.managers(identity["name"]) if collection is self._collections[Partition] else []
        if managers:
            raise Conflict(f"partition {identity['name']!r} is assigned to user {managers[0]!r}", target="name")

    def read(self, model: type[Resource], identity: ObjectIdentity) -> Body:
        """The object as presented; NotFound if there is none."""
        return self._collections[model].read(self.store, identity)

    def stored(self, model: type[Resource], identity: ObjectIdentity) -> Body | None:
        """The stored body of a top-level object, hidden fields included, or None."""
        return self.store.get(model.kind, *store_key(model, identity))

    def create(self, obj: Resource, extra: Body | None = None, parent: ObjectIdentity | None = None) -> Body:
        """Store a new object; `Conflict` if it exists. `extra` holds server-side fields."""
        with self.store.transaction() as txn:
            identity = self._create(txn, obj, extra, parent or {})
        return self._collections[type(obj)].created(self.store, obj, identity)

    def _create(self, txn: Txn, obj: Resource, extra: Body | None, parent: ObjectIdentity) -> ObjectIdentity:
        collection = self._collections[type(obj)]
        self._writable(collection, parent or {field: getattr(obj, field) for field in type(obj).identity})
        return collection.create(txn, obj, parent, extra)

    def _replace(self, txn: Txn, obj: Resource) -> None:
        """Create the object, or make the stored one equal to it (writing nothing if it already is)."""
        objects = self._collections[type(obj)]
        assert isinstance(objects, Objects)
        self._writable(objects, {field: getattr(obj, field) for field in type(obj).identity})
        if not objects.replace(txn, obj):
            objects.create(txn, obj, {}, None)

    def update(self, model: type[Resource], identity: ObjectIdentity, patch: Body, extra: Body | None = None) -> Body:
        """Merge `patch` into the stored object and store it if the result is valid."""
        with self.store.transaction() as txn:
            self._update(txn, model, identity, patch, extra)
        return self.read(model, identity)

    def _update(self, txn: Txn, model: type[Resource], identity: ObjectIdentity, patch: Body,
                extra: Body | None) -> None:
        collection = self._collections[model]
        self._writable(collection, identity)
        collection.update(txn, identity, patch, extra)

    def delete(self, model: type[Resource], identity: ObjectIdentity) -> None:
        """Delete an object; `Conflict` if something still refers to it."""
        with self.store.transaction() as txn:
            self._delete(txn, model, identity)

    def _delete(self, txn: Txn, model: type[Resource], identity: ObjectIdentity) -> None:
        collection = self._collections[model]
        self._deletable(collection, identity)
        collection.delete(txn, identity)

    def page(self, model: type[Resource], query: Query,
             parent: ObjectIdentity | None = None) -> tuple[list[Body], tuple[str, str] | None]:
        """One page of the collection matching `query`, and the cursor of the next page."""
        return self._collections[model].page(self.store, parent or {}, query)

    def update_matching(self, model: type[Resource], query: Query, patch: Body,
                        parent: ObjectIdentity | None = None) -> int:
        """Apply `patch` to every object matching `query`, all in one transaction; the count changed."""
        collection = self._collections[model]
        with self.store.transaction() as txn:
            return collection.update_matching(txn, parent or {}, query, patch,
                                              lambda identity: self._writable(collection, identity))

    def delete_matching(self, model: type[Resource], query: Query, parent: ObjectIdentity | None = None) -> int:
        """Delete every object matching `query`, all in one transaction; the count deleted."""
        collection = self._collections[model]
        with self.store.transaction() as txn:
            return collection.delete_matching(txn, parent or {}, query,
                                              lambda identity: self._deletable(collection, identity))

    # -- batches --------------------------------------------------------------------------------

    def apply_batch(self, request: BatchRequest) -> int | None:
        """Apply a batch in one transaction (all or none, on the writer); the id of the last log record
        written, None if nothing changed. A failure names its operation: `operations.3.body.port`."""
        with self.store.transaction() as txn:
            self.apply_operations(txn, request)
        return max((record.id for record in txn.logs.values()), default=None)

    def apply_operations(self, txn: Txn, request: BatchRequest) -> None:
        """Check a batch's fence, then apply its operations in order in `txn` (a transaction, or a draft); a
        failure names its operation."""
        if request.fence is not None:
            check_fence(txn, request.fence)
        for index, operation in enumerate(request.operations):
            try:
                self._apply(txn, operation)
            except ApiError as error:
                raise _located(error, index, operation) from None

    def _apply(self, txn: Txn, operation: Operation) -> None:
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
                self._create(txn, obj, None, {})
            else:
                self._replace(txn, obj)
