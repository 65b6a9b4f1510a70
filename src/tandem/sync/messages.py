"""The shapes of the peer messages that change this device's state, checked before they are applied.

Peers are trusted devices, but a message from a buggy or newer peer must not corrupt the store:
a message that does not fit is dropped whole, logged and counted. Log records and object versions
validate into the store's own records (`tandem.store.records`).
"""

from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from tandem.models import CONFIG_RESOURCES, PoolMember
from tandem.models.conflict import CONFLICTS
from tandem.models.fence import FENCES
from tandem.models.lease import LEASES
from tandem.store import LogRecord, Version
from tandem.store.digest import BUCKETS
from tandem.store.records import CheckedVector, Id

REPLICATED_KINDS = frozenset({*(m.kind for m in (*CONFIG_RESOURCES, PoolMember)), LEASES, CONFLICTS, FENCES})
"""The kinds of objects that replicate: configuration, and the leases, conflict records and fence records
kept in its partitions."""
MAX_RECORD_CHANGES = 100_000
"""Changes a log record may carry in a message (a larger one is sent as a snapshot of its scope)."""


def _replicated(kinds: set[str]) -> None:
    unknown = kinds - REPLICATED_KINDS
    if unknown:
        raise ValueError(f"kind {sorted(unknown)[0]!r} does not replicate")


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Commits(_Message):
    """Log records of one scope, each whole and sequenced."""

    scope: Id
    commits: list[LogRecord] = Field(max_length=100_000)

    @model_validator(mode="after")
    def _records(self) -> Self:
        for record in self.commits:
            if record.seq is None or not 1 <= len(record.changes) <= MAX_RECORD_CHANGES:
                raise ValueError("a log record is sequenced and has 1 to 100,000 changes")
            _replicated({change[0] for change in record.changes})
        return self


class Snapshot(_Message):
    """A part of the versions of a scope (all of it when `replace`); the last part carries the vector."""

    id: Id
    scope: Id
    replace: bool
    last: bool
    vv: CheckedVector | None
    versions: list[Version] = Field(max_length=100_000)

    @model_validator(mode="after")
    def _kinds(self) -> Self:
        _replicated({version.kind for version in self.versions})
        return self


class ScopeStatus(_Message):
    """What a device has of one scope: its vector, its digest, its pending changes, whether it is synced."""

    vv: CheckedVector
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
