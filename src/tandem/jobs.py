"""Long operations as jobs that clients poll."""

import asyncio
import contextlib
import itertools
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from tandem.errors import ApiError
from tandem.models import ErrorDetail, Job

KEEP_FINISHED = 1000


class Jobs:
    """Runs jobs on the event loop and keeps the latest ones for polling (in memory: a restart forgets them)."""

    def __init__(self) -> None:
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._done: dict[str, asyncio.Event] = {}
        self._tasks: set[asyncio.Task] = set()
        self._counter = itertools.count(1)

    def start(self, description: str, work: Callable[[], Any | Awaitable[Any]]) -> Job:
        """Start `work` (a function, sync or async) as a job; its return value becomes the job's result."""
        job = Job(id=f"{next(self._counter)}-{uuid.uuid4().hex[:8]}", description=description, state="running",
                  created_at=datetime.now(UTC))
        self._jobs[job.id] = job
        self._done[job.id] = asyncio.Event()
        task = asyncio.get_running_loop().create_task(self._run(job, work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._trim()
        return job

    async def _run(self, job: Job, work: Callable[[], Any | Awaitable[Any]]) -> None:
        try:
            result = work()
            if asyncio.iscoroutine(result):
                result = await result
            job.result, job.state, job.progress = result, "succeeded", 1.0
        except ApiError as error:
            job.state, job.message = "failed", error.message
            job.error = ErrorDetail(**error.to_dict())
        except Exception as error:  # a job must end, whatever its work raised
            job.state, job.message = "failed", f"internal error: {error}"
            job.error = ErrorDetail(code="internal_error", message=job.message)
        job.finished_at = datetime.now(UTC)
        self._done[job.id].set()

    def _trim(self) -> None:
        finished = [job_id for job_id, job in self._jobs.items() if job.state != "running"]
        for job_id in finished[: max(0, len(self._jobs) - KEEP_FINISHED)]:
            del self._jobs[job_id]
            del self._done[job_id]

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def all(self) -> list[Job]:
        return list(self._jobs.values())

    async def wait(self, job_id: str, timeout: float) -> None:
        """Return when the job has ended or `timeout` seconds passed."""
        done = self._done.get(job_id)
        if done is not None and timeout > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), timeout)
