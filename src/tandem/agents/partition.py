"""The agent's picture of its partition: every monitor, pool and virtual server in it, read from the
device and kept up to date with what the agent writes; read again after a move or a failed write."""

from dataclasses import dataclass
from typing import Any, Literal

from tandem.agents.objects import ORDER, ConfigObject, ObjectKey, comparable, owner_of, stored_form
from tandem.models import VirtualServer
from tandem.sdk import Client
from tandem.sdk.paging import records


@dataclass(frozen=True)
class Operation:
    """One change of a batch: replace an object by `body` (creating it if missing), or delete it."""

    action: Literal["replace", "delete"]
    resource: str
    partition: str
    name: str
    body: ConfigObject | None = None
    """The object as it is to be (None: a delete)."""

    @property
    def key(self) -> ObjectKey:
        return self.resource, self.name

    def json(self) -> dict[str, Any]:
        """The operation as `POST /api/batch` takes it."""
        operation = {"action": self.action, "resource": self.resource, "partition": self.partition, "name": self.name}
        if self.body is None:
            return operation
        return operation | {"body": self.body.model_dump(exclude=set(type(self.body).model_computed_fields))}


def read_partition(client: Client, partition: str) -> dict[ObjectKey, ConfigObject]:
    return {(resource, body["name"]): comparable(resource, body)
            for resource in ORDER for body in records(client, f"/api/{resource}", {"partition": partition})}


class PartitionState:
    """Objects of the partition by (resource, name), indexed by the service that owns them and by the
    destination of the virtual servers."""

    def __init__(self, partition: str, environment: str) -> None:
        self.partition = partition
        self.environment = environment
        self.objects: dict[ObjectKey, ConfigObject] = {}
        self._owned: dict[str, set[ObjectKey]] = {}
        self._at: dict[str, dict[int, VirtualServer]] = {}
        self.stale = True

    def load(self, objects: dict[ObjectKey, ConfigObject]) -> None:
        """Take what the device holds now."""
        self.objects, self._owned, self._at = {}, {}, {}
        for object_key, obj in objects.items():
            self._put(object_key, obj)
        self.stale = False

    def _put(self, object_key: ObjectKey, obj: ConfigObject) -> None:
        self._drop(object_key)
        self.objects[object_key] = obj
        key = owner_of(obj, self.environment)
        if key is not None:
            self._owned.setdefault(key, set()).add(object_key)
        if isinstance(obj, VirtualServer):
            self._at.setdefault(obj.address, {})[obj.port] = obj

    def _drop(self, object_key: ObjectKey) -> None:
        obj = self.objects.pop(object_key, None)
        if obj is None:
            return
        key = owner_of(obj, self.environment)
        if key is not None:
            self._owned[key].discard(object_key)
            if not self._owned[key]:
                del self._owned[key]
        if isinstance(obj, VirtualServer) and self._at.get(obj.address, {}).get(obj.port) is obj:
            del self._at[obj.address][obj.port]
            if not self._at[obj.address]:
                del self._at[obj.address]

    def owned(self) -> set[str]:
        """The services that have objects of this environment's agents."""
        return set(self._owned)

    def owns(self, key: str) -> bool:
        """Whether the service `key` has objects of this environment's agents."""
        return key in self._owned

    def at(self, address: str) -> dict[int, VirtualServer]:
        """The virtual servers at `address`, by port."""
        return self._at.get(address, {})

    def address_of(self, key: str) -> str | None:
        """The address the service's virtual servers have now, if it has any."""
        for object_key in self._owned.get(key, ()):
            obj = self.objects[object_key]
            if isinstance(obj, VirtualServer):
                return obj.address
        return None

    def plan(self, key: str, wanted: dict[ObjectKey, ConfigObject]) -> tuple[list[Operation], str | None]:
        """The operations that make the service's objects `wanted` (none: remove them); or a problem if
        one of its names is taken by an object that is not this environment's."""
        have = {k: self.objects[k] for k in self._owned.get(key, ())}
        for object_key in wanted.keys() - have.keys():
            if object_key in self.objects:
                return [], f"{object_key[0]} {object_key[1]} exists in {self.partition} and is not the agent's"
        # the very object written last is the same without comparing (pools of ten members compared field by
        # field were a part of a takeover's planning, bench/agent.py agent_takeover_s)
        upserts = [self._operation("replace", k, obj) for k, obj in wanted.items()
                   if have.get(k) is not obj and have.get(k) != stored_form(obj)]
        deletes = [self._operation("delete", k) for k in have.keys() - wanted.keys()]
        upserts.sort(key=lambda op: ORDER.index(op.resource))
        deletes.sort(key=lambda op: -ORDER.index(op.resource))
        return upserts + deletes, None

    def _operation(self, action: Literal["replace", "delete"], object_key: ObjectKey,
                   body: ConfigObject | None = None) -> Operation:
        return Operation(action, object_key[0], self.partition, object_key[1], body)

    def applied(self, operations: list[Operation]) -> None:
        """Take operations the device accepted."""
        for operation in operations:
            if operation.body is None:  # a delete
                self._drop(operation.key)
            else:
                self._put(operation.key, stored_form(operation.body))


def ordered(operations: list[Operation]) -> list[Operation]:
    """Operations of several services as one batch: creations in dependency order, then deletions."""
    upserts = [op for op in operations if op.action != "delete"]
    deletes = [op for op in operations if op.action == "delete"]
    return (sorted(upserts, key=lambda op: ORDER.index(op.resource))
            + sorted(deletes, key=lambda op: -ORDER.index(op.resource)))
