"""Health monitors of the builtin engine: one probe loop per pool member.

`tcp`: the member is up when a TCP connection opens within `timeout`. `http`: the member is up
when, within `timeout`, it answers `GET path` (HTTP/1.0, `Host: address:port`,
`Connection: close`) with a status line whose code equals `expected_status`.

Each member is probed every `interval` seconds (a probe that takes longer delays the next one:
probes of one member never overlap). A member goes down after one failed probe and up again
after one successful probe. States: "unchecked" (monitored, no answer yet; it gets traffic),
"up", "down". A pool without a monitor has every member "up".
"""

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import get_args

from tandem.models.fields import member_key
from tandem.models.resources import HTTP_PATH, HTTP_STATUS, MONITOR_INTERVAL, MONITOR_TIMEOUT, MonitorType

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

    def __post_init__(self) -> None:
        if self.type not in get_args(MonitorType):
            raise ValueError(f"unknown monitor type {self.type!r}, expected tcp or http")
        if self.interval <= 0 or self.timeout <= 0:
            raise ValueError("monitor interval and timeout must be positive")


async def probe_tcp(address: str, port: int, timeout: float) -> bool:
    """True when a TCP connection to address:port opens within `timeout` seconds."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            transport, _ = await loop.create_connection(asyncio.Protocol, address, port)
    except (OSError, TimeoutError):
        return False
    transport.close()
    return True


async def probe_http(address: str, port: int, timeout: float, path: str, expected_status: int) -> bool:
    """True when `GET path` on address:port answers `expected_status` within `timeout` seconds."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(address, port, limit=STATUS_LINE_LIMIT)
            host = member_key(address, port)
            writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n"
                         "User-Agent: tandem-monitor\r\n\r\n".encode("ascii"))
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
        return await probe_http(address, port, config.timeout, config.path, config.expected_status)
    return await probe_tcp(address, port, config.timeout)


class PoolMonitor:
    """The health of one pool's members, kept up to date by probe loops while started."""

    def __init__(self, pool_key: str, monitor: MonitorConfig | None, members: Iterable[tuple[str, int]]) -> None:
        self.pool_key = pool_key
        self.monitor = monitor
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
        while True:
            started = time.monotonic()
            try:
                healthy = await probe(config, address, port)
            except Exception:
                log.exception("pool %s member %s: probe failed", self.pool_key, key)
                healthy = False
            state = UP if healthy else DOWN
            if self._states.get(key) != state and key in self._members:
                log.info("pool %s member %s is %s (%s monitor)", self.pool_key, key, state, config.type)
                self._states[key] = state
            await asyncio.sleep(max(0.0, config.interval - (time.monotonic() - started)))
