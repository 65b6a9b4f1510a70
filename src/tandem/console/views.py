"""What the console's pages show, read through the device's API and held as typed records: the overview
(devices, device groups, traffic groups, failover events, peers, agents) and the traffic page (virtual
servers, pools and members with health and counters)."""

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tandem.console.api import Answer, DeviceApi, segment
from tandem.models.api import CONSOLE_PATH

EVENTS_SHOWN = 10
TRAFFIC_PAGE = 200
"""Virtual servers on one page of the traffic page (the next page follows the API's cursor), and pools shown
(the first of the partition: a pool's own page has the rest)."""
SPARK_POINTS = 30
"""Samples (one a second) in a virtual server's sparkline."""
SPARK_WIDTH, SPARK_HEIGHT = 90, 20


@dataclass(frozen=True)
class Caller:
    """Who the console reads and writes as: the session's token, from the browser's address."""

    api: DeviceApi
    token: str
    source: str

    async def get(self, path: str, **params: Any) -> Answer:
        return await self.api.call("GET", path, self.token, self.source, params=params or None)

    async def send(self, method: str, path: str, body: Any = None) -> Answer:
        return await self.api.call(method, path, self.token, self.source, body)


def _records(answer: Answer) -> list[dict[str, Any]]:
    return list(answer.body.get("records", [])) if answer.ok and isinstance(answer.body, dict) else []


@dataclass(frozen=True)
class DeviceRow:
    name: str
    management_url: str
    version: str | None
    connected: bool | None
    """Whether this device's link to it is up (None: it is this device)."""
    message: str

    @property
    def is_self(self) -> bool:
        return self.connected is None

    @property
    def console_url(self) -> str:
        return f"{self.management_url.rstrip('/')}{CONSOLE_PATH}/"


@dataclass(frozen=True)
class SyncMember:
    name: str
    status: str
    pending_changes: int
    connected: bool
    message: str


@dataclass(frozen=True)
class GroupRow:
    name: str
    type: str
    status: str
    members: tuple[SyncMember, ...]
    conflicts: tuple[str, ...]
    """The conflicts' and broken rules' messages."""


@dataclass(frozen=True)
class TrafficGroupMember:
    name: str
    state: str
    alive: bool
    offline: bool
    score: int
    down: tuple[str, ...]


@dataclass(frozen=True)
class TrafficGroupRow:
    name: str
    state_here: str
    active_device: str | None
    ha_order: tuple[str, ...]
    addresses: tuple[str, ...]
    members: tuple[TrafficGroupMember, ...]
    """In HA order (members outside it last)."""

    @property
    def active_here(self) -> bool:
        return self.state_here == "active"


@dataclass(frozen=True)
class EventRow:
    at: str
    """Local time of day, HH:MM:SS (UTC)."""
    traffic_group: str
    from_state: str
    to_state: str
    reason: str
    kind: str


@dataclass(frozen=True)
class PeerRow:
    name: str
    state: str
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class AgentRow:
    """An agent that holds (or held) a lease of this device, with what it publishes in it: its source, how many
    services it writes, its last error and a few of its problems."""

    partition: str
    name: str
    holder: str
    expired: bool
    source: str = ""
    owned: int | None = None
    error: str = ""
    problem_count: int = 0
    problems: tuple[str, ...] = ()


def _clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(at))


def devices_of(answer: Answer) -> tuple[DeviceRow, ...]:
    return tuple(DeviceRow(r["name"], r.get("management_url", ""), r.get("version"), r.get("connected"),
                           r.get("message", "")) for r in _records(answer))


def group_of(status: dict[str, Any]) -> GroupRow:
    members = tuple(SyncMember(m["name"], m["status"], int(m.get("pending_changes", 0)), bool(m.get("connected")),
                               m.get("message", "")) for m in status.get("members", []))
    conflicts = tuple(str(c.get("message", "")) for c in status.get("conflicts", []))
    return GroupRow(status["name"], status.get("type", ""), status.get("status", ""), members, conflicts)


