"""The failover process of a device: heartbeats, the rule, the floating addresses, the data plane watchdog.

It runs apart from the management process (`python -m tandem.failover.daemon`, started by
`FailoverService`) so that nothing there (API load, SQLite, sync) can delay a heartbeat or a
takeover: it sends its heartbeats, hears the other members', applies the rule (`rule.py`) to each
traffic group of its sync-failover group, adds and removes the floating addresses, and tells the data
plane process which traffic groups to serve. It knows only the snapshot the management process hands
it (`FailoverConfig`), and reports its state and transitions back.

A member is gone once silent for longer than its failure detector allows (`detector.py`: adaptive, or
the group's fixed timeout). The data plane must answer: it is asked every heartbeat interval, and after
`detector.watchdog` without an answer the device takes itself out of service (its heartbeats say so, so another member
takes its traffic groups) until it answers again.

What makes heartbeats unreplayable survives its restarts (`replay.py`); lasting faults (an address it
cannot add, a member whose clock is off) are logged when they change, not at every retry (`faults.py`).
"""

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

from tandem import ipc
from tandem.failover import replay
from tandem.failover.addresses import AddressProvider, provider
from tandem.failover.detector import EXPIRY_SLACK, Detector, first_deadline, watchdog
from tandem.failover.faults import Faults
from tandem.failover.heartbeat import CLOCK_WINDOW, Counters, GroupState, Heartbeat, Receiver, Sender, seal
from tandem.failover.mirroring import ConnectionMirror, MirroringReport, MirrorLink, interface_to
from tandem.failover.notify import DEFAULT_TIMEOUT, Notifier, Transition
from tandem.failover.paths import Paths
from tandem.failover.rule import (
    ACTIVE,
    OFFLINE,
    STANDBY,
    Member,
    decide,
    in_ha_order,
    lacks_quorum,
    outscores_active,
)
from tandem.failover.snapshot import (
    FailoverConfig,
    FailoverReport,
    HeartbeatReport,
    MemberReport,
    Peer,
    PeerReport,
    TrackerReport,
    TrafficGroupConfig,
    TrafficGroupReport,
)
from tandem.failover.trackers import Tracking
from tandem.models.cluster import FULL_SCORE, HEARTBEAT_INTERVAL
from tandem.models.fields import host_port, parse_host_port
from tandem.tasks import cancel

log = logging.getLogger("tandem.failover")

STATE_EVERY = 0.5
"""Seconds between state reports to the management process when nothing changes (ages move on)."""
MIRROR_REPORT_EVERY = 1.0
"""Seconds between readings of the connection mirror's figures."""
RETRY = 0.05
"""Seconds before trying again an address that could not be added or removed; doubled at each failure in a
row, up to `RETRY_MAX`."""
RETRY_MAX = 5.0
REBIND_EVERY = 2.0
"""Seconds between tries to bind a dedicated heartbeat address that could not be bound."""


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes], None]) -> None:
        self._on_datagram = on_datagram

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self._on_datagram(data)


