"""The builtin proxy engine: serves a desired set of virtual servers, with their pools' monitors.

The caller (failover/config side) describes what this device must serve now as `ServedVirtual`
values — built from API dicts with `served_from_config` or `catalog.served_from_objects` — and calls
`apply()` whenever that changes; the engine starts, updates and stops proxies and monitors to
match. A virtual server that stops being served (or moves to another address:port) stops
accepting at once and drains its open connections in the background for up to `drain_timeout`.
"""

import asyncio
import functools
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from tandem._version import __version__
from tandem.dataplane.balancer import LB_METHODS, Balancer
from tandem.dataplane.engine_events import EngineStatus
from tandem.dataplane.monitor import MonitorConfig, PoolMonitor
from tandem.dataplane.proxy import VirtualServerProxy
from tandem.dataplane.stats import Counters, PoolStats, Stats
from tandem.models.fields import member_key, resolve_reference
from tandem.models.resources import (
    DEFAULT_LB_METHOD,
    DEFAULT_PARTITION,
    DEFAULT_TRAFFIC_GROUP,
    HTTP_METHOD,
    HTTP_PATH,
    HTTP_STATUS,
    MONITOR_INTERVAL,
    MONITOR_TIMEOUT,
    member_state,
)

log = logging.getLogger(__name__)

NOT_TCP = "the builtin engine serves tcp virtual servers only: run the device with --engine haproxy"
NOT_TLS = "the builtin engine does not reach pool members over TLS: run the device with --engine haproxy"
NOT_UDP = "udp virtual servers are served by the kernel: run the device with --engine nftables (as root)"
LASTING = (NOT_TCP, NOT_TLS, NOT_UDP)
"""Why the builtin engine does not serve a virtual server whatever it retries."""
RETRY = 0.05
"""Seconds before trying again a virtual server that could not listen."""


@dataclass(frozen=True)
class ServedMember:
    """A pool member to send to (when its `state` is `enabled` and it is not down); `drain`: no new
    connections, open ones finish; `disabled`: none at all. `weight` 0: no new connections (the builtin
    balancer ignores other weights: every eligible member counts the same)."""

    address: str
    port: int
    state: str = "enabled"
    weight: int = 1

    @property
    def key(self) -> str:
        return member_key(self.address, self.port)

    @property
    def enabled(self) -> bool:
        """Not disabled (a draining member is enabled)."""
        return self.state != "disabled"


@dataclass(frozen=True)
class ServedTls:
    """How a pool reaches its members over TLS: verified against the PEM CA bundle `ca` (named
    `ca_reference`, `/partition/name`), or not verified (`verify` false); `server_name`: the SNI sent
    (and, verified, the name the member's certificate must hold)."""

    verify: bool = True
    ca: str | None = None
    ca_reference: str | None = None
    server_name: str | None = None


@dataclass(frozen=True)
class ServedPool:
    """A pool as served: balancing method, members, health monitor (None: members always up)."""

    partition: str
    name: str
    lb_method: str = DEFAULT_LB_METHOD
    members: tuple[ServedMember, ...] = ()
    monitor: MonitorConfig | None = None
    persistence: str = "none"
    tls: ServedTls | None = None
    """None: members are reached in the clear."""

    def __post_init__(self) -> None:
        if self.lb_method not in LB_METHODS:
            raise ValueError(f"pool /{self.partition}/{self.name}: unknown lb method {self.lb_method!r}")

    @property
    def key(self) -> str:
        return f"/{self.partition}/{self.name}"


@dataclass(frozen=True)
class ServedCertificate:
    """A certificate as served: its PEM chain (leaf first) and `key`, its PEM private key (never shown in
    a repr); `reference` is its `/partition/name` (a field already holds the name `key`)."""

    partition: str
    name: str
    certificate: str
    key: str = field(repr=False)

    @property
    def reference(self) -> str:
        return f"/{self.partition}/{self.name}"


@dataclass(frozen=True)
class ServedRule:
    """One rule of an http/https virtual server: every given condition must hold (None / empty: any);
    the first rule that matches acts (`forward` to `pool`, `redirect` to `location` with `status`,
    `respond` with `status`, `reject`)."""

    name: str
    host: str | None = None
    path: str | None = None
    path_type: str = "prefix"
    methods: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    action: str = "forward"
    pool: ServedPool | None = None
    location: str | None = None
    status: int | None = None


