"""Failover as the management process sees it: the failover process started and kept running, its
configuration handed over, its state and transitions received (`daemon.py` does the work)."""

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from tandem import ipc
from tandem.errors import ApiError, Conflict, NotFound
from tandem.failover.detector import first_deadline
from tandem.failover.heartbeat import heartbeat_key
from tandem.failover.rule import OFFLINE, STANDBY, Member
from tandem.failover.snapshot import FailoverConfig, FailoverReport, Peer, TrafficGroupConfig, TrafficGroupReport
from tandem.failover.status import (
    DataplaneStatus,
    FailoverStatus,
    TrafficGroupMember,
    TrafficGroupStatus,
)
from tandem.models.cluster import HEARTBEAT_INTERVAL, SYNC_FAILOVER, GroupRecord, TrafficGroup
from tandem.models.fields import parse_host_port
from tandem.store import FailoverEvent, Store
from tandem.tasks import cancel
from tandem.trust.domain import Domain

log = logging.getLogger("tandem.failover")

DATAPLANE_SOCKET = "run/dataplane.sock"
"""Where the data plane process listens for the failover process, relative to the data directory (the
working directory of both: Unix socket paths must be short)."""
MAX_WATCHERS = 32
"""Event streams (`GET /api/failover/events?watch=true`) open at once on a device at most."""
ANSWER_TIMEOUT = 5.0
"""Seconds to wait for the failover process to answer a request."""


class FailoverUnavailable(ApiError):
    status, code = 503, "unavailable"


