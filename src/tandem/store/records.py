"""The store's records: object versions and log records, typed once and shared by the sync engine (its
messages validate into them, `tandem.sync.messages`) and by everything that reads the store.

Object bodies are JSON documents (`Body`): the API's and the wire's form of a resource, stored as is.
"""

from dataclasses import dataclass, field
from typing import Annotated, Any, NamedTuple

from pydantic import Field

from tandem.store.clock import Stamp

Body = dict[str, Any]
"""An object's JSON document, as the API, the wire and SQLite hold it."""
Vector = dict[str, int]
"""A version vector: per origin device, the highest sequence number applied."""
Key = tuple[str, str, str]
"""An object's key in the store: (kind, partition, name)."""

Id = Annotated[str, Field(min_length=1, max_length=64)]
"""A device id, or a scope, as a peer may send it."""
_Kind = Annotated[str, Field(min_length=1, max_length=64)]
_Partition = Annotated[str, Field(max_length=64)]
_Name = Annotated[str, Field(min_length=1, max_length=200)]
_Clock = Annotated[int, Field(ge=0)]
_Seq = Annotated[int, Field(ge=1)]
CheckedVector = dict[Id, Annotated[int, Field(ge=0)]]
"""A version vector as a peer may send it."""

Change = tuple[_Kind, _Partition, _Name, _Clock, Body | None]
"""One change of a log record: kind, partition, name, stamp clock, body (None: deleted)."""


@dataclass(frozen=True, slots=True)
class Version:
    """An object's version: its body (None and `deleted` for a tombstone), its stamp, and the sequence number
    and version vector of the log record that made it (None and the vector so far: not yet sequenced)."""

    kind: _Kind
    partition: _Partition
    name: _Name
    body: Body | None
    hlc: _Clock
    origin: Id
    seq: _Seq | None
    vv: CheckedVector
    deleted: bool

    @property
    def key(self) -> Key:
        return self.kind, self.partition, self.name

    @property
    def stamp(self) -> Stamp:
        return Stamp(self.hlc, self.origin)

    def has_seen(self, other: "Version") -> bool:
        """Whether this version's writer had applied `other` when it wrote. A version without a sequence
        number (written before its partition joined a group) is judged by its stamp alone."""
        if other.seq is None:
            return self.stamp > other.stamp
        return self.vv.get(other.origin, 0) >= other.seq


class DraftWrite(NamedTuple):
    """One object a draft writes (`tandem.store.draft`)."""

    body: Body | None
    """None: deleted."""
    hlc: int
    """Its stamp's clock."""
    body_json: str | None
    """The body as JSON, encoded away from the writer."""


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One transaction of one device in one scope: its changes, with one sequence number and vector (None:
    pending, not sent until sequenced). `id` and `scope` say where this device keeps it (never sent)."""

    origin: Id
    seq: _Seq | None
    vv: CheckedVector
    changes: list[Change]
    scope: str = field(default="", compare=False)
    id: int = field(default=0, compare=False)

    def versions(self) -> list[Version]:
        """The object versions its changes make."""
        return [Version(kind, partition, name, body, hlc, self.origin, self.seq, self.vv, body is None)
                for kind, partition, name, hlc, body in self.changes]

    def wire(self) -> dict[str, Any]:
        """The form peers receive (`tandem.sync.messages.Commits`)."""
        return {"origin": self.origin, "seq": self.seq, "vv": self.vv, "changes": self.changes}


@dataclass(frozen=True)
class AuditEntry:
    """One entry of the audit trail (`at`: seconds since the epoch): who (`user`, `role`, from `source`), how
    (`via`: api, batch, or agent with its host id), what (`action`: METHOD /route, on `target`: the path asked),
    with what outcome (`status`: the HTTP status answered) and, for a refusal, why (`detail`)."""

    id: int
    at: float
    user: str
    role: str
    source: str
    via: str
    action: str
    target: str
    status: int
    detail: str


@dataclass(frozen=True)
class AuditQuery:
    """Which audit entries: each field given must match (`action`: a part of it); `before`: entries older than
    that id (the next page); at most `limit`, newest first."""

    user: str | None = None
    via: str | None = None
    action: str | None = None
    status: int | None = None
    since: float = 0.0
    until: float = float("inf")
    before: int | None = None
    limit: int = 100


@dataclass(frozen=True)
class FailoverEvent:
    """A failover event of this device, as recorded (`at`: seconds since the epoch): a transition of a traffic
    group, or (`kind` path, `traffic_group` empty) a heartbeat path from a member lost (`up` to `down`) or back."""

    id: int
    at: float
    traffic_group: str
    from_state: str
    to_state: str
    reason: str
    kind: str = "transition"
