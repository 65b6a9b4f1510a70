"""A pool's members as a resource of their own (`/api/pools/{partition}/{pool}/members/{address:port}`):
each change of one member is an overlay of the pool's unit (`units`), never a rewrite of the pool."""

from collections.abc import Iterator

from tandem.config import units
from tandem.config.objects import Check, ObjectIdentity, Objects, Source, Txn
from tandem.config.presentation import pool_members
from tandem.config.query import Query
from tandem.config.validation import validate
from tandem.errors import Conflict, Invalid, NotFound
from tandem.models import Pool, PoolMember, Resource
from tandem.models.fields import member_key, parse_member_key
from tandem.store import Body, Store

POOL_OBJECTS = Objects(Pool)


def stored_member(source: Source, pool: Body, key: str) -> Body | None:
    """The member `key` (`address:port`) of a stored pool, or None."""
    name = units.overlay_name(pool["name"], pool.get("incarnation", ""), key)
    return units.member_of(pool, source.record(units.OVERLAYS, pool["partition"], name), key)


def write_member(txn: Txn, pool: Body, key: str, member: Body | None) -> None:
    """Change one member of a stored pool (None: remove it), without the API's checks."""
    name = units.overlay_name(pool["name"], pool.get("incarnation", ""), key)
    txn.put(units.OVERLAYS, pool["partition"], name, {"member": member})


def _pool(identity: ObjectIdentity) -> ObjectIdentity:
    return {"partition": identity["partition"], "name": identity["pool"]}


def _key(identity: ObjectIdentity) -> str:
    """The member key of an identity (`member` from a URL, or `address` and `port`) as stored
    (`address:port`, the address normalized); NotFound if malformed."""
    try:
        if "member" in identity:
            return member_key(*parse_member_key(identity["member"]))
        return member_key(identity["address"], identity["port"])
    except (ValueError, TypeError) as error:
        raise NotFound(f"no member {identity.get('member')!r}: {error}", target="member") from None


def _check_identity(current: Body, patch: Body) -> None:
    for field in PoolMember.identity:
        if field in patch and patch[field] != current[field]:
            raise Invalid(f"{field} cannot be changed", target=field)


class PoolMembers:
    """The members of pools, one at a time."""

    model: type[Resource] = PoolMember

    def partition_of(self, identity: ObjectIdentity) -> str:
        return identity["partition"]

    def _existing(self, source: Source, identity: ObjectIdentity) -> tuple[Body, str, Body]:
        """The stored pool, the member's key and the member; NotFound for either."""
        pool = POOL_OBJECTS.stored(source, _pool(identity))
        key = _key(identity)
        member = stored_member(source, pool, key)
        if member is None:
            raise NotFound(f"pool /{identity['partition']}/{identity['pool']} has no member {key}", target="member")
        return pool, key, member

    def read(self, source: Source, identity: ObjectIdentity) -> Body:
        return self._existing(source, identity)[2]

    def create(self, txn: Txn, obj: Resource, parent: ObjectIdentity, extra: Body | None) -> ObjectIdentity:
        assert isinstance(obj, PoolMember)
        pool = POOL_OBJECTS.stored(txn, _pool(parent))
        key = member_key(obj.address, obj.port)
        if stored_member(txn, pool, key) is not None:
            raise Conflict(f"pool /{parent['partition']}/{parent['pool']} already has member {key}", target="address")
        write_member(txn, pool, key, obj.model_dump())
        return parent | {"member": key}

    def created(self, source: Source, obj: Resource, identity: ObjectIdentity) -> Body:
        """The member just created: as written (a member is presented as it is stored)."""
        return obj.model_dump()

    def update(self, txn: Txn, identity: ObjectIdentity, patch: Body, extra: Body | None) -> None:
        pool, key, current = self._existing(txn, identity)
        _check_identity(current, patch)
        write_member(txn, pool, key, validate(PoolMember, PoolMember.patched(current, patch)).model_dump())

    def delete(self, txn: Txn, identity: ObjectIdentity) -> None:
        pool, key, _ = self._existing(txn, identity)
        write_member(txn, pool, key, None)

    def _matching(self, txn: Txn, parent: ObjectIdentity, query: Query, check: Check) -> tuple[Body, dict[str, Body]]:
        """The stored pool and its members matching `query`, by key; the pool read once."""
        check(parent)
        pool = POOL_OBJECTS.stored(txn, _pool(parent))
        members = units.keyed(pool_members(txn, pool))
        return pool, {key: body for key, body in members.items() if query.matches(body)}

    def update_matching(self, txn: Txn, parent: ObjectIdentity, query: Query, patch: Body, check: Check) -> int:
        pool, matched = self._matching(txn, parent, query, check)
        for key, current in matched.items():
            _check_identity(current, patch)
            write_member(txn, pool, key, validate(PoolMember, PoolMember.patched(current, patch)).model_dump())
        return len(matched)

    def delete_matching(self, txn: Txn, parent: ObjectIdentity, query: Query, check: Check) -> int:
        pool, matched = self._matching(txn, parent, query, check)
        for key in matched:
            write_member(txn, pool, key, None)
        return len(matched)

    def page(self, source: Store, parent: ObjectIdentity, query: Query) -> tuple[list[Body], tuple[str, str] | None]:
        partition, pool_name = parent["partition"], parent["pool"]
        members = units.keyed(pool_members(source, POOL_OBJECTS.stored(source, _pool(parent))))
        records: Iterator[tuple[tuple[str, str], Body]] = (
            ((partition, f"{pool_name}/{key}"), body) for key, body in members.items()
            if query.after is None or (partition, f"{pool_name}/{key}") > query.after)
        return query.page(records, PoolMember.identity)
