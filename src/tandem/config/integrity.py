"""Referential integrity: what an object refers to must exist, and what is referred to stays."""

from tandem.errors import Conflict, Invalid
from tandem.models import DEFAULT_PARTITION, Monitor, Partition, Pool, Resource, User, VirtualServer
from tandem.models.fields import resolve_reference
from tandem.store import GLOBAL, Transaction

PARTITIONED_KINDS = (Monitor.kind, Pool.kind, VirtualServer.kind)


def check_references(txn: Transaction, obj: Resource) -> None:
    """Raise `Invalid` naming the field whose target is missing, `Conflict` for a taken destination."""
    partition = getattr(obj, "partition", None)
    if partition is not None and not txn.exists(Partition.kind, GLOBAL, partition):
        raise Invalid(f"partition {partition!r} does not exist", target="partition")
    if isinstance(obj, Pool) and obj.monitor:
        _require(txn, Monitor.kind, partition, obj.monitor, "monitor")
    if isinstance(obj, VirtualServer):
        if obj.pool:
            _require(txn, Pool.kind, partition, obj.pool, "pool")
        for other_partition, other_name in txn.referencing(VirtualServer.kind, "address", obj.address):
            if (other_partition, other_name) == (obj.partition, obj.name):
                continue
            other = txn.get(VirtualServer.kind, other_partition, other_name)
            if other and other["port"] == obj.port:
                raise Conflict(f"destination {obj.address}:{obj.port} is already used by virtual server "
                               f"/{other_partition}/{other_name}", target="port")
    if isinstance(obj, User):
        for name in obj.partitions:
            if not txn.exists(Partition.kind, GLOBAL, name):
                raise Invalid(f"partition {name!r} does not exist", target="partitions")


def _require(txn: Transaction, kind: str, partition: str, reference: str, field: str) -> None:
    ref_partition, ref_name = resolve_reference(partition, reference)
    if not txn.exists(kind, ref_partition, ref_name):
        raise Invalid(f"{field} /{ref_partition}/{ref_name} does not exist", target=field)


def check_unreferenced(txn: Transaction, kind: str, partition: str, name: str) -> None:
    """Raise `Conflict` if deleting this object would leave a reference dangling."""
    if kind == Partition.kind:
        if name == DEFAULT_PARTITION:
            raise Conflict(f"the {DEFAULT_PARTITION} partition cannot be deleted", target="name")
        for child_kind in PARTITIONED_KINDS:
            for _record in txn.records(child_kind, partition=name):
                raise Conflict(f"partition {name!r} still holds {child_kind}; delete them first", target="name")
        for user in txn.records(User.kind, partition=GLOBAL):
            if name in user.body.get("partitions", []):
                raise Conflict(f"partition {name!r} is assigned to user {user.name!r}", target="name")
    elif kind == Monitor.kind:
        _unreferenced(txn, Pool.kind, "monitor", partition, name, "monitor")
    elif kind == Pool.kind:
        _unreferenced(txn, VirtualServer.kind, "pool", partition, name, "pool")


def _unreferenced(txn: Transaction, by_kind: str, field: str, partition: str, name: str, what: str) -> None:
    users = txn.referencing(by_kind, field, name, partition) + txn.referencing(by_kind, field, f"/{partition}/{name}")
    if users:
        user_partition, user_name = users[0]
        raise Conflict(f"{what} /{partition}/{name} is used by {by_kind[:-1]} /{user_partition}/{user_name}",
                       target="name")


def check_admin_remains(txn: Transaction, changed_user: str, new_role: str | None) -> None:
    """Raise `Conflict` if a change would leave the device without an admin."""
    admins = [u.name for u in txn.records(User.kind, partition=GLOBAL) if u.body["role"] == "admin"]
    if admins == [changed_user] and new_role != "admin":
        raise Conflict("the last admin cannot be removed or demoted", target="role")