@dataclass(frozen=True)
class ServedVirtual:
    """One virtual server as the engine serves it. `pool` None: connections are accepted and closed
    (http/https: requests no rule takes are answered 503)."""

    partition: str
    name: str
    address: str
    port: int
    pool: ServedPool | None = None
    enabled: bool = True
    traffic_group: str = DEFAULT_TRAFFIC_GROUP
    protocol: str = "tcp"
    rules: tuple[ServedRule, ...] = ()
    certificates: tuple[ServedCertificate, ...] = ()
    forwarded_for: bool = True
    proxy_protocol: bool = False
    snat: str = "none"
    snat_address: str | None = None
    """`snat` automap: the source address of connections to members (the traffic group's, `Catalog`)."""

    @functools.cached_property
    def key(self) -> str:  # worked out once: the engines ask it of every virtual server at each change
        return f"/{self.partition}/{self.name}"


def monitor_from_config(monitor: Mapping[str, Any]) -> MonitorConfig:
    """A `Monitor` resource (dict as the API returns it) as the engine uses it."""
    return MonitorConfig(type=monitor["type"], interval=float(monitor.get("interval") or MONITOR_INTERVAL),
                         timeout=float(monitor.get("timeout") or MONITOR_TIMEOUT),
                         path=monitor.get("path") or HTTP_PATH,
                         expected_status=int(monitor.get("expected_status") or HTTP_STATUS),
                         rise=int(monitor.get("rise") or 1), fall=int(monitor.get("fall") or 1),
                         method=monitor.get("method") or HTTP_METHOD, host=monitor.get("host"),
                         tls=bool(monitor.get("tls", False)))


def _served_tls(pool: Mapping[str, Any], ca: Mapping[str, Any] | None) -> ServedTls | None:
    tls = pool.get("tls")
    if tls is None:
        return None
    reference = "/{}/{}".format(*resolve_reference(pool.get("partition", DEFAULT_PARTITION), tls["ca"])) \
        if tls.get("ca") else None
    return ServedTls(verify=bool(tls.get("verify", True)), ca=ca["certificate"] if ca is not None else None,
                     ca_reference=reference, server_name=tls.get("server_name"))


def served_pool(pool: Mapping[str, Any], monitor: Mapping[str, Any] | None,
                ca: Mapping[str, Any] | None = None) -> ServedPool:
    """A `Pool` dict (members included) with its `Monitor` dict and its CA bundle's `Certificate` dict."""
    return ServedPool(
        partition=pool.get("partition", DEFAULT_PARTITION), name=pool["name"],
        lb_method=pool.get("lb_method", DEFAULT_LB_METHOD),
        members=tuple(ServedMember(m["address"], int(m["port"]), member_state(m), int(m.get("weight", 1)))
                      for m in pool.get("members") or ()),
        monitor=monitor_from_config(monitor) if monitor is not None else None,
        persistence=pool.get("persistence", "none"), tls=_served_tls(pool, ca))


def _served_rule(rule: Mapping[str, Any], pool: ServedPool | None) -> ServedRule:
    match = rule.get("match") or {}
    return ServedRule(name=rule["name"], host=match.get("host"), path=match.get("path"),
                      path_type=match.get("path_type", "prefix"), methods=tuple(match.get("methods") or ()),
                      headers=tuple((h["name"], h["value"]) for h in match.get("headers") or ()),
                      action=rule["action"], pool=pool, location=rule.get("location"), status=rule.get("status"))


def served_from_config(virtual: Mapping[str, Any], pool: Mapping[str, Any] | None,
                       monitor: Mapping[str, Any] | None, rule_pools: Sequence[ServedPool | None] = (),
                       certificates: Sequence[ServedCertificate] = ()) -> ServedVirtual:
    """A `VirtualServer` dict with its `Pool` dict (members included) and that pool's `Monitor` dict;
    `rule_pools` the pool of each of its rules (in order; missing ones None), `certificates` its own."""
    rules = virtual.get("rules") or ()
    pools = list(rule_pools) + [None] * (len(rules) - len(rule_pools))
    served_rules = tuple(_served_rule(rule, rule_pool) for rule, rule_pool in zip(rules, pools, strict=False))
    return ServedVirtual(partition=virtual.get("partition", DEFAULT_PARTITION), name=virtual["name"],
                         address=virtual["address"], port=int(virtual["port"]),
                         pool=served_pool(pool, monitor) if pool is not None else None,
                         enabled=bool(virtual.get("enabled", True)),
                         traffic_group=virtual.get("traffic_group", DEFAULT_TRAFFIC_GROUP),
                         protocol=virtual.get("protocol", "tcp"),
                         rules=served_rules,
                         certificates=tuple(certificates), forwarded_for=bool(virtual.get("forwarded_for", True)),
                         proxy_protocol=bool(virtual.get("proxy_protocol", False)), snat=virtual.get("snat", "none"))