def traffic_groups_of(failover: dict[str, Any]) -> tuple[TrafficGroupRow, ...]:
    rows = []
    for group in failover.get("traffic_groups", []):
        members = tuple(TrafficGroupMember(m["name"], m.get("state", ""), bool(m.get("alive")),
                                           bool(m.get("offline")), int(m.get("score", 100)), tuple(m.get("down", ())))
                        for m in group.get("members", []))
        order = tuple(group.get("ha_order", ()))
        ranked = tuple(sorted(members, key=lambda m: order.index(m.name) if m.name in order else len(order)))
        rows.append(TrafficGroupRow(group["name"], group.get("state", ""), group.get("active_device"), order,
                                    tuple(group.get("addresses", ())), ranked))
    return tuple(rows)


def events_of(answer: Answer) -> tuple[EventRow, ...]:
    return tuple(EventRow(_clock(e["at"]), e.get("traffic_group", ""), e.get("from_state", ""),
                          e.get("to_state", ""), e.get("reason", ""), e.get("kind", "transition"))
                 for e in reversed(_records(answer)))


def peers_of(answer: Answer) -> tuple[PeerRow, ...]:
    rows = []
    for peer in _records(answer):
        status = peer.get("status") or {}
        addresses = (peer.get("remote") or {}).get("ip_addresses") or ()
        rows.append(PeerRow(peer.get("name") or peer.get("uuid", ""), status.get("state", ""), tuple(addresses)))
    return tuple(rows)


def agents_of(answer: Answer) -> tuple[AgentRow, ...]:
    """The leases' holders with what they publish in them (anyone who may take a lease writes its data: what
    is not of the expected shape is left out)."""
    rows = []
    for lease in _records(answer):
        data = _mapping(lease.get("data"))
        problems = {**_mapping(data.get("source_errors")), **_mapping(data.get("problems"))}
        owned, count = data.get("owned"), data.get("problem_count")
        rows.append(AgentRow(str(lease.get("partition", "")), str(lease.get("name", "")), str(lease.get("holder", "")),
                             bool(lease.get("expired")), str(data.get("source") or ""),
                             owned if isinstance(owned, int) else None, str(data.get("error") or ""),
                             count if isinstance(count, int) else len(problems),
                             tuple(f"{key}: {text}" for key, text in problems.items())))
    return tuple(rows)


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class ClusterPart:
    """What the overview shows that changes slowly: the device, devices, groups, peers, agents."""

    device: str
    version: str
    devices: tuple[DeviceRow, ...]
    groups: tuple[GroupRow, ...]
    peers: tuple[PeerRow, ...]
    agents: tuple[AgentRow, ...]
    virtual_servers: int
    problems: tuple[str, ...]
    """What could not be read, with the API's reason."""
    signed_out: bool
    """The API no longer takes the session's token."""


@dataclass(frozen=True)
class FailoverPart:
    """What the overview shows of failover: this device's state, the traffic groups, the last events."""

    state: str
    """This device's failover state (`offline` when it takes no traffic group)."""
    offline: bool
    reason: str
    traffic_groups: tuple[TrafficGroupRow, ...]
    events: tuple[EventRow, ...]
    problems: tuple[str, ...]
    signed_out: bool


async def cluster_part(caller: Caller) -> ClusterPart:
    info, devices, groups, peers, leases, virtuals = await asyncio.gather(
        caller.get("/api/device"), caller.get("/api/trust/devices"), caller.get("/api/device-groups"),
        caller.get("/api/cluster/peers"), caller.get("/api/leases"),
        caller.get("/api/virtuals", return_records="false"))
    problems = [f"{what}: {answer.message}" for what, answer in (
        ("device", info), ("devices", devices), ("device groups", groups), ("peers", peers), ("agents", leases))
        if not answer.ok]
    statuses = await asyncio.gather(*(caller.get(f"/api/device-groups/{segment(g['name'])}/status")
                                      for g in _records(groups)))
    problems += [f"device group: {s.message}" for s in statuses if not s.ok]
    device = info.body if info.ok else {}
    count = virtuals.body.get("num_records", 0) if virtuals.ok else 0
    return ClusterPart(device.get("name", ""), device.get("version", ""), devices_of(devices),
                       tuple(group_of(s.body) for s in statuses if s.ok), peers_of(peers), agents_of(leases),
                       int(count), tuple(problems), info.status == 401)


