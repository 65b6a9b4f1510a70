"""The HAProxy engine: serves virtual servers (tcp, http, https) with one supervised HAProxy.

`apply` renders the configuration (`haproxy_config`: only the virtual servers that changed), and, when
only servers changed (members added, removed, their weights and states), changes them through the runtime
API; otherwise (or when HAProxy refuses one, say a removed server still has connections) it checks the new
configuration with `haproxy -c` (not when only servers changed) and reloads hitlessly (`haproxy_process`).
A refused configuration leaves the previous one serving and HAProxy's message in `errors`. Counters and
member health come from `show stat`.
"""

import asyncio
import contextlib
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tandem.dataplane import haproxy_runtime
from tandem.dataplane.choice import EngineUnavailable, haproxy_version
from tandem.dataplane.engine import ServedVirtual
from tandem.dataplane.engine_events import EngineStatus
from tandem.dataplane.haproxy_config import Rendering, ServerChanges, render
from tandem.dataplane.haproxy_process import ConfigurationRefused, HaproxyProcess, StartFailed

COUNTERS = {"connections_total": "stot", "connections_current": "scur", "bytes_in": "bin", "bytes_out": "bout"}
"""Each counter a virtual server and a member shows, and its `show stat` column."""
RETRY = 1.0
"""Seconds before trying again a configuration HAProxy accepted but could not load (a port in use)."""


@dataclass
class _Served:
    rendering: Rendering
    virtuals: dict[str, ServedVirtual]


