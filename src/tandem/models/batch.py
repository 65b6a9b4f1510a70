"""`POST /api/batch`: several changes to configuration objects, applied in one transaction."""

from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tandem.models.fence import Fence
from tandem.models.fields import Name
from tandem.models.resources import CONFIG_MODELS, DEFAULT_PARTITION, Resource

MAX_OPERATIONS = 10_000
"""The resources a batch may change, by collection name."""

Action = Literal["create", "replace", "update", "delete"]
"""POST, PUT (create or make equal to the body), PATCH and DELETE semantics."""


class Operation(BaseModel):
    """One change: `body` is the resource (create, replace), the fields to change (update) or nothing (delete)."""

    model_config = ConfigDict(extra="forbid")

    action: Action
    resource: Literal["partitions", "monitors", "certificates", "pools", "virtuals"]
    partition: Name | None = None
    """The partition of a monitor, certificate, pool or virtual server (default Common); partitions have none."""
    name: Name
    body: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.resource == "partitions" and self.partition is not None:
            raise ValueError("partition: a partition is not in a partition")
        if self.action == "delete" and self.body:
            raise ValueError("body: a delete takes no body")
        return self

    @property
    def model(self) -> type[Resource]:
        return CONFIG_MODELS[self.resource]

    def object_identity(self) -> dict[str, str]:
        """The identity fields of the object this operation changes."""
        if "partition" in self.model.identity:
            return {"partition": self.partition or DEFAULT_PARTITION, "name": self.name}
        return {"name": self.name}


class BatchRequest(BaseModel):
    """The operations, and a writer's fencing token if it holds a lease (see `Fence`)."""

    model_config = ConfigDict(extra="forbid")

    operations: list[Operation] = Field(min_length=1, max_length=MAX_OPERATIONS)
    fence: Fence | None = None

    @model_validator(mode="after")
    def _fenced_partition(self) -> Self:
        if self.fence is not None:
            for index, operation in enumerate(self.operations):
                if operation.object_identity().get("partition") != self.fence.partition:
                    raise ValueError(f"operations.{index}: a fenced batch writes only in the fence's partition "
                                     f"{self.fence.partition!r}")
        return self


class BatchResult(BaseModel):
    """How many operations were applied (all of them) and the last commit written (None: nothing changed)."""

    applied: int
    commit: int | None