async def failover_part(caller: Caller) -> FailoverPart:
    failover, events = await asyncio.gather(caller.get("/api/failover/status"),
                                            caller.get("/api/failover/events", limit=EVENTS_SHOWN))
    problems = [f"{what}: {answer.message}" for what, answer in (("failover", failover), ("events", events))
                if not answer.ok]
    state = failover.body if failover.ok else {}
    return FailoverPart(state.get("state", "unknown"), bool(state.get("offline")), state.get("reason", ""),
                        traffic_groups_of(state), events_of(events), tuple(problems), failover.status == 401)


@dataclass(frozen=True)
class Overview:
    """Everything the overview shows: its two parts, read at their own pace (`live.OverviewReads`)."""

    cluster: ClusterPart
    failover: FailoverPart

    @property
    def problems(self) -> tuple[str, ...]:
        return self.cluster.problems + self.failover.problems

    @property
    def signed_out(self) -> bool:
        return self.cluster.signed_out or self.failover.signed_out


async def overview(caller: Caller) -> Overview:
    """Everything the overview shows, read at once."""
    return Overview(*await asyncio.gather(cluster_part(caller), failover_part(caller)))


@dataclass(frozen=True)
class MemberRow:
    address: str
    port: int
    state: str
    """As configured: enabled, disabled or drain."""
    health: str
    """up, down, or unknown (not served here)."""
    connections: int

    @property
    def key(self) -> str:
        return f"[{self.address}]:{self.port}" if ":" in self.address else f"{self.address}:{self.port}"


@dataclass(frozen=True)
class PoolRow:
    partition: str
    name: str
    lb_method: str
    monitor: str | None
    members: tuple[MemberRow, ...]

    @property
    def members_up(self) -> int:
        return sum(member.health == "up" for member in self.members)

    @property
    def probed(self) -> bool:
        """This device's data plane reports the health of its members (it serves the pool)."""
        return any(member.health != "unknown" for member in self.members)


@dataclass(frozen=True)
class VirtualRow:
    partition: str
    name: str
    address: str
    port: int
    protocol: str
    pool: str | None
    traffic_group: str
    enabled: bool
    served: bool
    """This device serves it now (it is active for its traffic group)."""
    error: str
    connections_current: int
    rate: float | None
    """New connections per second over the last second (None: not known yet)."""
    spark: str
    """The sparkline's points (SVG polyline), empty until two samples."""

    @property
    def key(self) -> str:
        return f"/{self.partition}/{self.name}"

    @property
    def pool_page(self) -> str | None:
        """Its pool's page in the console (a pool named without partition is in the virtual server's)."""
        if not self.pool:
            return None
        return f"{CONSOLE_PATH}/pools{self.pool}" if self.pool.startswith("/") else \
            f"{CONSOLE_PATH}/pools/{self.partition}/{self.pool}"


@dataclass(frozen=True)
class Traffic:
    partitions: tuple[str, ...]
    partition: str | None
    virtuals: tuple[VirtualRow, ...]
    pools: tuple[PoolRow, ...]
    next_after: str | None
    active: dict[str, str | None]
    """The active device of each traffic group."""
    more_pools: bool
    """Pools beyond the `TRAFFIC_PAGE` shown."""
    problems: tuple[str, ...]
    signed_out: bool = False


@dataclass
class Rates:
    """Connections per second of each virtual server, from the totals read a second apart, and the last
    `SPARK_POINTS` of them."""

    totals: dict[str, tuple[float, int]] = field(default_factory=dict)
    history: dict[str, deque[float]] = field(default_factory=dict)

    def sample(self, key: str, total: int, at: float) -> float | None:
        before = self.totals.get(key)
        self.totals[key] = (at, total)
        if before is None or at <= before[0] or total < before[1]:
            return None
        rate = (total - before[1]) / (at - before[0])
        self.history.setdefault(key, deque(maxlen=SPARK_POINTS)).append(rate)
        return rate

    def spark(self, key: str) -> str:
        """SVG polyline points in a box `SPARK_WIDTH` by `SPARK_HEIGHT`, the last point at the right, scaled to
        the highest rate shown."""
        values = self.history.get(key)
        if not values or len(values) < 2:
            return ""
        top = max(values) or 1.0
        step = SPARK_WIDTH / (SPARK_POINTS - 1)
        start = SPARK_POINTS - len(values)
        return " ".join(f"{(start + i) * step:.1f},{SPARK_HEIGHT - (SPARK_HEIGHT - 1) * v / top:.1f}"
                        for i, v in enumerate(values))


