"""Health monitors of the builtin engine: one probe loop per pool member.

`tcp`: the member is up when a TCP connection opens within `timeout`. `http`: the member is up
when, within `timeout`, it answers `method path` (HTTP/1.0, `Host: host` or `address:port`,
`Connection: close`) with a status line whose code equals `expected_status`. With `tls`, the probe
speaks TLS (the member's certificate is not verified; `host` is sent as SNI): a tcp probe succeeds
when the handshake completes.

Each member is probed every `interval` seconds (a probe that takes longer delays the next one:
probes of one member never overlap). A member goes down after `fall` failed probes in a row and up
again after `rise` successful ones in a row. States: "unchecked" (monitored, no answer yet; it gets
traffic, like an up member: one success makes it up, `fall` failures down), "up", "down". A pool
without a monitor has every member "up".
"""

import asyncio
import logging
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import get_args

from tandem.models.fields import member_key
from tandem.models.resources import HTTP_METHOD, HTTP_PATH, HTTP_STATUS, MONITOR_INTERVAL, MONITOR_TIMEOUT, MonitorType

log = logging.getLogger(__name__)

UP, DOWN, UNCHECKED = "up", "down", "unchecked"
STATUS_LINE_LIMIT = 8192


@dataclass(frozen=True)
class MonitorConfig:
    """What a monitor checks and how often (the `Monitor` resource's fields the engine uses)."""

    type: MonitorType
    interval: float = MONITOR_INTERVAL
    timeout: float = MONITOR_TIMEOUT
    path: str = HTTP_PATH
    expected_status: int = HTTP_STATUS
    rise: int = 1
    fall: int = 1
    method: str = HTTP_METHOD
    host: str | None = None
    tls: bool = False

    def __post_init__(self) -> None:
        if self.type not in get_args(MonitorType):
            raise ValueError(f"unknown monitor type {self.type!r}, expected tcp or http")
        if self.interval <= 0 or self.timeout <= 0:
            raise ValueError("monitor interval and timeout must be positive")
        if self.rise < 1 or self.fall < 1:
            raise ValueError("monitor rise and fall must be at least 1")


def _unverified() -> ssl.SSLContext:
    """A client TLS context that accepts any certificate (a health check, not a trust decision)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


_UNVERIFIED = _unverified()


def _tls(tls: bool, host: str | None) -> dict[str, object]:
    """open_connection's TLS arguments: none, or unverified TLS with `host` as SNI."""
    return {"ssl": _UNVERIFIED, "server_hostname": host or ""} if tls else {}


async def probe_tcp(address: str, port: int, timeout: float, tls: bool = False, host: str | None = None) -> bool:
    """True when a TCP connection to address:port opens (with `tls`: and its handshake completes) within
    `timeout` seconds."""
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(address, port, **_tls(tls, host))  # type: ignore[arg-type]
    except (OSError, TimeoutError):
        return False
    writer.transport.abort()
    return True


