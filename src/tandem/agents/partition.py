"""The agent's picture of its partition: every monitor, pool and virtual server in it, read from the
device and kept up to date with what the agent writes; read again after a move or a failed write."""

from typing import Any

from tandem.agents.objects import ORDER, ObjectKey, comparable, owner_of
from tandem.models import VirtualServer
from tandem.sdk import Client
from tandem.sdk.paging import records

Operation = dict[str, Any]


def read_partition(client: Client, partition: str) -> dict[ObjectKey, dict[str, Any]]:
    return {(resource, body["name"]): comparable(resource, body)
            for resource in ORDER for body in records(client, f"/api/{resource}", {"partition": partition})}


class PartitionState:
    """Objects of the partition by (resource, name), indexed by the service that owns them and by the
    destination of the virtual servers."""

    def __init__(self, partition: str, environment: str) -> None:
        self.partition = partition
        self.environment = environment
        self.objects: dict[ObjectKey, dict[str, Any]] = {}
        self._owned: dict[str, set[ObjectKey]] = {}
        self._destinations: dict[tuple[str, int], dict[str, Any]] = {}
        self.stale = True

    def load(self, objects: dict[ObjectKey, dict[str, Any]]) -> None:
        """Take what the device holds now."""
        self.objects, self._owned, self._destinations = {}, {}, {}
        for object_key, body in objects.items():
            self._put(object_key, body)
        self.stale = False

    def _put(self, object_key: ObjectKey, body: dict[str, Any]) -> None:
        self._drop(object_key)
        self.objects[object_key] = body
        key = owner_of(body, self.environment)
        if key is not None:
            self._owned.setdefault(key, set()).add(object_key)
        if object_key[0] == VirtualServer.kind:
            self._destinations[(body["address"], body["port"])] = body

    def _drop(self, object_key: ObjectKey) -> None:
        body = self.objects.pop(object_key, None)
        if body is None:
            return
        key = owner_of(body, self.environment)
        if key is not None:
            self._owned[key].discard(object_key)
            if not self._owned[key]:
                del self._owned[key]
        if object_key[0] == VirtualServer.kind and self._destinations.get((body["address"], body["port"])) is body:
            del self._destinations[(body["address"], body["port"])]

    def owned(self) -> set[str]:
        """The services that have objects of this environment's agents."""
        return set(self._owned)

    def destinations(self) -> dict[tuple[str, int], dict[str, Any]]:
        """Every virtual server of the partition by its address and port."""
        return self._destinations

    def address_of(self, key: str) -> str | None:
        """The address the service's virtual servers have now, if it has any."""
        return next((self.objects[k]["address"] for k in self._owned.get(key, ()) if k[0] == VirtualServer.kind),
                    None)

    def plan(self, key: str, wanted: dict[ObjectKey, dict[str, Any]]) -> tuple[list[Operation], str | None]:
        """The operations that make the service's objects `wanted` (none: remove them); or a problem if
        one of its names is taken by an object that is not this environment's."""
        have = {k: self.objects[k] for k in self._owned.get(key, ())}
        for object_key in wanted.keys() - have.keys():
            if object_key in self.objects:
                return [], f"{object_key[0]} {object_key[1]} exists in {self.partition} and is not the agent's"
        upserts = [self._operation("replace", k, body) for k, body in wanted.items() if have.get(k) != body]
        deletes = [self._operation("delete", k) for k in have.keys() - wanted.keys()]
        upserts.sort(key=lambda op: ORDER.index(op["resource"]))
        deletes.sort(key=lambda op: -ORDER.index(op["resource"]))
        return upserts + deletes, None

    def _operation(self, action: str, object_key: ObjectKey, body: dict[str, Any] | None = None) -> Operation:
        operation = {"action": action, "resource": object_key[0], "partition": self.partition, "name": object_key[1]}
        return operation | ({"body": body} if body is not None else {})

    def applied(self, operations: list[Operation]) -> None:
        """Take operations the device accepted."""
        for operation in operations:
            object_key = (operation["resource"], operation["name"])
            if operation["action"] == "delete":
                self._drop(object_key)
            else:
                self._put(object_key, operation["body"])


def ordered(operations: list[Operation]) -> list[Operation]:
    """Operations of several services as one batch: creations in dependency order, then deletions."""
    upserts = [op for op in operations if op["action"] != "delete"]
    deletes = [op for op in operations if op["action"] == "delete"]
    return (sorted(upserts, key=lambda op: ORDER.index(op["resource"]))
            + sorted(deletes, key=lambda op: -ORDER.index(op["resource"])))
