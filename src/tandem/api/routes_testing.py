"""Hooks for tests, present only when the device starts with TANDEM_TEST_HOOKS=1 (never in production):
they let a test reproduce a fault of the management process itself."""

import time
from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from tandem import hooks
from tandem.api.deps import PrincipalDep

router = APIRouter(prefix="/api/testing", tags=["testing"], include_in_schema=False)


def enabled() -> bool:
    return hooks.enabled()


class Block(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seconds: Annotated[float, Field(gt=0, le=30)]


@router.post("/block-management", status_code=204)
async def block_management(body: Block, principal: PrincipalDep) -> None:
    """Hold the management process's event loop for `seconds` (as a stuck handler would): heartbeats and
    traffic, in their own processes, must go on."""
    principal.require_admin()
    time.sleep(body.seconds)  # blocking on purpose
