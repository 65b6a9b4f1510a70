"""Job routes: list, and read one with an optional long-poll."""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from tandem.api.collections import Page, page_response, parse_query
from tandem.api.deps import DeviceDep, PrincipalDep
from tandem.api.responses import JSON
from tandem.device import Device
from tandem.errors import NotFound
from tandem.models import Job

router = APIRouter(prefix="/api/jobs", tags=["jobs"])

MAX_WAIT = 60.0


async def counted(device: Device, work: Callable[..., int], *args: Any) -> dict[str, int]:
    """Run a bulk change on the store's writer: the job's result `{"count": N}`."""
    return {"count": await device.write(work, *args)}


ONTAP_STATES = {"running": "running", "succeeded": "success", "failed": "failure"}
"""A job's state as ONTAP names it (`/api/cluster/jobs`)."""


def job_response(job: Job) -> JSON:
    """`202 Accepted` with the job and where to poll it; `job` is the same as ONTAP gives it (its clients poll
    `/api/cluster/jobs/{uuid}`)."""
    ontap = {"uuid": job.id, "_links": {"self": {"href": f"/api/cluster/jobs/{job.id}"}}}
    return JSON({**job.model_dump(mode="json"), "job": ontap}, status_code=202,
                headers={"Location": f"/api/jobs/{job.id}"})


@router.get("", response_model=Page, summary="List recent jobs")
async def list_jobs(request: Request, device: DeviceDep, _: PrincipalDep) -> JSON:
    """The recent jobs in the order they started (filters, `fields=`, the count alone; one page: they are few)."""
    query = parse_query(request, list(Job.model_fields))
    records = [job.model_dump(mode="json") for job in device.jobs.all()]
    matching, _last = query.page(iter((("", record["id"]), record) for record in records), ("id",))
    return page_response(request, matching, None, query.matched)


ontap_router = APIRouter(prefix="/api/cluster/jobs", tags=["jobs"])


@ontap_router.get("/{job_id}", summary="Read a job as ONTAP shows one (state running, success or failure)")
async def read_ontap_job(job_id: str, device: DeviceDep, _: PrincipalDep) -> JSON:
    job = device.jobs.get(job_id)
    if job is None:
        raise NotFound(f"no job {job_id!r}", target="job")
    return JSON({"uuid": job.id, "description": job.description, "state": ONTAP_STATES[job.state],
                 "message": job.error.message if job.error else job.message or job.state,
                 "start_time": job.created_at, "end_time": job.finished_at,
                 "_links": {"self": {"href": f"/api/cluster/jobs/{job.id}"}}})


@router.get("/{job_id}", response_model=Job, summary="Read a job; wait=S waits up to S seconds for it to end")
async def read_job(job_id: str, device: DeviceDep, _: PrincipalDep,
                   wait: Annotated[float, Query(ge=0, le=MAX_WAIT)] = 0) -> JSON:
    if device.jobs.get(job_id) is None:
        raise NotFound(f"no job {job_id!r}", target="job")
    await device.jobs.wait(job_id, wait)
    job = device.jobs.get(job_id)
    assert job is not None
    return JSON(job.model_dump(mode="json"))
