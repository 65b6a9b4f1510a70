"""The nftables engine: tcp and udp virtual servers served by the kernel (no copy through user space).

`apply` renders the table `inet tandem` (`nftables_rules`) and writes it in one or two nftables transactions
(`nft -j -f FILE`, JSON; nothing else on the host touched): new chains holding maps are made before the table's
base chains point at them, so packets never meet half a ruleset. Pools' monitors run here as in the builtin engine; a
member's change of health writes the table again. Counters (connections per virtual server and member) are the
table's named counters, read when asked for.
"""

import asyncio
import contextlib
import logging
import re
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from tandem.dataplane.engine import ServedPool, ServedVirtual
from tandem.dataplane.engine_events import EngineEvents, EngineStatus
from tandem.dataplane.monitor import PoolMonitor
from tandem.dataplane.nftables_rules import FAMILY, TABLE, Ruleset, render
from tandem.dataplane.stats import Counters
from tandem.tasks import cancel

log = logging.getLogger("tandem.dataplane.nftables")

RETRY = 1.0
"""Seconds before writing again a table nftables refused."""
NFT_TIMEOUT = 10.0
"""Seconds one `nft` run may take."""
FORWARDING = Path("/proc/sys/net/ipv4/ip_forward")
NOT_FORWARDING = ("IPv4 forwarding is off on this device (sysctl net.ipv4.ip_forward=0): members on other hosts "
                  "are not reached")
_VERSION = re.compile(r"v(\d+(?:\.\d+)+)")


class NftError(Exception):
    """`nft` refused a command, or could not be run; the message is its own."""


