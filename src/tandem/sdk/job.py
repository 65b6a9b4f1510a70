"""Job: a long operation on the device, and how a 202 answer becomes one (for every Resource: this module
gives Resource its `_start_job` hook)."""

import math
import time
from typing import TYPE_CHECKING, Any, Self

from tandem import models
from tandem.sdk.connection import get_connection
from tandem.sdk.errors import TandemError
from tandem.sdk.resource import Resource, snapshot

if TYPE_CHECKING:
    from tandem.sdk.client import Client

ENDED = ("succeeded", "failed")
MAX_WAIT = 60
"""The longest `?wait=` the API honours, in seconds."""


class Job(Resource):
    """A long operation: `/api/jobs/{id}`; `state` is running, succeeded or failed."""

    _model = models.Job
    _collection = "/api/jobs"
    _identity = ("id",)

    @property
    def ended(self) -> bool:
        """True once the job succeeded or failed."""
        return self.__dict__.get("state") in ENDED

    def poll(self, timeout: float = 60, connection: "Client | None" = None) -> Self:
        """Long-poll the job until it succeeds or fails; TandemError `timeout` if it runs longer."""
        conn = self._conn(connection)
        deadline = time.monotonic() + timeout
        while not self.ended:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TandemError(
                    None,
                    "timeout",
                    f"job {self._key_value('id')} ({self.__dict__.get('description', '')}) "
                    f"is still {self.__dict__.get('state', 'running')} after {timeout:g} s",
                    str(self._key_value("id")),
                )
            wait = max(1, min(MAX_WAIT, math.ceil(remaining)))
            data = conn.request("GET", self._item_path(), params={"wait": wait}, timeout=conn.timeout + wait)
            self._load(data)
            self._last = snapshot(data)
        return self

    def raise_for_failure(self) -> Self:
        """Raise the job's error as a TandemError if it failed; else return the job."""
        if self.__dict__.get("state") == "failed":
            error = self.__dict__.get("error") or {}
            raise TandemError(
                None,
                str(error.get("code") or "job_failed"),
                str(error.get("message") or self.__dict__.get("message") or f"job {self.id} failed"),
                error.get("target"),
            )
        return self

    @classmethod
    def from_response(cls, data: Any, connection: "Client | None" = None) -> Self:
        """The Job a 202 answer carries."""
        if not isinstance(data, dict) or "id" not in data:
            raise TandemError(None, "bad_response", f"expected a job, the device answered {data!r:.200}")
        return cls._from_record(data, {}, connection)


def run_job(
    connection: "Client | None",
    method: str,
    path: str,
    *,
    json: Any = None,
    params: dict[str, Any] | None = None,
    poll: bool = True,
    timeout: float = 60,
) -> Job:
    """Start a long operation (an answer of 202 with a job); with `poll`, wait for it and raise if it failed."""
    conn = get_connection(connection)
    job = Job.from_response(conn.request(method, path, json=json, params=params), conn)
    if poll:
        job.poll(timeout).raise_for_failure()
    return job


Resource._start_job = staticmethod(run_job)
