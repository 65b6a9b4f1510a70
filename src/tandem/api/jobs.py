"""Job routes: list, and read one with an optional long-poll."""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query

from tandem.api.collections import Page
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


def job_response(job: Job) -> JSON:
    """`202 Accepted` with the job and where to poll it."""
    return JSON(job.model_dump(mode="json"), status_code=202, headers={"Location": f"/api/jobs/{job.id}"})


@router.get("", response_model=Page, summary="List recent jobs")
async def list_jobs(device: DeviceDep, _: PrincipalDep) -> JSON:
    records = [job.model_dump(mode="json") for job in device.jobs.all()]
    return JSON({"records": records, "num_records": len(records), "next": None})


@router.get("/{job_id}", response_model=Job, summary="Read a job; wait=S waits up to S seconds for it to end")
async def read_job(job_id: str, device: DeviceDep, _: PrincipalDep,
                   wait: Annotated[float, Query(ge=0, le=MAX_WAIT)] = 0) -> JSON:
    if device.jobs.get(job_id) is None:
        raise NotFound(f"no job {job_id!r}", target="job")
    await device.jobs.wait(job_id, wait)
    job = device.jobs.get(job_id)
    assert job is not None
    return JSON(job.model_dump(mode="json"))