class Failover:
    """The state of one device's failover, driven by heartbeats, the clock and the configuration."""

    def __init__(self, addresses: AddressProvider, listen: tuple[tuple[str, int], ...], dataplane_socket: str,
                 state_path: Path, notifier: Notifier | None = None) -> None:
        """`listen`: where heartbeats come and go from, by path (the peer address first)."""
        self._addresses = addresses
        self._notifier = notifier or Notifier([])
        self._listen = listen
        self._dataplane_socket = dataplane_socket
        self._state_path = state_path
        self._kept = replay.ReplayState()
        """What the last run kept (read when this one starts)."""
        self._unsaved = asyncio.Event()
        self.config: FailoverConfig | None = None
        self.states: dict[str, str] = {}
        self.declined: set[str] = set()
        self.counters = Counters()
        self._receiver: Receiver | None = None
        self._sender: Sender | None = None
        self._heard: dict[str, tuple[float, Heartbeat]] = {}
        self._detectors: dict[str, Detector] = {}
        """Each member's failure detector, by device id."""
        self._alive: set[str] = set()
        self._seen: dict[str, float] = {}
        """When this device first saw each traffic group: it listens for a first deadline before taking it."""
        self._started = time.monotonic()
        self._in_service_since: float | None = None
        """Since when this device is in service (None: it is not): a failback delay counts from then."""
        self._failback_check: asyncio.TimerHandle | None = None
        """An evaluation planned for when a failback delay or a score hold is over."""
        self._outscoring: dict[str, float] = {}
        """Since when this device, a standby, outscores the active device of each traffic group."""
        self._scores: dict[str, int] = {}
        self._score_rose: dict[str, float] = {}
        """When this device's score of each traffic group last rose (a tracker back up): it takes the group back
        by auto-failback only a score hold later, so that a flapping tracker does not move it back and forth."""
        self._tracking = Tracking(self._trackers_changed, self._pool_availability)
        self._pools: dict[str, tuple[int, int, int]] | None = None
        """What the data plane last said of the tracked pools: enabled members up, judged, and all, by path (None:
        nothing yet)."""
        self._expiries: dict[str, asyncio.TimerHandle] = {}
        self._transports: list[asyncio.DatagramTransport | None] = [None] * len(listen)
        """By path: where this device's heartbeats come and go from (None: that address cannot be bound now)."""
        self._paths = Paths(self._path_changed)
        self._control: ipc.Channel | None = None
        self._dataplane: ipc.Channel | None = None
        self._dataplane_answer = 0.0
        """When the data plane last answered (0: never)."""
        self.held: set[str] = set()
        self.address_faults = Faults(log, "address")
        self._clock_faults = Faults(log, "heartbeats of")
        self._addresses_wanted = asyncio.Event()
        self._cleaned: set[str] = set()
        """Floating addresses already taken off once (a crashed run may have left them on the interface)."""
        self._tasks: list[asyncio.Task] = []
        self._served: ipc.Message | None = None
        self._reported_out: bool | None = None
        self._mirror = ConnectionMirror(state_path.parent / "conntrackd")
        self._mirror_wanted = asyncio.Event()
        self._committed: set[str] = set()
        """The mirrored traffic groups this device is active for, their connections committed."""
        self._mirroring: MirroringReport | None = None
        """What the mirror last said (None: not mirroring)."""

    # -- running ------------------------------------------------------------------------------------

    async def run(self, control: ipc.Channel) -> None:
        self._control = control
        self._kept = await asyncio.to_thread(replay.load, self._state_path)
        loop = asyncio.get_running_loop()
        self._transports[0], _ = await loop.create_datagram_endpoint(lambda: _Endpoint(self._datagram),
                                                                     local_addr=self._listen[0])
        self._started = time.monotonic()
        self._tasks = [loop.create_task(self._bind_paths()), loop.create_task(self._beat()),
                       loop.create_task(self._report()),
                       loop.create_task(self._hold_addresses()), loop.create_task(self._watch_dataplane()),
                       loop.create_task(self._keep_replay_state()), loop.create_task(self._mirror_connections())]
        try:
            await control.serve(self._handle)  # until the management process is gone
        finally:
            await self._tracking.stop()  # first: a tracker that changes now would judge the groups again
            for task in self._tasks:
                await cancel(task)
            for expiry in self._expiries.values():
                expiry.cancel()
            self._evaluate_in(None)
            self._paths.stop()
            for transport in self._transports:
                if transport is not None:
                    transport.close()
            self._save_replay_state()
            await self._release_all()
            await self._mirror.stop()
            await self._notifier.stop()

    def _handle(self, message: ipc.Message) -> ipc.Message | None:
        """A message of the management process; the state it reports next (before any answer) shows its effect."""
        kind = message["type"]
        if kind == "config":
            self._configure(FailoverConfig.load(message["config"]))
            answer = {}
        elif kind == "force-standby":
            answer = self._force_standby(message["traffic_group"])
        elif kind == "online":  # the operator brings the device back: its forced standbys end too
            self.declined.clear()
            if not self.evaluate():
                self._send()
            answer = {}
        else:
            raise ValueError(f"unknown message {kind!r}")
        self._report_now()
        return answer

    def _configure(self, config: FailoverConfig) -> None:
        key = bytes.fromhex(config.key)
        if self._receiver is None:
            self._receiver = Receiver(key, self.counters, dict(self._kept.last), self._stale)
            self._sender = Sender(config.device_id, max(time.time_ns(), self._kept.boot + 1))
            self._unsaved.set()
        self._receiver.key = key
        self.config = config
        self._paths.keep({p.id: self._path_count(p) for p in config.peers if p.id != config.device_id})
        self._tracking.configure(t for group in config.traffic_groups for t in group.trackers)
        self._addresses_wanted.set()
        self._mirror_wanted.set()
        if not self.evaluate():
            self._send()
        self._tell_dataplane()

    def _timers(self) -> tuple[float, float | None]:
        """The heartbeat interval and the fixed timeout (None: adaptive detection)."""
        config = self.config
        return (config.interval, config.timeout) if config and config.group else (HEARTBEAT_INTERVAL, None)

    def _detector(self, device_id: str) -> Detector:
        interval, fixed = self._timers()
        detector = self._detectors.get(device_id)
        if detector is None or (detector.interval, detector.fixed) != (interval, fixed):
            detector = self._detectors[device_id] = Detector(interval, fixed)
        return detector

    def _deadline(self, device_id: str, now: float) -> float:
        """Seconds of silence after which member `device_id` is gone."""
        detector = self._detectors.get(device_id)
        return detector.deadline(now) if detector is not None else first_deadline(*self._timers())

    async def _beat(self) -> None:
        """A heartbeat every interval, on a fixed cadence (the time taken by the work does not add up)."""
        due = time.monotonic()
        while True:
            if not self.evaluate():
                self._send()
            interval = self._timers()[0]
            now = time.monotonic()
            if now - due > interval / 2:
                self.counters.late += 1
            due = max(due + interval, now)
            await asyncio.sleep(due - now)

    async def _bind_paths(self) -> None:
        """Bind the dedicated heartbeat addresses; one that cannot be bound (its interface down, its address not
        there yet) is tried again every `REBIND_EVERY` seconds while the other paths carry the heartbeats."""
        faults = Faults(log, "heartbeat address")
        loop = asyncio.get_running_loop()
        while True:
            for path, address in enumerate(self._listen):
                if self._transports[path] is not None:
                    continue
                try:
                    self._transports[path], _ = await loop.create_datagram_endpoint(
                        lambda: _Endpoint(self._datagram), local_addr=address)
                except OSError as error:
                    faults.fail(host_port(*address), f"cannot be bound: {error.strerror or error}")
                else:
                    faults.clear(host_port(*address))
            if all(transport is not None for transport in self._transports):
                return
            await asyncio.sleep(REBIND_EVERY)

    def _path_count(self, peer: Peer) -> int:
        """The paths heartbeats take between this device and `peer`: the n-th address of each with the n-th of
        the other, as many as the one with fewer has."""
        return min(len(self._listen), len(peer.paths))

    def _send(self) -> None:
        config = self.config
        if config is None or config.group is None or self._sender is None:
            return
        assert self._receiver is not None
        trackers = {t.name: t.trackers for t in config.traffic_groups}
        groups = {}
        for name, state in self.states.items():
            score, down = self._tracking.score(trackers.get(name, ()))
            groups[name] = GroupState(state=state, declined=name in self.declined, score=score, down=down)
        heartbeat = self._sender.next(self.out_of_service, groups)
        datagrams = [seal(self._receiver.key, heartbeat.model_copy(update={"path": path}))
                     for path in range(len(self._transports))]
        self.counters.sent += 1
        for peer in config.peers:
            if peer.id != config.device_id:
                for path in range(self._path_count(peer)):
                    transport = self._transports[path]
                    if transport is not None:
                        with contextlib.suppress(OSError):  # that path is down here (no route): the others carry it
                            transport.sendto(datagrams[path], peer.paths[path])

    def _datagram(self, data: bytes) -> None:
        if self._receiver is None or self.config is None:
            return
        opened = self._receiver.open(data)
        if opened is None or opened[0].device not in self.config.trusted:
            return
        heartbeat, first = opened
        now = time.monotonic()
        self._paths.heard(heartbeat.device, heartbeat.path, heartbeat.boot, heartbeat.seq, now, *self._timers())
        if not first:  # a copy that came on another path first
            return
        self._clock_faults.clear(self._name(heartbeat.device))
        self._unsaved.set()
        previous = self._heard.get(heartbeat.device)
        self._heard[heartbeat.device] = (now, heartbeat)
        self._detector(heartbeat.device).heard(heartbeat.boot, heartbeat.seq, now)
        self.evaluate()
        if previous is None or (previous[1].offline, previous[1].groups) != (heartbeat.offline, heartbeat.groups):
            self._report_now()  # what the others say changed: the management process shows it at once
        # decide the moment this sender's silence passes its deadline, not at the next beat
        expiry = self._expiries.pop(heartbeat.device, None)
        if expiry is not None:
            expiry.cancel()
        self._expiries[heartbeat.device] = asyncio.get_running_loop().call_later(
            self._deadline(heartbeat.device, now) + EXPIRY_SLACK, self.evaluate)

    # -- the rule ------------------------------------------------------------------------------------

    @property
    def dataplane_silence(self) -> float | None:
        """Seconds the data plane has not answered, when past the watchdog's limit (None: it answers)."""
        timeout = watchdog(*self._timers())
        since = self._dataplane_answer or self._started
        silence = time.monotonic() - since
        return silence if silence >= timeout else None

    @property
    def out_of_service(self) -> bool:
        """This device takes no traffic group: offline, evacuated, or its data plane does not answer."""
        config = self.config
        return config is None or config.offline or config.evacuated or self.dataplane_silence is not None

    def _why_out(self) -> str:
        config = self.config
        if config is None or config.offline:
            return "device is offline"
        if config.evacuated:
            return "device is evacuated"
        return f"data plane not answering for {self.dataplane_silence:.1f} s"

    def members(self, traffic_group: TrafficGroupConfig) -> list[Member]:
        """What this device knows now of every member, itself included, for one traffic group."""
        config = self.config
        assert config is not None
        now = time.monotonic()
        out = []
        for peer in config.peers:
            if peer.id == config.device_id:
                score, down = self._tracking.score(traffic_group.trackers)
                out.append(Member(peer.name, peer.id, True, self.out_of_service,
                                  self.states.get(traffic_group.name, STANDBY), traffic_group.name in self.declined,
                                  score, down))
                continue
            heard_at, heartbeat = self._heard.get(peer.id, (0.0, None))
            alive = heartbeat is not None and now - heard_at < self._deadline(peer.id, now)
            said = heartbeat.groups.get(traffic_group.name) if alive and heartbeat else None
            out.append(Member(peer.name, peer.id, alive, bool(alive and heartbeat and heartbeat.offline),
                              said.state if said else STANDBY, bool(said and said.declined),
                              said.score if said else FULL_SCORE, said.down if said else ()))
        return out

    def evaluate(self) -> bool:
        """Apply the rule to every traffic group; record and announce every transition (a heartbeat sent at
        once: whether one was)."""
        config = self.config
        if config is None:
            return False
        now = time.monotonic()
        listen_for = first_deadline(*self._timers())
        if self.out_of_service:
            self._in_service_since = None
        elif self._in_service_since is None:
            self._in_service_since = now
        in_service_for = now - max(self._in_service_since or now, self._started)
        transitions = False
        names = set()
        waits = []
        for traffic_group in config.traffic_groups if config.group else ():
            name = traffic_group.name
            names.add(name)
            seen = self._seen.setdefault(name, now)
            listening = now - max(seen, self._started) < listen_for
            members = self.members(traffic_group)
            me = next((m for m in members if m.device_id == config.device_id), None)
            if me is None:
                continue
            # (a group shrunk to two members after quorum was set: a majority of two would leave no one serving)
            quorum = traffic_group.quorum and len(members) >= 3
            if me.score > self._scores.get(name, me.score):  # risen: a failback waits a score hold from now
                self._score_rose[name] = now
            self._scores[name] = me.score
            failback_in = max(traffic_group.failback_delay - in_service_for,
                              traffic_group.score_hold - (now - self._score_rose.get(name, -math.inf)))
            if outscores_active(me, members, list(traffic_group.ha_order)) and not (quorum and lacks_quorum(members)):
                takeover_in = traffic_group.score_hold - (now - self._outscoring.setdefault(name, now))
            else:
                self._outscoring.pop(name, None)
                takeover_in = 0.0
            state, reason = decide(me, members, list(traffic_group.ha_order), traffic_group.auto_failback,
                                   failback_in, quorum, takeover_in)
            waits += [wait for wait, waiting in ((failback_in, traffic_group.auto_failback), (takeover_in, True))
                      if waiting and wait > 0]
            if state == ACTIVE and listening and me.state != ACTIVE:
                state, reason = STANDBY, ""  # just started: first hear who is active
            elif state == OFFLINE:
                reason = self._why_out()
            transitions |= self._transition(name, state, reason)
        for name in set(self.states) - names:
            transitions |= self._transition(name, None, "traffic group removed or this device left its group")
        changed = transitions
        self._evaluate_in(min(waits, default=None))
        for kept in (self._outscoring, self._scores, self._score_rose):
            for name in set(kept) - names:
                del kept[name]
        for name in set(self._seen) - names:
            del self._seen[name]
        alive = {d for d, (at, _) in self._heard.items() if now - at < self._deadline(d, now)}
        if alive - self._alive and ACTIVE in self.states.values():
            self._announce_soon()  # it may have served our addresses while apart: win the neighbours back
        changed |= alive != self._alive
        self._alive = alive
        if changed:
            self._addresses_wanted.set()
            self._tell_dataplane()
            self._report_now()
            if transitions:  # the others hear of it now, not up to an interval later (as VRRP adverts at once)
                self._send()
        return transitions

    def _trackers_changed(self) -> None:
        """A tracker went up or down: the scores change here and, in a heartbeat sent at once, on the others."""
        if not self.evaluate():
            self._send()

    def _evaluate_in(self, seconds: float | None) -> None:
        """Evaluate again in `seconds` (a failback delay or a score hold then over), in place of any such evaluation
        planned."""
        if self._failback_check is not None:
            self._failback_check.cancel()
            self._failback_check = None
        if seconds is not None:
            self._failback_check = asyncio.get_running_loop().call_later(seconds + EXPIRY_SLACK, self.evaluate)

    def _transition(self, name: str, state: str | None, reason: str) -> bool:
        before = self.states.get(name)
        if state == before:
            return False
        if state is None:
            del self.states[name]
        else:
            self.states[name] = state
        event = self._record("transition", name, before or "none", state or "none", reason or "initial state")
        if self.config is not None:
            self._notifier.tell(Transition(self.config.device_name, name, event["from_state"], event["to_state"],
                                           event["reason"], event["at"]))
        return True

    def _path_changed(self, device: str, path: int, up: bool, silence: float) -> None:
        """A heartbeat path from `device` went down or came back: an event, and the state shown at once."""
        config = self.config
        peer = next((p for p in config.peers if p.id == device), None) if config else None
        if peer is None or path >= self._path_count(peer):
            return
        count = self._path_count(peer)
        working = sum(self._paths.up(device, n) for n in range(count))
        host, port = peer.paths[path]
        where = f"{peer.name}'s heartbeats on path {path} ({host_port(host, port)})"
        reason = (f"{where} came back: {working} of {count} paths up" if up else
                  f"{where} silent for {silence:.2f} s: {working} of {count} paths up")
        self._record("path", "", "down" if up else "up", "up" if up else "down", reason, peer.name)
        self._report_now()

    def _record(self, kind: str, traffic_group: str, before: str, after: str, reason: str,
                peer: str | None = None) -> dict:
        """Log an event (of a traffic group, or of heartbeats from `peer`), send it to the management process
        (its journal, the event stream); the event."""
        event = {"type": "event", "kind": kind, "at": time.time(), "traffic_group": traffic_group,
                 "from_state": before, "to_state": after, "reason": reason}
        log.info("%s%s -> %s (%s)", f"traffic group {traffic_group}: " if traffic_group else "", before, after,
                 reason, extra={"traffic_group": traffic_group or None, "peer": peer})
        if self._control is not None:
            self._control.send(event)
        return event

    def _force_standby(self, traffic_group: str) -> ipc.Message:
        config = self.config
        if config is None or not any(t.name == traffic_group for t in config.traffic_groups):
            return {"code": "not_found"}
        if self.states.get(traffic_group) != ACTIVE:
            return {"code": "conflict"}
        self.declined.add(traffic_group)
        if not self.evaluate():
            self._send()
        return {"code": "ok"}

    # -- what this device serves -----------------------------------------------------------------------

    def served(self) -> ipc.Message:
        """The traffic groups the data plane serves now, those it may keep ready to serve (this device is standby for
        them, on a host of its own), whether it serves virtual servers of none, and the pools it probes for the pool
        trackers."""
        config = self.config
        active = sorted(name for name, state in self.states.items() if state == ACTIVE)
        ready = [] if self._addresses.shares_host else sorted(
            name for name, state in self.states.items() if state == STANDBY)
        tracked = sorted({t.target for group in config.traffic_groups for t in group.trackers if t.type == "pool"}
                         if config else ())
        return {"type": "serve", "active": active, "ready": ready, "standalone": bool(config and config.group is None),
                "pools": tracked}

    def _pool_availability(self, path: str) -> tuple[int, int] | str | None:
        """A tracked pool's members up and judged as the data plane last said; "no such pool"; None when not known
        (the data plane has not answered, or does not now: the device is then out of service anyway)."""
        if self._pools is None or self.dataplane_silence is not None:
            return None
        if path not in self._pools:
            return "no such pool"
        up, judged, enabled = self._pools[path]
        return None if judged == 0 and enabled else (up, judged)

    def wanted_addresses(self) -> set[str]:
        config = self.config
        if config is None:
            return set()
        if config.group is None:
            return set(config.standalone_addresses)
        return {address for t in config.traffic_groups if self.states.get(t.name) == ACTIVE for address in t.addresses}

    async def _hold_addresses(self) -> None:
        """Add and remove floating addresses to match the traffic groups this device is active for; those that
        fail are tried again after `RETRY`, less often while they keep failing (at once when what is wanted
        changes)."""
        retry: float | None = None
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(retry):
                    await self._addresses_wanted.wait()
            self._addresses_wanted.clear()
            config = self.config
            if config is None:
                continue
            floating = {a for t in config.traffic_groups for a in t.addresses} | set(config.standalone_addresses)
            for address in sorted(floating - self._cleaned - self.wanted_addresses() - self.held):
                await self._apply(self._addresses.remove, address)  # a crashed run may have left it
                self._cleaned.add(address)
            wanted = self.wanted_addresses()
            await self._mirror_takeovers(config)
            for address in sorted(wanted - self.held):
                if await self._apply(self._addresses.add, address):
                    self.held.add(address)
            for address in sorted(self.held - wanted):
                if await self._apply(self._addresses.remove, address):
                    self.held.discard(address)
            for address in self.address_faults.keys() - self.wanted_addresses() - self.held:
                self.address_faults.clear(address)  # not wanted any more: nothing is failing
            failing = self.held != self.wanted_addresses()
            retry = (min(2 * retry, RETRY_MAX) if retry else RETRY) if failing else None
            self._report_now()

    async def _mirror_takeovers(self, config: FailoverConfig) -> None:
        """The peer's connections committed into the kernel once per takeover of mirrored traffic groups, before
        their addresses are added; a step down from them has the mirror age this device's out."""
        mirrored = {t.name for t in config.traffic_groups if t.mirroring and self.states.get(t.name) == ACTIVE}
        if mirrored - self._committed:
            await self._mirror.commit()
        elif self._committed - mirrored:
            self._mirror.standby()
        self._committed = mirrored

    async def _mirror_connections(self) -> None:
        """Keep conntrackd configured as the traffic groups want (`mirroring`: looked at again when the
        configuration changes, or after a failure), and its figures for the report, every second."""
        failed = False
        while True:
            changed = False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(MIRROR_REPORT_EVERY):
                    await self._mirror_wanted.wait()
                    changed = True
            self._mirror_wanted.clear()
            try:
                if changed or failed:
                    await self._mirror.configure(await asyncio.to_thread(self._mirror_link))
                failed = False
                self._mirroring = await self._mirror.report()
            except ValueError as error:  # no route to the peer: said in the report, tried again
                failed = True
                self._mirroring = MirroringReport.not_mirroring(f"cannot mirror: {error}")
            except Exception as error:  # the mirror must never stop the failover process: logged, tried again
                failed = True
                log.exception("connection mirroring failed")
                self._mirroring = MirroringReport.not_mirroring(f"mirroring failed: {error}")

    def _mirror_link(self) -> MirrorLink | None:
        """The link to mirror connections over: while a traffic group mirrors and the group has one other member."""
        config = self.config
        if config is None or config.group is None or not any(t.mirroring for t in config.traffic_groups):
            return None
        me = next((p for p in config.peers if p.id == config.device_id), None)
        others = [p for p in config.peers if p.id != config.device_id]
        if me is None or len(others) != 1:
            return None
        floating = {a for t in config.traffic_groups for a in t.addresses} | set(config.standalone_addresses)
        return MirrorLink(me.host, others[0].host, interface_to(others[0].host), tuple(sorted(floating)))

    async def _apply(self, change: Callable[[str], None], address: str) -> bool:
        try:
            await asyncio.to_thread(change, address)
        except Exception as error:  # netlink, permissions, a bad address: report it, keep the rest
            self.address_faults.fail(address, str(error))
            return False
        self.address_faults.clear(address)
        return True

    async def _release_all(self) -> None:
        for address in sorted(self.held):
            await self._apply(self._addresses.remove, address)
        self.held.clear()

    def _announce_soon(self) -> None:
        async def announce() -> None:
            for address in sorted(self.held):
                with contextlib.suppress(Exception):  # best effort: the address is held either way
                    await asyncio.to_thread(self._addresses.announce, address)
        task = asyncio.get_running_loop().create_task(announce())
        self._tasks.append(task)
        task.add_done_callback(self._tasks.remove)

    # -- the data plane ---------------------------------------------------------------------------------

    async def _watch_dataplane(self) -> None:
        """Keep a channel to the data plane process, tell it what to serve, and ask it every interval."""
        while True:
            try:
                reader, writer = await asyncio.open_unix_connection(self._dataplane_socket)
            except OSError:
                await asyncio.sleep(self._timers()[0])
                self._check_dataplane()
                continue
            channel = self._dataplane = ipc.Channel(reader, writer)
            listening = asyncio.get_running_loop().create_task(channel.serve(lambda message: None))
            self._tell_dataplane(force=True)
            try:
                while not channel.closed:
                    with contextlib.suppress(TimeoutError, RuntimeError):  # no answer, or an error answer
                        answer = await channel.request({"type": "ping"}, watchdog(*self._timers()))
                        self._dataplane_answer = time.monotonic()
                        self._pools = {path: (up, judged, enabled)
                                       for path, (up, judged, enabled) in answer["pools"].items()}
                    self._check_dataplane()
                    await asyncio.sleep(self._timers()[0])
            except ipc.ChannelClosed:
                pass
            finally:
                self._dataplane = None
                channel.close()
                await cancel(listening)
            await asyncio.sleep(self._timers()[0])  # gone: connect again after an interval

    def _check_dataplane(self) -> None:
        """Re-judge when the data plane stops or starts answering."""
        now_out = self.out_of_service
        if self._reported_out != now_out:
            self._reported_out = now_out
            if not self.evaluate():
                self._send()
            self._report_now()

    def _tell_dataplane(self, force: bool = False) -> None:
        served = self.served()
        if self._dataplane is not None and (force or served != self._served):
            self._dataplane.send(served)
        self._served = served

    # -- what outlives a restart, and the members' clocks ------------------------------------------------

    async def _keep_replay_state(self) -> None:
        """Save what makes heartbeats unreplayable when it changed, at most every `replay.SAVE_EVERY` seconds."""
        while True:
            await self._unsaved.wait()
            self._unsaved.clear()
            state = self._replay_state()
            if state is not None:
                try:
                    await asyncio.to_thread(replay.save, self._state_path, state)
                except OSError as error:
                    log.warning("cannot save %s: %s", self._state_path, error)
            await asyncio.sleep(replay.SAVE_EVERY)

    def _replay_state(self) -> replay.ReplayState | None:
        if self._receiver is None or self._sender is None or self.config is None:
            return None
        trusted = self.config.trusted
        return replay.ReplayState(self._sender.boot, {d: s for d, s in self._receiver.last.items() if d in trusted})

    def _save_replay_state(self) -> None:
        state = self._replay_state()
        if state is not None:
            with contextlib.suppress(OSError):
                replay.save(self._state_path, state)

    def _stale(self, device: str, skew: float) -> None:
        """A heartbeat stamped outside the clock window was dropped: warned of once, then every
        `faults.REPEAT_EVERY` seconds while its sender's are."""
        side = "ahead of" if skew > 0 else "behind"
        self._clock_faults.fail(self._name(device), f"stamped more than {CLOCK_WINDOW:.0f} s {side} this device's "
                                                    "clock: dropped (keep the members' clocks in step, NTP)")

    def _name(self, device_id: str) -> str:
        config = self.config
        return next((p.name for p in config.peers if p.id == device_id), repr(device_id)) if config else repr(device_id)

    # -- reports to the management process ---------------------------------------------------------------

    async def _report(self) -> None:
        while True:
            self._report_now()
            await asyncio.sleep(STATE_EVERY)

    def _report_now(self) -> None:
        if self._control is not None and self.config is not None:
            self._control.send({"type": "state", "report": self.report().dump()})

    def report(self) -> FailoverReport:
        """What the management process shows (`GET /api/failover/status`) and needs of the peers."""
        config = self.config
        assert config is not None
        interval, timeout = self._timers()
        now = time.monotonic()
        groups = []
        for traffic_group in config.traffic_groups if config.group else ():
            members = self.members(traffic_group)
            groups.append(TrafficGroupReport(
                name=traffic_group.name, state=self.states.get(traffic_group.name, STANDBY),
                active_device=next((m.name for m in members if m.alive and m.state == ACTIVE), None),
                declined=traffic_group.name in self.declined,
                ha_order=tuple(m.name for m in in_ha_order(members, list(traffic_group.ha_order))),
                members=tuple(MemberReport(name=m.name, id=m.device_id, alive=m.alive, offline=m.offline,
                                           state=m.state, last_heard_s=self._age(m.device_id, now), score=m.score,
                                           down=m.down) for m in members),
                mirroring=(self._mirroring or MirroringReport.not_mirroring("a group of two devices mirrors"))
                if traffic_group.mirroring else None))
        peers = {p.id: PeerReport(name=p.name, last_heard_s=self._age(p.id, now),
                                  offline=bool(p.id in self._heard and self._heard[p.id][1].offline),
                                  path=self._detector(p.id).report(now),
                                  paths=self._paths.report(p.id, [host_port(*a) for a in p.paths[:self._path_count(p)]],
                                                           now, interval, timeout))
                 for p in config.peers if p.id != config.device_id}
        silence = self.dataplane_silence
        trackers = tuple(TrackerReport(f"{key[0]} {key[1]}", state.up, state.why, state.changed_at)
                         for key, state in sorted(self._tracking.states.items()))
        return FailoverReport(
            out_of_service=self.out_of_service, reason=self._why_out() if self.out_of_service else "",
            heartbeat=HeartbeatReport(interval, timeout, dataclasses.replace(self.counters)),
            traffic_groups=tuple(groups), peers=peers, addresses=tuple(sorted(self.held)),
            address_errors=self.address_faults.messages(),
            dataplane_silent_s=round(silence, 3) if silence is not None else None, trackers=trackers)

    def _age(self, device_id: str, now: float) -> float | None:
        if self.config is None or device_id == self.config.device_id or device_id not in self._heard:
            return None
        return round(now - self._heard[device_id][0], 3)


