"""The users of the trust domain: created once and valid on every member. Their records (role, partitions,
argon2 password hash) replicate with the domain's, over the mutual-TLS peer channel; a change wins on every
member by its stamp, as every domain record does. Sessions (tokens) stay per device: a change of a user, here or
on another member, ends that user's sessions on this device.

A release before this one kept users per device, as configuration objects. `carry_over` moves them into the
domain when a device first opens its store under this release, each with the stamp of its last change: where
two members had a user of the same name, the one changed last is the domain's on every member."""

import logging
from collections.abc import Callable

from tandem.config.validation import validate
from tandem.errors import Conflict, Invalid, NotFound
from tandem.models import User
from tandem.models.cluster import UserRecord
from tandem.store import Store
from tandem.store.database import GLOBAL
from tandem.trust.domain import Domain

log = logging.getLogger("tandem.users")

LOCAL_KIND = "users"
"""Where the release before kept each device's users (configuration objects of no partition)."""


class Users:
    """Create, read, change and delete the domain's users; `lookup` is what logins check."""

    def __init__(self, domain: Domain, partitions: Callable[[], set[str]], forget: Callable[[str], None]) -> None:
        """`partitions`: the partitions of this device; `forget(name)`: end a user's sessions here."""
        self._domain = domain
        self._partitions = partitions
        self._forget = forget
        self._seen = {user.name: user for user in domain.users()}

    def lookup(self, name: str) -> dict | None:
        """The user's record, password hash included (None: no such user)."""
        user = self._domain.user(name)
        return user.model_dump() if user else None

    def all(self) -> list[dict]:
        return [user.public() for user in self._domain.users()]

    def get(self, name: str) -> dict:
        return self._existing(name).public()

    def assigned(self, partition: str) -> list[str]:
        """The managers of `partition`."""
        return [user.name for user in self._domain.users() if partition in user.partitions]

    def assignments(self) -> dict[str, str]:
        """Each partition assigned to a user, with the first of them."""
        out: dict[str, str] = {}
        for user in self._domain.users():
            for partition in user.partitions:
                out.setdefault(partition, user.name)
        return out

    def create(self, user: User, password_hash: str) -> dict:
        if self._domain.user(user.name) is not None:
            raise Conflict(f"user {user.name!r} already exists", target="name")
        self._check_partitions(user)
        record = UserRecord(name=user.name, role=user.role, partitions=user.partitions,
                            description=user.description, password_hash=password_hash)
        self._domain.put_user(record)
        return record.public()

    def update(self, name: str, patch: dict, password_hash: str | None) -> dict:
        """Change a user (`patch`: fields of `User` but its password; `password_hash`: a new password's)."""
        current = self._existing(name)
        if patch.get("name", name) != name:
            raise Invalid("name cannot be changed", target="name")
        changed = validate(User, current.public() | patch)
        self._check_partitions(changed, already=set(current.partitions))
        if current.role == "admin" and changed.role != "admin":
            self._check_admin_remains(name)
        record = UserRecord(name=name, role=changed.role, partitions=changed.partitions,
                            description=changed.description, password_hash=password_hash or current.password_hash)
        self._domain.put_user(record)
        self.domain_changed()
        return record.public()

    def delete(self, name: str) -> None:
        current = self._existing(name)
        if current.role == "admin":
            self._check_admin_remains(name)
        self._domain.delete_user(name)
        self.domain_changed()

    def domain_changed(self) -> None:
        """The domain changed (here or by a merge): end the sessions of every user changed or gone."""
        now = {user.name: user for user in self._domain.users()}
        for name in self._seen.keys() | now.keys():
            if self._seen.get(name) != now.get(name):
                self._forget(name)
        self._seen = now

    def _existing(self, name: str) -> UserRecord:
        user = self._domain.user(name)
        if user is None:
            raise NotFound(f"user {name!r} does not exist", target="name")
        return user

    def _check_partitions(self, user: User, already: frozenset[str] | set[str] = frozenset()) -> None:
        """Invalid if a partition newly given to `user` does not exist on this device (one it had already may
        exist only on the members of another group)."""
        missing = sorted(set(user.partitions) - already - self._partitions())
        if missing:
            raise Invalid(f"partition {missing[0]!r} does not exist", target="partitions")

    def _check_admin_remains(self, name: str) -> None:
        if [user.name for user in self._domain.users() if user.role == "admin"] == [name]:
            raise Conflict("the last admin cannot be removed or demoted", target="role")


def carry_over(store: Store, domain: Domain) -> list[str]:
    """Move the users a release before kept on this device into the domain; the names moved."""
    local = list(store.records(LOCAL_KIND, partition=GLOBAL))
    if not local:
        return []
    moved = []
    for record in local:
        body = record.body
        kept = domain.user_stamp(record.name)
        if kept is None or kept < (record.stamp.hlc, record.stamp.origin):
            domain.put_user(UserRecord(name=record.name, role=body["role"], partitions=body.get("partitions", []),
                                       description=body.get("description", ""),
                                       password_hash=body["password_hash"]),
                             stamp=(record.stamp.hlc, record.stamp.origin))
            moved.append(record.name)
    with store.transaction() as txn:
        for record in local:
            txn.delete(LOCAL_KIND, GLOBAL, record.name)
    log.info("users of this device moved into the trust domain: %s", ", ".join(moved) or "none (the domain's won)")
    return moved
