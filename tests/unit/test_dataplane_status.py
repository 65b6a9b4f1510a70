"""The data plane process answers the failover process's pings while it builds a large status."""

import asyncio
import time
from pathlib import Path

from tandem.dataplane.daemon import DataPlaneProcess
from tandem.dataplane.engine_events import EngineStatus

BUILDING = 0.5
"""Seconds the engine takes to build its stats (11,000 virtual servers took over a second)."""


class SlowStats:
    name, version, stats_off_loop = "haproxy", "2.6", True
    errors: dict[str, str] = {}

    async def refresh_stats(self) -> None:
        return None

    def stats(self) -> dict:
        time.sleep(BUILDING)
        return {"virtuals": {}, "pools": {}}

    def status(self) -> EngineStatus:
        return EngineStatus(self.name, self.version, 0, [])


def test_the_event_loop_turns_while_the_stats_are_built(tmp_path: Path) -> None:
    async def scenario() -> tuple[float, dict]:
        process = DataPlaneProcess(SlowStats(), tmp_path / "dataplane.sock")  # type: ignore[arg-type]
        status = asyncio.create_task(process._from_management({"type": "status"}))
        started = time.perf_counter()
        await asyncio.sleep(0.01)
        answered = process._from_failover({"type": "ping"})
        turned = time.perf_counter() - started
        return turned, {"ping": answered, "status": await status}

    turned, answers = asyncio.run(scenario())
    assert answers["ping"] == {"pools": {}} and answers["status"]["virtuals"] == {}
    assert turned < BUILDING / 2, f"the loop was held {turned:.2f} s"
