"""The failover service of one device: sends heartbeats, hears the other members', and keeps this
device's state for each traffic group of its sync-failover group by the rule in `rule.py`."""

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from tandem.errors import Conflict, NotFound
from tandem.failover.heartbeat import Counters, GroupState, Receiver, Sender, heartbeat_key, seal
from tandem.failover.rule import ACTIVE, OFFLINE, STANDBY, Member, decide, ranked
from tandem.store import Store
from tandem.tasks import cancel
from tandem.trust.domain import Domain

log = logging.getLogger("tandem.failover")

EXPIRY_SLACK = 0.001
"""Seconds after a member's timeout at which its silence is judged (so that it counts as expired)."""


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes], None]) -> None:
        self._on_datagram = on_datagram

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self._on_datagram(data)


class FailoverService:
    """Heartbeats and traffic-group states of this device. `on_change` is called when an active set changes."""

    def __init__(self, store: Store, domain: Domain, on_change: Callable[[], None],
                 on_peer_returned: Callable[[], None] = lambda: None) -> None:
        self._store = store
        self._domain = domain
        self._on_change = on_change
        self._on_peer_returned = on_peer_returned
        self._alive: set[str] = set()
        """The other members heard at the last evaluation."""
        self.states: dict[str, str] = {}
        self.declined: set[str] = set()
        self.offline = store.meta("failover_offline") == "1"
        """Taken offline by the operator on this device (`tandem failover offline`); kept across restarts."""
        self._heard: dict[str, tuple[float, Any]] = {}
        self._sender = Sender(domain.device_id)
        self.counters = Counters()
        self._receiver = Receiver(heartbeat_key(domain.secret), self.counters)
        self._transport: asyncio.DatagramTransport | None = None
        self._task: asyncio.Task | None = None
        self._started = time.monotonic()
        self._expiries: dict[str, asyncio.TimerHandle] = {}
        self._seen: dict[str, float] = {}
        """When this device first saw each traffic group: it listens one timeout before taking it."""
        domain.listeners.append(self._domain_changed)

    # -- the group and its traffic groups -----------------------------------------------------------

    def device_group(self) -> dict[str, Any] | None:
        """The sync-failover group this device is a member of, if any."""
        me = self._domain.me["name"]
        return next((g for g in self._domain.groups() if g["type"] == "sync-failover" and me in g["members"]), None)

    def traffic_groups(self) -> list[dict[str, Any]]:
        group = self.device_group()
        return [t for t in self._domain.traffic_groups() if group and t["device_group"] == group["name"]]

    def serves(self, traffic_group: str) -> bool:
        """Whether this device serves the virtual servers of `traffic_group` now: it is active for it;
        or no such traffic group exists and this device is in no sync-failover group (a device on its
        own serves what it holds). A member of a sync-failover group never serves a virtual server of
        a traffic group it does not know: it may be the one replicated ahead of its traffic group."""
        if self._domain.traffic_group(traffic_group) is None:
            return self.device_group() is None
        return self.states.get(traffic_group) == ACTIVE

    @property
    def evacuated(self) -> bool:
        """Whether the cluster evacuated this device (a record of the trust domain, set from any member)."""
        return self._domain.evacuated(self._domain.device_id)

    @property
    def out_of_service(self) -> bool:
        """This device takes no traffic group: it is offline or evacuated (its heartbeats say offline)."""
        return self.offline or self.evacuated

    def _domain_changed(self) -> None:
        self._receiver.key = heartbeat_key(self._domain.secret)
        self.evaluate()
        self._send()  # e.g. an evacuation: the others hear it now, not at the next beat

    # -- running ---------------------------------------------------------------------------------

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(lambda: _Endpoint(self._datagram),
                                                                 local_addr=(host, port))
        self._started = time.monotonic()
        self._task = loop.create_task(self._beat())

    async def stop(self) -> None:
        for expiry in self._expiries.values():
            expiry.cancel()
        await cancel(self._task)
        if self._transport is not None:
            self._transport.close()

    def _timers(self) -> tuple[float, float]:
        group = self.device_group()
        return (group["heartbeat_interval"], group["heartbeat_timeout"]) if group else (0.2, 1.0)

    async def _beat(self) -> None:
        while True:
            self.evaluate()
            self._send()
            await asyncio.sleep(self._timers()[0])

    def _send(self) -> None:
        group = self.device_group()
        if group is None or self._transport is None:
            return
        heartbeat = self._sender.next(self.out_of_service, {
            name: GroupState(state=state, declined=name in self.declined) for name, state in self.states.items()})
        datagram = seal(self._receiver.key, heartbeat)
        for device in self._domain.peers():
            if device["name"] in group["members"]:
                host, _, port = device["peer_url"].rpartition(":")
                with contextlib.suppress(OSError):
                    self._transport.sendto(datagram, (host.strip("[]"), int(port)))

    def _datagram(self, data: bytes) -> None:
        heartbeat = self._receiver.open(data)
        if heartbeat is None or self._domain.device(heartbeat.device) is None:
            return
        self._heard[heartbeat.device] = (time.monotonic(), heartbeat)
        self.evaluate()
        # decide the moment this sender's silence passes the timeout, not at the next beat
        expiry = self._expiries.pop(heartbeat.device, None)
        if expiry is not None:
            expiry.cancel()
        self._expiries[heartbeat.device] = asyncio.get_running_loop().call_later(
            self._timers()[1] + EXPIRY_SLACK, self.evaluate)

    # -- the rule ---------------------------------------------------------------------------------

    def members(self, traffic_group: dict[str, Any]) -> list[Member]:
        """What this device knows now of every member, itself included, for one traffic group."""
        group = self.device_group()
        _, timeout = self._timers()
        now = time.monotonic()
        out = []
        for name in group["members"] if group else []:
            device = self._domain.device_named(name)
            if device is None:
                continue
            if device["id"] == self._domain.device_id:
                name_tg = traffic_group["name"]
                out.append(Member(name, device["id"], True, self.out_of_service, self.states.get(name_tg, STANDBY),
                                  name_tg in self.declined))
                continue
            heard_at, heartbeat = self._heard.get(device["id"], (0.0, None))
            alive = heartbeat is not None and now - heard_at < timeout
            said = heartbeat.groups.get(traffic_group["name"]) if alive else None
            out.append(Member(name, device["id"], alive, alive and heartbeat.offline,
                              said.state if said else STANDBY, bool(said and said.declined)))
        return out

    def evaluate(self) -> None:
        """Apply the rule to every traffic group; record and announce every transition."""
        _, timeout = self._timers()
        now = time.monotonic()
        changed = False
        names = set()
        for traffic_group in self.traffic_groups():
            name = traffic_group["name"]
            names.add(name)
            seen = self._seen.setdefault(name, now)
            listening = now - max(seen, self._started) < timeout
            members = self.members(traffic_group)
            me = next((m for m in members if m.device_id == self._domain.device_id), None)
            if me is None:
                continue
            state, reason = decide(me, members, traffic_group["ha_order"], traffic_group["auto_failback"])
            if state == ACTIVE and listening and me.state != ACTIVE:
                state, reason = STANDBY, ""  # just started: first hear who is active
            elif state == OFFLINE and not self.offline:
                reason = "device is evacuated"
            changed |= self._transition(name, state, reason)
        for name in set(self.states) - names:
            changed |= self._transition(name, None, "traffic group removed or this device left its group")
        for name in set(self._seen) - names:
            del self._seen[name]
        alive = {d for d, (at, _) in self._heard.items() if now - at < timeout}
        if alive - self._alive and ACTIVE in self.states.values():
            self._on_peer_returned()  # it may have served our addresses while apart: win the neighbours back
        self._alive = alive
        if changed:
            self._on_change()

    def _transition(self, name: str, state: str | None, reason: str) -> bool:
        before = self.states.get(name)
        if state == before:
            return False
        if state is None:
            del self.states[name]
        else:
            self.states[name] = state
        event = self._store.add_event(name, before or "none", state or "none", reason or "initial state")
        log.info("traffic group %s: %s -> %s (%s)", name, event["from_state"], event["to_state"], event["reason"])
        return True

    def last_heard(self, device_id: str) -> float | None:
        """Seconds since the last heartbeat of `device_id` (None: none heard since this device started)."""
        heard = self._heard.get(device_id)
        return None if heard is None else time.monotonic() - heard[0]

    def heard_offline(self, device_id: str) -> bool:
        """Whether the last heartbeat of `device_id` said it takes no traffic group (offline or evacuated)."""
        heard = self._heard.get(device_id)
        return heard is not None and heard[1].offline

    # -- operator actions -------------------------------------------------------------------------

    def force_standby(self, traffic_group: str) -> None:
        if self._domain.traffic_group(traffic_group) is None:
            raise NotFound(f"traffic group {traffic_group!r} does not exist", target=traffic_group)
        if self.states.get(traffic_group) != ACTIVE:
            raise Conflict(f"this device is not active for {traffic_group}", target=traffic_group)
        self.declined.add(traffic_group)
        self.evaluate()
        self._send()

    def set_offline(self, offline: bool) -> None:
        self.offline = offline
        self._store.set_meta("failover_offline", "1" if offline else None)
        if not offline:
            self.declined.clear()
        self.evaluate()
        self._send()

    def status(self) -> dict[str, Any]:
        interval, timeout = self._timers()
        now = time.monotonic()
        groups = []
        for traffic_group in self.traffic_groups():
            members = self.members(traffic_group)
            active = next((m.name for m in members if m.alive and m.state == ACTIVE), None)
            groups.append({
                "name": traffic_group["name"], "state": self.states.get(traffic_group["name"], STANDBY),
                "active_device": active, "declined": traffic_group["name"] in self.declined,
                "ha_order": [m.name for m in ranked(members, traffic_group["ha_order"])],
                "addresses": traffic_group["addresses"], "auto_failback": traffic_group["auto_failback"],
                "members": [{"name": m.name, "alive": m.alive, "offline": m.offline, "state": m.state,
                             "last_heard_s": None if m.device_id == self._domain.device_id or m.device_id not in
                             self._heard else round(now - self._heard[m.device_id][0], 3)} for m in members]})
        group = self.device_group()
        return {"device": self._domain.me["name"], "device_group": group["name"] if group else None,
                "offline": self.out_of_service, "evacuated": self.evacuated,
                "state": OFFLINE if self.out_of_service else "online",
                "heartbeat": {"interval": interval, "timeout": timeout, **vars(self.counters)},
                "traffic_groups": groups}
