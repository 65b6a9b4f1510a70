"""Fencing tokens: what a writer that holds a lease sends with a batch, so that a device refuses its
writes once another writer, holding a newer lease, wrote the same things (`tandem.fences` checks them)."""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from tandem.models.fields import Name
from tandem.models.lease import Holder

FENCES = "fences"
"""The store kind of fence records: per partition and scope name, the newest token that wrote it."""
MAX_SCOPE = 10_000

ScopeName = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$")]
"""What a token guards: a service's key (`ENV:namespace/name`), any printable text."""


class Fence(BaseModel):
    """A batch's fencing token. The device refuses the batch (409 `lease_lost`, nothing applied) if it saw a
    newer token of the same `epoch` for any name of `scope` in `partition`; otherwise it records `token` for each. Every
    operation of a fenced batch is in `partition`. Tokens grow with the lease store's changes (a Kubernetes
    Lease's resourceVersion, an etcd revision, a device lease's `token`)."""

    model_config = ConfigDict(extra="forbid")

    partition: Name
    epoch: Holder
    """The lease store the token comes from: a record of another epoch is replaced, not compared with."""
    token: int = Field(ge=0, strict=True)
    holder: Holder
    scope: list[ScopeName] = Field(min_length=1, max_length=MAX_SCOPE)
