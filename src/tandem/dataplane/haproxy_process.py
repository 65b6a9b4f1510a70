"""One HAProxy, started and kept running: master-worker mode, its own runtime directory (0700) with the
configuration, certificates, the master CLI (`master.sock`) and the stats socket (`haproxy.sock`), both
0600. Every configuration is checked with `haproxy -c` before it is used; a refused one never replaces
the running one. Changes reload hitlessly (`reload` on the master CLI); a master that dies is started
again at once with the configuration in use (`restarts` counts it).

Loading a configuration is management work: the check and the master (which parses each configuration it
reloads) run at the management process's priority, and each new worker, which serves the traffic, is given
the data plane's (`ipc.share_priority`)."""

import asyncio
import contextlib
import logging
import os
import signal
import time
from pathlib import Path

from tandem import ipc
from tandem.dataplane import haproxy_runtime
from tandem.dataplane.engine_events import EngineEvents
from tandem.tasks import cancel

log = logging.getLogger("tandem.dataplane.haproxy")

READY_TIMEOUT = 10.0
"""Seconds for a (re)started or reloaded HAProxy to answer with a new worker."""
RESTART_PAUSE = 0.05


class ConfigurationRefused(Exception):
    """HAProxy refused a configuration (`haproxy -c`); the message is its own."""


class StartFailed(Exception):
    """HAProxy did not start, or did not load a checked configuration (say, a port in use)."""


def _master_setup() -> None:
    """In the master before it runs: it dies with the data plane, and loads configurations at the management
    priority."""
    ipc.exit_with_parent()
    ipc.at_management_priority()


class HaproxyProcess:
    """Supervises one HAProxy master."""

    def __init__(self, runtime_dir: Path, binary: str = "haproxy") -> None:
        self.runtime_dir = runtime_dir
        self.binary = binary
        self.config = runtime_dir / "haproxy.cfg"
        self.stats_socket = runtime_dir / "haproxy.sock"
        self.master_socket = runtime_dir / "master.sock"
        self.restarts = 0
        self.events = EngineEvents()
        """Its restarts, recorded as they happen."""
        self._process: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False

    def prepare(self) -> None:
        """Create the runtime directory (0700)."""
        self.runtime_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.runtime_dir, 0o700)
        (self.runtime_dir / "certs").mkdir(mode=0o700, exist_ok=True)

    def write_files(self, files: dict[str, str]) -> None:
        """Write the files a configuration names (0600, relative to the runtime directory)."""
        for name, content in files.items():
            path = self.runtime_dir / name
            temporary = path.with_name(path.name + ".new")
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as file:
                file.write(content)
            os.replace(temporary, path)

    def remove_unused(self, files: dict[str, str]) -> None:
        """Remove the certificate files `files` (those of the configuration in use) no longer name."""
        for path in (self.runtime_dir / "certs").iterdir():
            if f"certs/{path.name}" not in files:
                path.unlink(missing_ok=True)

    async def check(self, text: str) -> None:
        """Raise ConfigurationRefused (HAProxy's message) unless `haproxy -c` accepts `text`."""
        candidate = self.runtime_dir / "candidate.cfg"
        fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(text)
        checking = await asyncio.create_subprocess_exec(
            self.binary, "-c", "-f", str(candidate), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, preexec_fn=ipc.at_management_priority)
        output, _ = await checking.communicate()
        if checking.returncode != 0:
            lines = [line.partition(") : ")[2].strip() for line in output.decode(errors="replace").splitlines()
                     if line.startswith("[ALERT]")]
            raise ConfigurationRefused("haproxy refused the configuration: " + (" ".join(lines) or "unknown error"))

    async def use(self, text: str) -> None:
        """Serve `text` (already checked): start HAProxy, or reload it hitlessly."""
        self.write_files({"haproxy.cfg": text})
        if self._process is None or self._process.returncode is not None:
            await self._start()
            if self._supervisor is None:
                self._supervisor = asyncio.get_running_loop().create_task(self._supervise())
            return
        before = await haproxy_runtime.worker_pid(self.stats_socket)
        await self._reload_command()
        if not await self._new_worker(before):
            raise StartFailed(f"haproxy could not load the configuration (see haproxy.log in {self.runtime_dir})")

    async def _reload_command(self) -> None:
        """`reload` on the master CLI; the master, which re-executes itself on each reload, may not listen for
        a moment after the last one (refused: the command did not arrive, so it is sent again)."""
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                await haproxy_runtime.command(self.master_socket, "reload")
                return
            except (ConnectionRefusedError, FileNotFoundError):
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(0.01)

    def stop_orphan(self) -> None:
        """Kill the HAProxy a previous data plane process left running with this runtime directory."""
        try:
            pid = int((self.runtime_dir / "haproxy.pid").read_text().split()[0])
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            return
        if str(self.config).encode() in command:
            log.warning("stopping haproxy (pid %d) left running by a previous data plane process", pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    async def _start(self) -> None:
        if self._process is None:
            self.stop_orphan()
        for path in (self.stats_socket, self.master_socket):
            path.unlink(missing_ok=True)
        with open(self.runtime_dir / "haproxy.log", "ab") as output:
            self._process = await asyncio.create_subprocess_exec(
                self.binary, "-W", "-S", f"{self.master_socket},mode,600", "-f", str(self.config),
                "-p", str(self.runtime_dir / "haproxy.pid"), stdin=asyncio.subprocess.DEVNULL,
                stdout=output, stderr=output, preexec_fn=_master_setup)
        if not await self._new_worker(None):
            raise StartFailed(f"haproxy did not start (see haproxy.log in {self.runtime_dir})")

    async def _new_worker(self, old: int | None) -> bool:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self._process is None or self._process.returncode is not None:
                return False
            pid = await haproxy_runtime.worker_pid(self.stats_socket)
            if pid is not None and pid != old:
                ipc.share_priority(pid)
                return True
            await asyncio.sleep(0.01)
        return False

    async def _supervise(self) -> None:
        while not self._stopping:
            process = self._process
            if process is None:
                return
            code = await process.wait()
            if self._stopping:
                return
            self.restarts += 1
            self.events.record("restarted", f"haproxy (pid {process.pid}) exited with {code}: started again"
                                            f" (restart {self.restarts})")
            try:
                await self._start()
            except (OSError, StartFailed) as error:
                log.warning("haproxy restart failed: %s", error)
                await asyncio.sleep(RESTART_PAUSE)

    def cpu_seconds(self) -> float:
        """The CPU time the running master has used: loading configurations (0: none runs). Not its workers':
        theirs is serving traffic (and the master counts a worker's whole life when it reaps it)."""
        if self._process is None or self._process.returncode is not None:
            return 0.0
        try:
            fields = Path(f"/proc/{self._process.pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def stop(self, drain_timeout: float) -> None:
        """Stop HAProxy: a soft stop (connections finish) for up to `drain_timeout`, then a kill."""
        self._stopping = True
        if self._supervisor is not None:
            await cancel(self._supervisor)
            self._supervisor = None
        process, self._process = self._process, None
        if process is not None:
            # SIGUSR1: a soft stop (stop accepting, let connections finish); SIGTERM: now; then SIGKILL
            for sig, wait in ((signal.SIGUSR1, drain_timeout), (signal.SIGTERM, 1.0), (signal.SIGKILL, None)):
                if process.returncode is not None:
                    break
                if wait is not None and wait <= 0:
                    continue
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(sig)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await process.wait()
        self._stopping = False