@dataclass
class _PoolEntry:
    served: ServedPool
    monitor: PoolMonitor
    stats: PoolStats
    balancer: Balancer


@dataclass
class _VirtualEntry:
    served: ServedVirtual
    stats: Stats
    proxy: VirtualServerProxy


def _unservable(virtual: ServedVirtual) -> str | None:
    """Why the builtin engine cannot serve `virtual` (None: it can)."""
    if virtual.protocol == "udp":
        return NOT_UDP
    if virtual.protocol != "tcp":
        return NOT_TCP
    if virtual.pool is not None and virtual.pool.tls is not None:
        return NOT_TLS
    return None


def _members(pool: ServedPool) -> list[tuple[str, int]]:
    return [(m.address, m.port) for m in pool.members]


def _balancer(pool: ServedPool, monitor: PoolMonitor, stats: PoolStats) -> Balancer:
    return Balancer(pool.lb_method, [(m.address, m.port, m.state == "enabled" and m.weight > 0) for m in pool.members],
                    health=monitor.state, connections=stats.current)


@dataclass
class BuiltinEngine:
    """Serves tcp virtual servers with asyncio TCP proxies; works on any asyncio loop. http/https ones,
    and those whose pool reaches its members over TLS, are not served (`errors` says why); pools'
    persistence and member weights other than 0 are ignored."""

    name: ClassVar[str] = "builtin"
    version: ClassVar[str] = __version__
    stats_off_loop: ClassVar[bool] = False
    readies_standby: ClassVar[bool] = False

    connect_timeout: float = 3.0
    """Seconds to wait for a member to accept a connection before trying the next one."""
    drain_timeout: float = 10.0
    """Seconds a virtual server that stops being served lets its open connections finish."""
    errors: dict[str, str] = field(default_factory=dict)
    """Virtual servers (key `/partition/name`) that could not listen, with the reason; retried by apply()."""

    def status(self) -> EngineStatus:
        """This engine (it runs in the data plane process: no restarts, no events of its own)."""
        return EngineStatus(self.name, self.version)

    def __post_init__(self) -> None:
        self._virtuals: dict[str, _VirtualEntry] = {}
        self._pools: dict[str, _PoolEntry] = {}
        self._draining: set[asyncio.Task[None]] = set()
        self._refused: dict[str, ServedVirtual] = {}
        self._lock = asyncio.Lock()

    async def apply(self, desired: Iterable[ServedVirtual]) -> None:
        """Serve exactly the enabled virtual servers of `desired` (idempotent)."""
        async with self._lock:
            wanted: dict[str, ServedVirtual] = {}
            self._refused.clear()
            for virtual in desired:
                if not virtual.enabled:
                    continue
                reason = _unservable(virtual)
                if reason is None:
                    wanted[virtual.key] = virtual
                else:
                    self._refused[virtual.key] = virtual
                    self.errors[virtual.key] = reason
            for key in [key for key, message in self.errors.items() if message in LASTING]:
                if key not in self._refused:
                    del self.errors[key]
            pools: dict[str, ServedPool] = {}
            for virtual in wanted.values():
                if virtual.pool is not None:
                    pools.setdefault(virtual.pool.key, virtual.pool)

            retired = False
            for key, entry in list(self._virtuals.items()):
                virtual = wanted.get(key)
                if virtual is None or (virtual.address, virtual.port) != (entry.served.address, entry.served.port):
                    self._retire(entry.proxy)
                    retired = True
                    del self._virtuals[key]
                    if virtual is None:
                        self.errors.pop(key, None)
                    else:  # moved: a new proxy, the same counters
                        entry.proxy = self._proxy(virtual, entry.stats)
                        self._virtuals[key] = entry
            if retired:
                await asyncio.sleep(0)  # some loops release the listening socket on the next iteration

            for key, pool in pools.items():
                pool_entry = self._pools.get(key)
                if pool_entry is None:
                    monitor = PoolMonitor(key, pool.monitor, _members(pool))
                    stats = PoolStats()
                    self._pools[key] = _PoolEntry(pool, monitor, stats, _balancer(pool, monitor, stats))
                    monitor.start()
                elif pool_entry.served != pool:
                    await pool_entry.monitor.update(pool.monitor, _members(pool))
                    pool_entry.stats.retain({m.key for m in pool.members})
                    pool_entry.balancer = _balancer(pool, pool_entry.monitor, pool_entry.stats)
                    pool_entry.served = pool
            for key in self._pools.keys() - pools.keys():
                await self._pools.pop(key).monitor.stop()

            for key, virtual in wanted.items():
                pool_entry = self._pools.get(virtual.pool.key) if virtual.pool is not None else None
                balancer = pool_entry.balancer if pool_entry is not None else Balancer(DEFAULT_LB_METHOD, [])
                pool_stats = pool_entry.stats if pool_entry is not None else PoolStats()
                entry = self._virtuals.get(key)
                if entry is None:
                    stats = Stats(Counters(), pool_stats)
                    entry = self._virtuals[key] = _VirtualEntry(virtual, stats, self._proxy(virtual, stats))
                entry.served = virtual
                entry.proxy.update(balancer, pool_stats)
                if not entry.proxy.listening:
                    try:
                        await entry.proxy.start()
                    except OSError as error:
                        where = member_key(virtual.address, virtual.port)
                        message = f"cannot listen on {where}: {error.strerror or error}"
                        if self.errors.get(key) != message:
                            log.warning("virtual server %s: %s", key, message)
                        self.errors[key] = message
                    else:
                        self.errors.pop(key, None)

    def _proxy(self, virtual: ServedVirtual, stats: Stats) -> VirtualServerProxy:
        return VirtualServerProxy(virtual.key, virtual.address, virtual.port, Balancer(DEFAULT_LB_METHOD, []), stats,
                                  connect_timeout=self.connect_timeout)

    def _retire(self, proxy: VirtualServerProxy) -> None:
        """Stop accepting now; drain in the background."""
        proxy.stop_accepting()
        task = asyncio.get_running_loop().create_task(proxy.stop(self.drain_timeout))
        self._draining.add(task)
        task.add_done_callback(self._draining.discard)

    async def stop_all(self, drain_timeout: float) -> None:
        """Stop serving everything: stop accepting at once, drain for up to `drain_timeout`, stop monitors."""
        async with self._lock:
            proxies = [entry.proxy for entry in self._virtuals.values()]
            self._virtuals.clear()
            self._refused.clear()
            self.errors.clear()
            for proxy in proxies:
                proxy.stop_accepting()
            await asyncio.gather(*(proxy.stop(drain_timeout) for proxy in proxies), *list(self._draining),
                                 return_exceptions=True)
            pools = list(self._pools.values())
            self._pools.clear()
            await asyncio.gather(*(pool.monitor.stop() for pool in pools), return_exceptions=True)

    @property
    def virtuals(self) -> dict[str, ServedVirtual]:
        """What is being served, by virtual key."""
        return {key: entry.served for key, entry in self._virtuals.items()}

    async def refresh_stats(self) -> None:
        """Nothing to do: the proxies count as they go."""

    def cpu_seconds(self) -> float:
        """Nothing: the proxies run in the data plane process (whose own time counts)."""
        return 0.0

    def retry_after(self) -> float | None:
        """`RETRY` while a virtual server could not listen; None when every error is lasting (`LASTING`)."""
        return RETRY if any(message not in LASTING for message in self.errors.values()) else None

    def listening(self, key: str) -> bool:
        entry = self._virtuals.get(key)
        return entry is not None and entry.proxy.listening

    def stats(self) -> dict[str, Any]:
        """Counters and health: {"virtuals": {key: {...}}, "pools": {key: {member: {"health", ...}}}}."""
        virtuals = {}
        for key, entry in self._virtuals.items():
            served = entry.served
            virtuals[key] = {
                "address": served.address, "port": served.port,
                "pool": served.pool.key if served.pool is not None else None,
                "listening": entry.proxy.listening, "error": self.errors.get(key),
            } | entry.stats.virtual.snapshot()
        for key, served in self._refused.items():
            virtuals[key] = {"address": served.address, "port": served.port,
                             "pool": served.pool.key if served.pool is not None else None,
                             "listening": False, "error": self.errors.get(key)} | Counters().snapshot()
        pools: dict[str, dict[str, Any]] = {}
        for key, pool_entry in self._pools.items():
            members = {}
            for member in pool_entry.served.members:
                counters = pool_entry.stats.members.get(member.key) or Counters()
                members[member.key] = {"health": pool_entry.monitor.state(member.key), "enabled": member.enabled,
                                       "state": member.state, "weight": member.weight} | counters.snapshot()
            pools[key] = members
        return {"virtuals": virtuals, "pools": pools}