async def _run(args: argparse.Namespace, control: ipc.Channel) -> None:
    listen = tuple(parse_host_port(address) for address in args.listen)
    addresses = await asyncio.to_thread(provider, args.addresses, args.interface)  # netlink: off the loop
    notifier = Notifier([Path(script) for script in args.notify], args.notify_timeout)
    await Failover(addresses, listen, args.dataplane_socket, Path(args.state), notifier).run(control)


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", action="append", required=True,
                        help="ADDR:PORT of the heartbeats (UDP), by path: the peer address first; repeatable")
    parser.add_argument("--addresses", default="loopback", help="the address provider: loopback or linux")
    parser.add_argument("--interface", help="the interface of the linux address provider")
    parser.add_argument("--dataplane-socket", required=True, help="the data plane process's Unix socket")
    parser.add_argument("--notify", action="append", default=[], help="a script run at each transition")
    parser.add_argument("--notify-timeout", type=float, default=DEFAULT_TIMEOUT,
                        help="seconds before a notify script still running is killed")
    parser.add_argument("--state", default=replay.STATE_FILE,
                        help="the file of what makes heartbeats unreplayable across restarts")


if __name__ == "__main__":
    ipc.child_main("failover", "The failover process of a Tandem device (started by it).", _arguments, _run,
                   realtime=True)
