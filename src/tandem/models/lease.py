"""Leases: expiring, named claims that agents hold in a partition (liveness and ownership)."""

from datetime import datetime
from typing import Annotated, Any

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

LEASES = "leases"
"""The store kind of leases: kept in their partition, so the device group syncing it replicates them."""
MAX_DATA_BYTES = 4096


def _small(value: dict[str, Any]) -> dict[str, Any]:
    if len(orjson.dumps(value)) > MAX_DATA_BYTES:
        raise ValueError(f"at most {MAX_DATA_BYTES} bytes of JSON")
    return value


Holder = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]
"""Who holds a lease: any printable text (an agent's host and process, a UUID)."""
Data = Annotated[dict[str, Any], AfterValidator(_small)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AcquireRequest(_Request):
    """Take or renew a lease; with `version`, only if the lease is at that version (0: it does not exist)."""

    holder: Holder
    ttl: float = Field(ge=0.5, le=3600, strict=True)
    data: Data | None = None
    version: int | None = Field(None, ge=0, strict=True)


class ReleaseRequest(_Request):
    holder: Holder


class Lease(BaseModel):
    """A lease as presented: `expired` and `remaining` are judged by the answering device's clock."""

    partition: str
    name: str
    holder: str
    ttl: float
    acquired_at: datetime
    renewed_at: datetime
    expires_at: datetime
    expired: bool
    remaining: float
    version: int
    token: int = 0
    """The holder's fencing token: one above every other lease token of the partition when it was last
    acquired, renewed or released (send it with batches: `Fence`)."""
    data: dict[str, Any]
