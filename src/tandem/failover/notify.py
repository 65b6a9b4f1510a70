"""Notify hooks: the operator's scripts run at each transition of a traffic group (keepalived's notify).

Each script named with `tandem serve --notify PATH` runs, for every transition of this device, as
`PATH TRAFFIC_GROUP NEW_STATE` with the transition in its environment (`TANDEM_DEVICE`,
`TANDEM_TRAFFIC_GROUP`, `TANDEM_FROM_STATE`, `TANDEM_TO_STATE`, `TANDEM_REASON`, `TANDEM_AT`: seconds since
the epoch), without a shell, its output discarded (a script keeps its own log). Scripts run in the background,
at the management priority (never the failover process's real-time one) and in the order of the transitions,
one transition at a time: nothing they do delays a heartbeat. A script still running after `timeout` seconds
is killed with its process group (what it started in the background and left running once it exited is its
own). A failure (exit code, timeout, a script that cannot start) is a warning line.
"""

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tandem import ipc
from tandem.tasks import cancel

log = logging.getLogger("tandem.failover.notify")

DEFAULT_TIMEOUT = 10.0
QUEUED = 1000
"""Transitions waiting for their scripts at most (more are dropped, with a warning: a script that hangs)."""


def check_scripts(paths: list[Path]) -> list[Path]:
    """The scripts as absolute paths; ValueError (saying which) unless each is an executable file."""
    checked = []
    for path in paths:
        path = path.expanduser().absolute()
        if not path.is_file() or not os.access(path, os.X_OK):
            raise ValueError(f"--notify {path}: not an executable file")
        checked.append(path)
    return checked


@dataclass(frozen=True)
class Transition:
    device: str
    traffic_group: str
    from_state: str
    to_state: str
    reason: str
    at: float

    def environment(self) -> dict[str, str]:
        return {"TANDEM_DEVICE": self.device, "TANDEM_TRAFFIC_GROUP": self.traffic_group,
                "TANDEM_FROM_STATE": self.from_state, "TANDEM_TO_STATE": self.to_state,
                "TANDEM_REASON": self.reason, "TANDEM_AT": f"{self.at:.6f}"}


class Notifier:
    """Runs the notify scripts for each transition told (`tell`), in order, in the background."""

    def __init__(self, scripts: list[Path], timeout: float = DEFAULT_TIMEOUT) -> None:
        self.scripts = scripts
        self.timeout = timeout
        self._queue: asyncio.Queue[Transition] = asyncio.Queue(QUEUED)
        self._task: asyncio.Task | None = None

    def tell(self, transition: Transition) -> None:
        """Run the scripts for `transition` once those of the transitions before it are done."""
        if not self.scripts:
            return
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        try:
            self._queue.put_nowait(transition)
        except asyncio.QueueFull:
            log.warning("notify scripts are %d transitions behind: the transition of %r to %s runs none",
                        QUEUED, transition.traffic_group, transition.to_state)

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            transition = await self._queue.get()
            for script in self.scripts:
                try:
                    await self._one(script, transition)
                except asyncio.CancelledError:
                    raise
                except Exception:  # the next transitions still run theirs
                    log.exception("notify script %s failed", script)

    async def _one(self, script: Path, transition: Transition) -> None:
        environment = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), **transition.environment()}
        try:
            process = await asyncio.create_subprocess_exec(
                str(script), transition.traffic_group, transition.to_state, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, env=environment,
                preexec_fn=ipc.out_of_realtime, start_new_session=True)
        except (OSError, subprocess.SubprocessError) as error:
            log.warning("notify script %s cannot start: %s", script, error)
            return
        try:
            async with asyncio.timeout(self.timeout):
                code = await process.wait()
        except BaseException as error:  # its time is up, or the failover process stops: the script goes too
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await asyncio.shield(process.wait())
            if not isinstance(error, TimeoutError):
                raise
            log.warning("notify script %s (traffic group %r to %s) killed after %.0f s", script,
                        transition.traffic_group, transition.to_state, self.timeout)
            return
        if code != 0:
            log.warning("notify script %s (traffic group %r to %s) exited with %d", script,
                        transition.traffic_group, transition.to_state, code)