async def probe_http(address: str, port: int, timeout: float, path: str, expected_status: int,
                     method: str = HTTP_METHOD, host: str | None = None, tls: bool = False) -> bool:
    """True when `method path` on address:port (Host: `host`, or address:port) answers `expected_status`
    within `timeout` seconds."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(address, port, limit=STATUS_LINE_LIMIT,
                                                           **_tls(tls, host))  # type: ignore[arg-type]
            writer.write(f"{method} {path} HTTP/1.0\r\nHost: {host or member_key(address, port)}\r\n"
                         "Connection: close\r\nUser-Agent: tandem-monitor\r\n\r\n".encode("ascii"))
            line = await reader.readline()
    except (OSError, TimeoutError, ValueError, UnicodeEncodeError):
        return False
    finally:
        if writer is not None:
            writer.transport.abort()
    parts = line.split(None, 2)
    return (len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit()
            and int(parts[1]) == expected_status)


async def probe(config: MonitorConfig, address: str, port: int) -> bool:
    """One probe of one member with `config`."""
    if config.type == "http":
        return await probe_http(address, port, config.timeout, config.path, config.expected_status, config.method,
                                config.host, config.tls)
    return await probe_tcp(address, port, config.timeout, config.tls, config.host)


class PoolMonitor:
    """The health of one pool's members, kept up to date by probe loops while started."""

    def __init__(self, pool_key: str, monitor: MonitorConfig | None, members: Iterable[tuple[str, int]],
                 on_change: Callable[[], None] | None = None) -> None:
        self.pool_key = pool_key
        self.monitor = monitor
        self._on_change = on_change
        """Called when a member's state changes (an engine that writes the members out, not one that asks)."""
        self._members: dict[str, tuple[str, int]] = {member_key(a, p): (a, p) for a, p in members}
        self._states: dict[str, str] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._running = False
        self._reset_states()

    def _reset_states(self) -> None:
        initial = UNCHECKED if self.monitor is not None else UP
        self._states = {key: initial for key in self._members}

    def state(self, member: str) -> str:
        """"up", "down" or "unchecked" for a member key (`address:port`); "up" for an unknown member
        of a pool without a monitor, "unchecked" with one."""
        return self._states.get(member, UP if self.monitor is None else UNCHECKED)

    def states(self) -> dict[str, str]:
        return dict(self._states)

    def start(self) -> None:
        """Start probing (in the running loop); nothing to do without a monitor."""
        self._running = True
        for key in self._members:
            self._start_probe(key)

    async def stop(self) -> None:
        """Stop probing and wait until every probe has ended."""
        self._running = False
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def update(self, monitor: MonitorConfig | None, members: Iterable[tuple[str, int]]) -> None:
        """Follow a changed monitor or member list. A changed monitor starts over (every member
        "unchecked"); a changed member list keeps the state of the members that stay."""
        wanted = {member_key(a, p): (a, p) for a, p in members}
        if monitor != self.monitor:
            running = self._running
            await self.stop()
            self.monitor = monitor
            self._members = wanted
            self._reset_states()
            if running:
                self.start()
            return
        gone = [key for key in self._members if key not in wanted]
        for key in gone:
            del self._members[key]
            self._states.pop(key, None)
        ended = [task for key in gone if (task := self._tasks.pop(key, None)) is not None]
        for task in ended:
            task.cancel()
        await asyncio.gather(*ended, return_exceptions=True)
        for key, member in wanted.items():
            if key not in self._members:
                self._members[key] = member
                self._states[key] = UNCHECKED if monitor is not None else UP
                if self._running:
                    self._start_probe(key)

    def _start_probe(self, key: str) -> None:
        if self.monitor is None or key in self._tasks:
            return
        address, port = self._members[key]
        self._tasks[key] = asyncio.get_running_loop().create_task(
            self._probe_loop(self.monitor, key, address, port), name=f"monitor {self.pool_key} {key}")

    async def _probe_loop(self, config: MonitorConfig, key: str, address: str, port: int) -> None:
        last, run = None, 0  # the last result and how many times in a row
        while True:
            started = time.monotonic()
            try:
                healthy = await probe(config, address, port)
            except Exception:
                log.exception("pool %s member %s: probe failed", self.pool_key, key)
                healthy = False
            run = run + 1 if healthy == last else 1
            last = healthy
            state = _next_state(self._states.get(key, UNCHECKED), healthy, run, config)
            if self._states.get(key) != state and key in self._members:
                log.info("pool %s member %s is %s (%s monitor)", self.pool_key, key, state, config.type)
                self._states[key] = state
                if self._on_change is not None:
                    self._on_change()
            await asyncio.sleep(max(0.0, config.interval - (time.monotonic() - started)))


def _next_state(current: str, healthy: bool, run: int, config: MonitorConfig) -> str:
    """A member's state after a probe that was `healthy`, the `run`-th such result in a row."""
    if healthy:
        return UP if current == UNCHECKED or run >= config.rise else current
    return DOWN if run >= config.fall else current