class FailoverService:
    """Starts the failover process, feeds it the configuration, mirrors its state for the API."""

    def __init__(self, store: Store, domain: Domain, listen: tuple[tuple[str, int], ...], addresses: str,
                 interface: str | None, data_dir: Path, notify: tuple[list[Path], float] = ([], 10.0)) -> None:
        """`listen`: where heartbeats come, by path (the peer address first); `notify`: the scripts run at each
        transition (absolute paths) and the seconds each may take."""
        self._store = store
        self._domain = domain
        self.offline = store.meta("failover_offline") == "1"
        """Taken offline by the operator on this device (`tandem failover offline`); kept across restarts."""
        self._virtual_addresses: dict[str, tuple[str, ...]] = {}
        self._standalone_addresses: tuple[str, ...] = ()
        self._report: FailoverReport | None = None
        """The failover process's last report (None: none since it started)."""
        self._report_at = 0.0
        self._child = ipc.Child("failover", "tandem.failover.daemon",
                                [*(arg for host, port in listen for arg in ("--listen", f"[{host}]:{port}")),
                                 "--addresses", addresses,
                                 *(["--interface", interface] if interface else []),
                                 *(arg for script in notify[0] for arg in ("--notify", str(script))),
                                 "--notify-timeout", str(notify[1]), "--dataplane-socket", DATAPLANE_SOCKET],
                                data_dir, self._sockets, self._started)
        self._listening: asyncio.Task | None = None
        self._config: FailoverConfig | None = None
        self._recorded = asyncio.Event()
        """Set (and replaced) each time an event is recorded: what watchers of the events wait for."""
        self._watchers = 0

    # -- the process -------------------------------------------------------------------------------

    @staticmethod
    def _sockets() -> tuple[Any, list[Any]]:
        mine, theirs = ipc.channel_pair()
        return mine, [theirs]

    async def start(self) -> None:
        self._child.start()

    async def stop(self) -> None:
        await self._child.stop()
        await cancel(self._listening)

    async def _started(self, channel: ipc.Channel) -> None:
        await cancel(self._listening)
        self._listening = asyncio.get_running_loop().create_task(channel.serve(self._handle))
        self._config = None
        self.config_changed()

    async def _handle(self, message: ipc.Message) -> None:
        """The failover process's reports, in order: a transition is in the journal before the state
        that follows it is shown (a reader never sees a state whose event is missing)."""
        if message["type"] == "state":
            self._report, self._report_at = FailoverReport.load(message["report"]), time.monotonic()
        elif message["type"] == "event":
            await asyncio.wrap_future(self._store.add_event(
                message["traffic_group"], message["from_state"], message["to_state"], message["reason"],
                message["at"], message["kind"]))
            recorded, self._recorded = self._recorded, asyncio.Event()
            recorded.set()

    # -- the configuration it works from -------------------------------------------------------------

    def device_group(self) -> GroupRecord | None:
        """The sync-failover group this device is a member of, if any."""
        me = self._domain.me.name
        return next((g for g in self._domain.groups() if g.type == SYNC_FAILOVER and me in g.members), None)

    def traffic_groups(self) -> list[TrafficGroup]:
        group = self.device_group()
        return [t for t in self._domain.traffic_groups() if group and t.device_group == group.name]

    def set_virtual_addresses(self, by_traffic_group: dict[str, tuple[str, ...]], standalone: tuple[str, ...]) -> None:
        """The addresses of the virtual servers served per traffic group, and of those of none (the data plane
        computes them from the configuration): they float with their traffic group."""
        if (by_traffic_group, standalone) != (self._virtual_addresses, self._standalone_addresses):
            self._virtual_addresses, self._standalone_addresses = by_traffic_group, standalone
            self.config_changed()

    def config(self) -> FailoverConfig:
        domain = self._domain
        group = self.device_group()
        peers = []
        for name in group.members if group else []:
            device = domain.device_named(name)
            if device is not None:
                host, port = parse_host_port(device.peer_url)
                peers.append(Peer(device.id, name, host, port,
                                  tuple(parse_host_port(url) for url in device.heartbeat_urls)))
        return FailoverConfig(
            device_id=domain.device_id, device_name=domain.me.name, key=heartbeat_key(domain.secret).hex(),
            group=group.name if group else None, interval=group.heartbeat_interval if group else HEARTBEAT_INTERVAL,
            timeout=group.heartbeat_timeout if group else None,
            peers=tuple(peers), trusted=frozenset(d.id for d in domain.devices()),
            traffic_groups=tuple(
                TrafficGroupConfig(t.name, tuple(t.ha_order), t.auto_failback,
                                   tuple(sorted({*t.addresses, *self._virtual_addresses.get(t.name, ())})),
                                   t.mirroring, t.failback_delay, t.quorum, tuple(t.trackers), t.score_hold)
                for t in self.traffic_groups()),
            standalone_addresses=self._standalone_addresses, offline=self.offline, evacuated=self.evacuated)

    def config_changed(self) -> None:
        """Hand the failover process the configuration, when it changed (the trust domain changed, or the
        virtual servers' addresses)."""
        config = self.config()
        channel = self._child.channel
        if channel is not None and not channel.closed and config != self._config:
            channel.send({"type": "config", "config": config.dump()})
            self._config = config

    # -- what the failover process says ---------------------------------------------------------------

    @property
    def evacuated(self) -> bool:
        """Whether the cluster evacuated this device (a record of the trust domain, set from any member)."""
        return self._domain.evacuated(self._domain.device_id)

    @property
    def out_of_service(self) -> bool:
        """This device takes no traffic group: offline, evacuated (as known here now), or its data plane does
        not answer (as the failover process last reported)."""
        silent = self._report is not None and self._report.dataplane_silent_s is not None
        return self.offline or self.evacuated or silent

    def _elapsed(self) -> float:
        return time.monotonic() - self._report_at if self._report_at else 0.0

    def _reported_group(self, name: str) -> TrafficGroupReport | None:
        return self._report.traffic_group(name) if self._report else None

    def members(self, traffic_group: TrafficGroup) -> list[Member]:
        """What the failover process knows of every member, for one traffic group."""
        reported = self._reported_group(traffic_group.name)
        return [Member(m.name, m.id, m.alive, m.offline, m.state, False) for m in reported.members] if reported else []

    def last_heard(self, device_id: str) -> float | None:
        """Seconds since the last heartbeat of `device_id` (None: none heard since the failover process started)."""
        peer = self._report.peers.get(device_id) if self._report else None
        if peer is None or peer.last_heard_s is None:
            return None
        return peer.last_heard_s + self._elapsed()

    def silence_allowed(self, device_id: str) -> float:
        """Seconds of silence after which `device_id` is gone, as the failover process last judged."""
        peer = self._report.peers.get(device_id) if self._report else None
        if peer is not None:
            return peer.path.deadline_s
        group = self.device_group()
        interval, fixed = (group.heartbeat_interval, group.heartbeat_timeout) if group else (HEARTBEAT_INTERVAL, None)
        return first_deadline(interval, fixed)

    def heard_offline(self, device_id: str) -> bool:
        """Whether the last heartbeat of `device_id` said it takes no traffic group (offline or evacuated)."""
        peer = self._report.peers.get(device_id) if self._report else None
        return peer is not None and peer.offline

    @property
    def addresses(self) -> list[str]:
        """The floating addresses this device holds now."""
        return list(self._report.addresses) if self._report else []

    @property
    def address_errors(self) -> dict[str, str]:
        return dict(self._report.address_errors) if self._report else {}

    def status(self) -> FailoverStatus:
        """This device's failover state as the failover process last reported it (ages brought up to now): the
        body of `GET /api/failover/status`."""
        group = self.device_group()
        interval, timeout = ((group.heartbeat_interval, group.heartbeat_timeout) if group
                             else (HEARTBEAT_INTERVAL, None))
        elapsed = self._elapsed()
        errors = self.address_errors
        floating = {t.name: t.addresses for t in self._config.traffic_groups} if self._config else {}
        groups = []
        for traffic_group in self.traffic_groups():
            reported = self._reported_group(traffic_group.name)
            members = tuple(
                TrafficGroupMember(m.name, m.alive, m.offline, m.state,
                                   None if m.last_heard_s is None else round(m.last_heard_s + elapsed, 3),
                                   m.score, m.down)
                for m in (reported.members if reported else ()))
            groups.append(TrafficGroupStatus(
                name=traffic_group.name, state=reported.state if reported else STANDBY,
                active_device=reported.active_device if reported else None,
                declined=reported.declined if reported else False,
                ha_order=tuple(reported.ha_order if reported else traffic_group.ha_order),
                addresses=tuple(traffic_group.addresses), auto_failback=traffic_group.auto_failback,
                members=members, address_errors={a: errors[a] for a in floating.get(traffic_group.name, ())
                                                 if a in errors},
                mirroring=reported.mirroring if reported else None))
        report = self._report
        silent_s = report.dataplane_silent_s if report else None
        return FailoverStatus(
            device=self._domain.me.name, device_group=group.name if group else None,
            offline=self.out_of_service, evacuated=self.evacuated,
            state=OFFLINE if self.out_of_service else "online", reason=report.reason if report else "",
            heartbeat={**(vars(report.heartbeat.counters) if report else {}), "interval": interval, "timeout": timeout,
                       "detection": "adaptive" if timeout is None else "fixed",
                       "peers": {peer.name: {**vars(peer.path), "paths": [vars(p) for p in peer.paths]}
                                 for peer in report.peers.values()} if report else {}},
            dataplane=DataplaneStatus(answering=report is not None and silent_s is None, silent_s=silent_s),
            process=self._child.status(), traffic_groups=tuple(groups), trackers=report.trackers if report else ())

    def events(self, limit: int, traffic_group: str | None = None) -> list[FailoverEvent]:
        """The last `limit` transitions of this device (of one traffic group), oldest first."""
        return self._store.events(limit, traffic_group)

    def transition_counts(self) -> dict[tuple[str, str], int]:
        """How many transitions this device recorded, by (traffic group, state it went to)."""
        return self._store.transition_counts()

    def may_watch(self) -> None:
        """FailoverUnavailable (503) when `MAX_WATCHERS` event streams are open."""
        if self._watchers >= MAX_WATCHERS:
            raise FailoverUnavailable(f"{MAX_WATCHERS} event streams are open on this device: try again later")

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        """Counts an event stream while it is open."""
        self._watchers += 1
        try:
            yield
        finally:
            self._watchers -= 1

    async def watch(self, traffic_group: str | None, after: int,
                    keepalive: float) -> AsyncIterator[FailoverEvent | None]:
        """The transitions after the event of id `after` as they are recorded, for ever; None after `keepalive`
        seconds without one (a stream says it is alive)."""
        while True:
            recorded = self._recorded
            events = self._store.events_after(after, traffic_group)
            for event in events:
                after = event.id
                yield event
            if events:
                continue  # there may be more
            try:
                async with asyncio.timeout(keepalive):
                    await recorded.wait()
            except TimeoutError:
                yield None

    # -- operator actions -------------------------------------------------------------------------

    async def _request(self, message: ipc.Message) -> ipc.Message:
        channel = self._child.channel
        if channel is None or channel.closed:
            raise FailoverUnavailable("the failover process is not running (it is being started again)")
        try:
            return await channel.request(message, ANSWER_TIMEOUT)
        except (TimeoutError, ipc.ChannelClosed) as error:
            raise FailoverUnavailable(f"the failover process did not answer: {error}") from None

    async def force_standby(self, traffic_group: str) -> None:
        """Hand a traffic group this device is active for to the next device; the state the failover process
        reports before it answers shows the change."""
        answer = await self._request({"type": "force-standby", "traffic_group": traffic_group})
        if answer["code"] == "not_found":
            raise NotFound(f"traffic group {traffic_group!r} does not exist", target=traffic_group)
        if answer["code"] == "conflict":
            raise Conflict(f"this device is not active for {traffic_group}", target=traffic_group)

    async def set_offline(self, offline: bool) -> None:
        """Take this device out of failover, or bring it back (which also ends its forced standbys)."""
        self.offline = offline
        self._store.set_meta("failover_offline", "1" if offline else None)
        config = self.config()
        await self._request({"type": "config", "config": config.dump()})
        self._config = config
        if not offline:
            await self._request({"type": "online"})