async def nft(binary: str, *arguments: str, commands: list[dict[str, Any]] | None = None) -> bytes:
    """Run `nft -j ARGUMENTS`, or `nft -j -f FILE` with `commands` as JSON in FILE (a private temporary file: the
    event loop's pipes may be sockets, which nft cannot open as /dev/stdin); its output."""
    with tempfile.NamedTemporaryFile(prefix="tandem-nft-", suffix=".json") as file:
        try:
            if commands is not None:
                file.write(orjson.dumps({"nftables": commands}))
                file.flush()
                arguments = ("-f", file.name, *arguments)
            process = await asyncio.create_subprocess_exec(
                binary, "-j", *arguments, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
        except OSError as error:
            raise NftError(f"cannot run {binary}: {error}") from None
        try:
            async with asyncio.timeout(NFT_TIMEOUT):
                output, errors = await process.communicate()
        except BaseException as error:  # timed out or cancelled: no nft left to commit a table later
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            if isinstance(error, TimeoutError):
                raise NftError(f"{binary} did not finish within {NFT_TIMEOUT} s") from None
            raise
    if process.returncode != 0:
        lines = [line.strip() for line in errors.decode(errors="replace").splitlines() if line.strip()]
        raise NftError(" ".join(lines[:3]) or f"{binary} exited with {process.returncode}")
    return output


def nft_version(binary: str) -> str:
    """The version `nft --version` tells (`1.0.6` of `nftables v1.0.6 (Lester Gooch #5)`); "unknown" if none."""
    try:
        done = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=NFT_TIMEOUT,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    found = _VERSION.search(done.stdout)
    return found.group(1) if found else "unknown"


class NftablesEngine:
    """Serves tcp and udp virtual servers with the kernel's nftables; same calls as `BuiltinEngine`."""

    name = "nftables"
    stats_off_loop = False
    readies_standby = False

    def __init__(self, binary: str = "nft") -> None:
        self.binary = binary
        self.version = nft_version(binary)
        self.errors: dict[str, str] = {}
        """Virtual servers (key `/partition/name`) not served as asked, with the reason."""
        self.events = EngineEvents()
        self._wanted: dict[str, ServedVirtual] = {}
        self._written: Ruleset | None = None
        """What the table holds (None: not known, it is made anew)."""
        self._monitors: dict[str, PoolMonitor] = {}
        self._pools: dict[str, ServedPool] = {}
        self._counts: dict[str, int] = {}
        """Packets each counter counted (the first packet of each connection: its connections)."""
        self._retry_at = 0.0
        self._refusal: str | None = None
        self._lock = asyncio.Lock()
        self._rewriting: asyncio.Task[None] | None = None
        self._dirty = False
        """A member's health changed since the table was last written."""
        self._stopped = False

    async def apply(self, desired: Iterable[ServedVirtual]) -> None:
        """Serve exactly the enabled tcp and udp virtual servers of `desired` (idempotent)."""
        async with self._lock:
            self._stopped = False
            self._wanted = {virtual.key: virtual for virtual in desired if virtual.enabled}
            await self._follow_monitors()
            await self._write()

    async def _follow_monitors(self) -> None:
        pools = {v.pool.key: v.pool for v in self._wanted.values() if v.pool is not None}
        for key, pool in pools.items():
            members = [(m.address, m.port) for m in pool.members]
            monitor = self._monitors.get(key)
            if monitor is None:
                monitor = self._monitors[key] = PoolMonitor(key, pool.monitor, members, self._health_changed)
                monitor.start()
            elif self._pools.get(key) != pool:
                await monitor.update(pool.monitor, members)
        for key in self._monitors.keys() - pools.keys():
            await self._monitors.pop(key).stop()
        self._pools = pools

    def _health(self, pool: str, member: str) -> str:
        monitor = self._monitors.get(pool)
        return monitor.state(member) if monitor is not None else "up"

    def _health_changed(self) -> None:
        """A member came up or went down: the table is written again (once for changes coming together, and
        again for one that comes while it is written)."""
        self._dirty = True
        if not self._stopped and (self._rewriting is None or self._rewriting.done()):
            self._rewriting = asyncio.get_running_loop().create_task(self._rewrite())

    async def _rewrite(self) -> None:
        while self._dirty and not self._stopped:
            async with self._lock:
                if self._stopped:
                    return
                await self._write()
            if self._refusal is not None:  # refused: tried again (a configuration change may come first)
                self._dirty = True
                await asyncio.sleep(RETRY)

    async def _write(self) -> None:
        self._dirty = False
        ruleset = render(self._wanted.values(), self._health)
        # (the same table is not written again, unless what it retired is left to delete)
        if ruleset != self._written or self._refusal is not None:
            try:
                for commands in ruleset.transactions(self._written):
                    await nft(self.binary, commands=commands)
            except asyncio.CancelledError:
                self._written = None  # (perhaps half way: the table is made anew next time)
                raise
            except NftError as error:
                message = f"not served: nftables refused the table: {error}"
                if message != self._refusal:
                    self.events.record("refused", message)
                self._written, self._refusal, self._retry_at = None, message, time.monotonic() + RETRY
                self.errors = {key: message for key in self._wanted} | ruleset.errors
                return
            if self._refusal is not None:
                self.events.record("recovered", "the table wanted is written")
            self._written, self._refusal = ruleset.written_after(self._written), None
        self.errors = dict(ruleset.errors)
        if not _forwarding():  # looked at again every RETRY seconds until it is on
            self.errors |= {key: NOT_FORWARDING for key in self._wanted
                            if key not in ruleset.errors and ":" not in self._wanted[key].address}
            self._retry_at = time.monotonic() + RETRY

    def retry_after(self) -> float | None:
        """Until the refused table may be written again, or forwarding looked at again; None when nothing waits."""
        if self._refusal is None and NOT_FORWARDING not in self.errors.values():
            return None
        return max(0.0, self._retry_at - time.monotonic())

    def cpu_seconds(self) -> float:
        """Nothing: the kernel serves (`nft` runs count as the data plane process's children)."""
        return 0.0

    def status(self) -> EngineStatus:
        return EngineStatus(self.name, self.version, 0, self.events.recent())

    async def refresh_stats(self) -> None:
        """Read the table's counters."""
        try:
            output = await nft(self.binary, "list", "counters", "table", FAMILY, TABLE)
        except NftError as error:
            log.warning("cannot read the counters: %s", error)
            return
        counters = (item.get("counter") for item in orjson.loads(output).get("nftables", []))
        self._counts = {counter["name"]: int(counter.get("packets", 0)) for counter in counters if counter}

    @property
    def virtuals(self) -> dict[str, ServedVirtual]:
        """What is being served, by virtual key."""
        if self._written is None:
            return {}
        return {key: virtual for key, virtual in self._wanted.items() if key not in self._written.errors}

    def stats(self) -> dict[str, Any]:
        """Counters and health, as the builtin engine gives them: connections counted by nftables (bytes and
        open connections are the kernel's conntrack's, not counted here)."""
        counted: dict[tuple[str, str | None], int] = {}
        if self._written is not None:
            for name, what in self._written.counters.items():
                counted[(what.virtual, what.member)] = self._counts.get(name, 0)
        virtuals: dict[str, Any] = {}
        pools: dict[str, dict[str, Any]] = {}
        for key, virtual in self._wanted.items():
            pool = virtual.pool
            virtuals[key] = {"address": virtual.address, "port": virtual.port,
                             "pool": pool.key if pool is not None else None,
                             "listening": key in self.virtuals and key not in self.errors,
                             "error": self.errors.get(key)} | Counters(counted.get((key, None), 0)).snapshot()
            if pool is None:
                continue
            members = pools.setdefault(pool.key, {})
            for member in pool.members:
                entry = members.setdefault(member.key, {
                    "health": self._health(pool.key, member.key), "enabled": member.enabled, "state": member.state,
                    "weight": member.weight} | Counters().snapshot())
                entry["connections_total"] += counted.get((key, member.key), 0)
        return {"virtuals": virtuals, "pools": pools}

    async def stop_all(self, drain_timeout: float) -> None:
        """Stop serving: monitors stop, the table goes (connections already translated keep going)."""
        self._stopped = True
        async with self._lock:
            monitors, self._monitors, self._pools = list(self._monitors.values()), {}, {}
            await asyncio.gather(*(monitor.stop() for monitor in monitors), return_exceptions=True)
            self._wanted, self._written, self.errors = {}, None, {}
            with contextlib.suppress(NftError):
                await nft(self.binary, commands=[{"add": {"table": {"family": FAMILY, "name": TABLE}}},
                                                 {"delete": {"table": {"family": FAMILY, "name": TABLE}}}])
        if self._rewriting is not None:
            await cancel(self._rewriting)


def _forwarding() -> bool:
    """Whether the device forwards IPv4 (members on other hosts need it); True where it cannot be told."""
    try:
        return FORWARDING.read_text().strip() != "0"
    except OSError:
        return True