class HaproxyEngine:
    """Serves virtual servers with HAProxy; same calls as `BuiltinEngine`."""

    name = "haproxy"
    stats_off_loop = True

    def __init__(self, runtime_dir: Path, binary: str = "haproxy", version: str | None = None,
                 loading: asyncio.Semaphore | None = None) -> None:
        self.version = version or installed_version(binary)
        self._loading = loading or asyncio.Semaphore(1)
        """Held while a configuration is checked and loaded (one the engines of a device share)."""
        self.errors: dict[str, str] = {}
        """Virtual servers (key `/partition/name`) not served as asked, with the reason."""
        self.process = HaproxyProcess(runtime_dir, binary)
        self._served: _Served | None = None
        self._rendered: Rendering | None = None
        """The last configuration rendered (whose fragments the next rendering keeps)."""
        self._refused: str | None = None
        self._refusal = ""
        self._retry_at = 0.0
        """When to try the refused configuration again (never: `haproxy -c` refused it)."""
        self._wanted: dict[str, ServedVirtual] = {}
        self._stat = ""
        """HAProxy's last `show stat` answer (read when asked for: `refresh_stats`), parsed once (`_rows`)."""
        self._parsed: tuple[str, list[dict[str, str]]] = ("", [])
        self._lock = asyncio.Lock()

    def retry_after(self) -> float | None:
        """Until the refused configuration may be tried again when HAProxy could not load it (a port in use);
        None when nothing waits (or `haproxy -c` refused it: only a change of configuration helps)."""
        if self._refused is None or self._retry_at == math.inf:
            return None
        return max(0.0, self._retry_at - time.monotonic())

    def cpu_seconds(self) -> float:
        """The CPU time its HAProxy has used (its `haproxy -c` runs count as the data plane process's)."""
        return self.process.cpu_seconds()

    def status(self) -> EngineStatus:
        """This engine, how many times HAProxy died and was started again, and its events."""
        return EngineStatus(self.name, self.version, self.process.restarts, self.process.events.recent())

    async def apply(self, desired: Iterable[ServedVirtual]) -> None:
        """Serve exactly the enabled virtual servers of `desired` (idempotent)."""
        async with self._lock:
            wanted = {virtual.key: virtual for virtual in desired if virtual.enabled}
            # off the event loop: a large configuration takes long enough to hold up the failover process's pings
            rendering = await asyncio.to_thread(render, list(wanted.values()), self.process.runtime_dir,
                                                self._rendered)
            self._rendered = rendering
            errors = dict(rendering.errors)
            served = self._served
            if served is not None and rendering.text == served.rendering.text:
                self._recovered()
                self.errors = errors
                return
            self._wanted = wanted
            changed = [key for key in rendering.frontends
                       if served is None or _differs(served.virtuals.get(key), wanted[key])]
            if rendering.text == self._refused and time.monotonic() < self._retry_at:
                self.errors = errors | dict.fromkeys(changed or rendering.frontends, self._refusal)
                return
            try:
                changes = rendering.server_changes(served.rendering) if served is not None else None
                if changes is not None:
                    await self._change_servers(changes, rendering)
                else:
                    await self._reload(rendering, check=True, served=served.rendering if served else None)
            except (ConfigurationRefused, StartFailed, OSError, RuntimeError, TimeoutError) as error:
                if (rendering.text, str(error)) != (self._refused, self._refusal):  # not each retry
                    self.process.events.record("refused", f"configuration not applied: {error}")
                self._refused, self._refusal = rendering.text, str(error)
                self._retry_at = math.inf if isinstance(error, ConfigurationRefused) else time.monotonic() + RETRY
                self.errors = errors | dict.fromkeys(changed or rendering.frontends, self._refusal)
                return
            self._recovered()
            self._served = _Served(rendering, {key: v for key, v in wanted.items() if key in rendering.frontends})
            self.errors = errors

    def _recovered(self) -> None:
        """What is wanted is served: a refusal before it is over."""
        if self._refused is not None:
            self.process.events.record("recovered", "the configuration wanted is served")
            self._refused = None

    async def _change_servers(self, changes: ServerChanges, rendering: Rendering) -> None:
        """Add, remove and set servers through the runtime API; what HAProxy refuses there (a removed server
        still has connections) a reload does, unchecked (only servers differ)."""
        socket = self.process.stats_socket
        try:
            for backend, server in changes.removed:
                await haproxy_runtime.remove_server(socket, backend, server)
            for (backend, server), line in changes.added.items():
                weight = rendering.states[(backend, server)].weight
                await haproxy_runtime.add_server(socket, backend, server, f"{line.endpoint} weight {weight}"
                                                 f"{line.options}", line.checked)
            for (backend, server), state in changes.states.items():
                await haproxy_runtime.set_server(socket, backend, server, state.weight, state.state)
        except (RuntimeError, ValueError):
            await self._reload(rendering, check=False)
            return
        self.process.write_files({"haproxy.cfg": rendering.text})  # what a restart starts with

    async def _reload(self, rendering: Rendering, check: bool, served: Rendering | None = None) -> None:
        """Use `rendering` in place of `served`, its new parts checked with `haproxy -c` first unless `check` is
        False (servers alone changed)."""
        async with self._loading:
            self.process.prepare()
            self.process.write_files(rendering.files)
            if check:
                await self.process.check(rendering.text_to_check(served))
            await self.process.use(rendering.text)
        self.process.remove_unused(rendering.files)
        for (backend, server), state in rendering.states.items():
            if state.state == "drain":  # the file says weight 0: now the state, with its weight
                await haproxy_runtime.set_server(self.process.stats_socket, backend, server, state.weight, state.state)

    async def stop_all(self, drain_timeout: float) -> None:
        """Stop serving everything: HAProxy stops accepting and lets connections finish for `drain_timeout`."""
        async with self._lock:
            await self.process.stop(drain_timeout)
            self._served = None
            self._rendered = None
            self._refused = None
            self._wanted = {}
            self._stat = ""
            self.errors = {}

    async def refresh_stats(self) -> None:
        """Read HAProxy's counters now (only when asked for: reading those of 11,000 virtual servers every second
        took more of HAProxy's and the data plane's time than their reloads, bench/agent.py)."""
        with contextlib.suppress(OSError, TimeoutError, ValueError):
            self._stat = await haproxy_runtime.show_stat_text(self.process.stats_socket)

    @property
    def _rows(self) -> list[dict[str, str]]:
        """The last `show stat` as rows, parsed once per answer: parsing every poll of a large configuration
        (26,000 rows with 11,000 virtual servers) took a fifth of the data plane's time (bench/agent.py)."""
        if self._parsed[0] is not self._stat:
            self._parsed = (self._stat, haproxy_runtime.stat_rows(self._stat))
        return self._parsed[1]

    @property
    def virtuals(self) -> dict[str, ServedVirtual]:
        """What is being served, by virtual key."""
        return dict(self._served.virtuals) if self._served is not None else {}

    def stats(self) -> dict[str, Any]:
        """Counters and health, shaped as `BuiltinEngine.stats()` (plus `requests` per virtual server)."""
        served, errors, wanted = self._served, self.errors, self._wanted  # once: this may run on another thread
        rows = {(row.get("pxname"), row.get("svname")): row for row in self._rows}
        virtuals: dict[str, Any] = {}
        pools: dict[str, dict[str, Any]] = {}
        for key, error in errors.items():
            virtual = wanted.get(key)
            if virtual is not None:
                virtuals[key] = {"address": virtual.address, "port": virtual.port,
                                 "pool": virtual.pool.key if virtual.pool is not None else None,
                                 "listening": False, "error": error} | _counters({}) | {"requests": 0}
        if served is None:
            return {"virtuals": virtuals, "pools": pools}
        rendering = served.rendering
        for key, virtual in served.virtuals.items():
            row = rows.get((rendering.frontends[key], "FRONTEND"), {})
            virtuals[key] = {"address": virtual.address, "port": virtual.port,
                             "pool": virtual.pool.key if virtual.pool is not None else None,
                             "listening": bool(row) and row.get("status") == "OPEN",
                             "error": errors.get(key)} | _counters(row) | {"requests": _int(row, "req_tot")}
            served_pools = [virtual.pool] + [rule.pool for rule in virtual.rules]
            for pool in served_pools:
                if pool is None or pool.key in pools:
                    continue
                backends = [name for (pool_key, _), name in rendering.backends.items() if pool_key == pool.key]
                members = {}
                for member in pool.members:
                    found = [rows.get((backend, rendering.servers.get((backend, member.key)))) for backend in backends]
                    found = [row for row in found if row]
                    counters = {name: sum(_counters(row)[name] for row in found) for name in COUNTERS}
                    members[member.key] = {"health": _health(found[0] if found else {}, pool.monitor is not None),
                                           "enabled": member.enabled, "state": member.state,
                                           "weight": member.weight} | counters
                pools[pool.key] = members
        return {"virtuals": virtuals, "pools": pools}


def installed_version(binary: str) -> str:
    """What `binary -v` says its version is ("unknown" if it says nothing)."""
    try:
        return haproxy_version(binary)
    except EngineUnavailable:
        return "unknown"


def _differs(old: ServedVirtual | None, new: ServedVirtual) -> bool:
    return old is not new and old != new


def _int(row: dict[str, str], name: str) -> int:
    value = row.get(name) or ""
    return int(value) if value.isdigit() else 0


def _counters(row: dict[str, str]) -> dict[str, int]:
    return {name: _int(row, column) for name, column in COUNTERS.items()}


def _health(row: dict[str, str], monitored: bool) -> str:
    """up, down or unchecked, as the builtin monitors say it."""
    if not monitored:
        return "up"
    status = row.get("status", "")
    check = row.get("check_status", "")
    if status.startswith("DOWN") or (status in ("MAINT", "DRAIN") and check.startswith("L") and "OK" not in check):
        return "down"
    if status.startswith("UP") or (check.startswith("L") and "OK" in check):
        return "up"
    return "unchecked"