def _health(stats: dict[str, Any] | None, member: MemberRow) -> tuple[str, int]:
    """A member's health and open connections as this device's data plane reports its pool (by member key);
    unknown when the pool is not served here."""
    found = stats.get(member.key) if stats is not None else None
    if not isinstance(found, dict):
        return "unknown", 0
    return str(found.get("health", "unknown")), int(found.get("connections_current", 0))


async def traffic(caller: Caller, partition: str | None, after: str | None, rates: Rates | None) -> Traffic:
    """The traffic page's virtual servers (one page), its pools with member health, counters and rates."""
    filters: dict[str, Any] = {"limit": TRAFFIC_PAGE}
    if partition:
        filters["partition"] = partition
    if after:
        filters["after"] = after
    pool_filters = {"partition": partition} if partition else {}
    partitions, virtuals, pools, served, failover = await asyncio.gather(
        caller.get("/api/partitions"), caller.get("/api/virtuals", **filters),
        caller.get("/api/pools", limit=TRAFFIC_PAGE, **pool_filters), caller.get("/api/dataplane"),
        caller.get("/api/failover/status"))
    problems = [f"{what}: {answer.message}" for what, answer in (
        ("partitions", partitions), ("virtual servers", virtuals), ("pools", pools), ("failover", failover))
        if not answer.ok]
    dataplane = served.body if served.ok else {}
    now = time.monotonic()
    virtual_stats: dict[str, Any] = dataplane.get("virtuals", {})
    unserved: dict[str, str] = dataplane.get("errors", {})
    rows = []
    for v in _records(virtuals):
        key = f"/{v['partition']}/{v['name']}"
        stats = virtual_stats.get(key)
        total = int(stats.get("connections_total", 0)) if stats else 0
        rate = rates.sample(key, total, now) if rates is not None and stats else None
        error = (stats.get("error") if stats else unserved.get(key)) or ""
        rows.append(VirtualRow(v["partition"], v["name"], v["address"], int(v["port"]), v.get("protocol", "tcp"),
                               v.get("pool"), v.get("traffic_group", ""), bool(v.get("enabled", True)),
                               stats is not None, str(error), int(stats.get("connections_current", 0)) if stats else 0,
                               rate, rates.spark(key) if rates is not None else ""))
    pool_stats: dict[str, Any] = dataplane.get("pools", {})
    pool_rows = []
    for p in _records(pools):
        stats = pool_stats.get(f"/{p['partition']}/{p['name']}")
        members = []
        for m in p.get("members", []):
            configured = MemberRow(m["address"], int(m["port"]), m.get("state", "enabled"), "unknown", 0)
            health, connections = _health(stats, configured)
            members.append(replace(configured, health=health, connections=connections))
        pool_rows.append(PoolRow(p["partition"], p["name"], p.get("lb_method", ""), p.get("monitor"),
                                 tuple(members)))
    following = virtuals.body.get("next") if virtuals.ok else None
    active = {g.name: g.active_device for g in traffic_groups_of(failover.body if failover.ok else {})}
    return Traffic(tuple(r["name"] for r in _records(partitions)), partition, tuple(rows), tuple(pool_rows),
                   next_cursor(following), active, bool(pools.ok and pools.body.get("next")), tuple(problems),
                   signed_out=virtuals.status == 401)


def next_cursor(following: Any) -> str | None:
    """The cursor of the API's next page, from its `next` link (None on the last page)."""
    if not isinstance(following, str):
        return None
    return parse_qs(urlsplit(following).query).get("after", [None])[0]
