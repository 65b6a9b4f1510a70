"""The shapes of the peer messages that change this device's state, checked before they are applied.

Peers are trusted devices, but a message from a buggy or newer peer must not corrupt the store:
a message that does not fit is dropped whole, logged and counted.
"""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from tandem.models import CONFIG_RESOURCES, PoolMember
from tandem.models.conflict import CONFLICTS
from tandem.models.lease import LEASES
from tandem.store.digest import BUCKETS

Id = Annotated[str, Field(min_length=1, max_length=64)]
Seq = Annotated[int, Field(ge=1)]
Kind = Literal[(*(m.kind for m in (*CONFIG_RESOURCES, PoolMember)), LEASES, CONFLICTS)]  # type: ignore[valid-type]
"""The kinds of objects that replicate: configuration, and the leases and conflict records kept in its
partitions."""
Vector = dict[Id, Annotated[int, Field(ge=0)]]


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Version(_Message):
    """An object version: a commit, or an entry of a snapshot."""

    kind: Kind
    partition: Annotated[str, Field(max_length=64)]
    name: Annotated[str, Field(min_length=1, max_length=200)]
    body: dict | None
    hlc: Annotated[int, Field(ge=0)]
    origin: Id
    seq: Seq | None
    vv: Vector


Change = tuple[Kind, Annotated[str, Field(max_length=64)], Annotated[str, Field(min_length=1, max_length=200)],
               Annotated[int, Field(ge=0)], dict | None]
"""One change of a log record: kind, partition, name, stamp clock, body (None: deleted)."""


MAX_RECORD_CHANGES = 100_000
"""Changes a log record may carry in a message (a larger one is sent as a snapshot of its scope)."""


class LogRecord(_Message):
    """One transaction of a device in a scope."""

    origin: Id
    seq: Seq
    vv: Vector
    changes: list[Change] = Field(min_length=1, max_length=MAX_RECORD_CHANGES)


class Commits(_Message):
    scope: Id
    commits: list[LogRecord] = Field(max_length=100_000)


class SnapshotVersion(Version):
    deleted: bool


class Snapshot(_Message):
    id: Id
    scope: Id
    replace: bool
    last: bool
    vv: Vector | None
    versions: list[SnapshotVersion] = Field(max_length=100_000)


class ScopeStatus(_Message):
    vv: Vector
    buckets: list[Annotated[int, Field(ge=0)]] = Field(min_length=BUCKETS, max_length=BUCKETS)
    pending: Annotated[int, Field(ge=0)]
    synced: bool


class Status(_Message):
    """A device's status: per scope it is a member of, what it has applied, its digest, its pending changes."""

    domain_digest: Annotated[str, Field(max_length=64)] = ""
    scopes: dict[Id, ScopeStatus] = Field(max_length=1000)


COMMITS = TypeAdapter(Commits)
STATUS = TypeAdapter(Status)
SNAPSHOT = TypeAdapter(Snapshot)
