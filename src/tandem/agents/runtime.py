"""The agent: keeps its share of the source's services written to the partition, one batch per reconcile.

Sharing. Every agent holds a lease `tandem-ENV-agent-HOST` and publishes in it the view it works
with: the host ids of the live agents. A service belongs to the agent that wins the rendezvous hash
of its key over a view. An agent writes a service only when it wins it under its own published view
AND under every other live agent's published view. Views are unique per agent, so at most one agent
wins a service in all of them; and an agent publishes a new view only after it adopted it (stopped
writing what it lost), so when membership changes a service is written by its old owner until that
owner publishes a view without it, then by the new one — never by both. An agent that could not renew
its lease within its lifetime stops writing; a write already on its way when that happens carries the
agent's fencing token (the newest lease change it saw), and the device refuses it (`lease_lost`) once an
agent that saw newer leases wrote the same service: the agent then writes nothing until it renewed its lease
and read the others' views again. A second agent with a host id whose lease is held is
refused (`DuplicateHost`). The holder of `tandem-ENV-leader` does the environment's chores: it removes
the objects of services gone from the source (their addresses are free again).
"""

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

import orjson

from tandem.agents.addresses import Addresses
from tandem.agents.devices import Devices, Unreachable
from tandem.agents.leases import AgentStatus, LeaseStore, agent_lease, leader_lease
from tandem.agents.metrics import Metrics
from tandem.agents.objects import ConfigObject, ObjectKey, objects
from tandem.agents.partition import Operation, PartitionState, ordered, read_partition
from tandem.agents.service import Report, Service
from tandem.sdk import TandemError

log = logging.getLogger("tandem.agent")

RESYNC = 10.0
"""Seconds between reconciles when nothing changes (services with a problem are tried again)."""
PLANNED_BETWEEN_YIELDS = 200
"""Services planned between two turns of the event loop: a joining agent planning 10,000 services at once held
its loop for seconds, its lease ran out and the other agent took its services (bench/agent.py, agent_takeover_s)."""
REPORTERS = 4
"""Reports (Service status, Events) sent at once."""
STATUS_BYTES = 3000
"""At most this much status in a lease (device leases hold 4 KB of data)."""
MAX_BATCH = 1000
"""Operations per batch: a device applies a batch in one go, and a very large one would delay its heartbeats."""
MAX_BATCH_BYTES = 512 * 1024
"""A batch's operations in JSON, at most: half a device's request body limit (1 MiB, `api.limits`). A thousand
operations of pools with ten members went over it, and the device refused the batch (413): it was then
written service by service, which took minutes at 10,000 services (bench/agent.py, initial_10k_s)."""


class AgentError(Exception):
    """The agent cannot go on: the message says why."""


class DuplicateHost(AgentError):
    """Another live agent holds this host id."""


class Source(Protocol):
    kind: str
    errors: dict[str, str]

    @property
    def services(self) -> dict[str, Service]: ...

    @property
    def present(self) -> set[str]: ...

    async def run(self, changed: asyncio.Event) -> None: ...

    async def report(self, key: str, report: Report) -> None: ...

    def take_changed(self) -> set[str] | None:
        """The keys of the services changed since the last call (None: any may have)."""


@dataclass
class Options:
    """Who an agent is: its environment, its host id, the partition it owns, its lease time."""

    environment: str
    host_id: str
    partition: str
    lease_ttl: float = 15.0


def _sample(problems: dict[str, str], count: int = 5, length: int = 120) -> dict[str, str]:
    return {key[:length]: text[:length] for key, text in list(problems.items())[:count]}


def owner(key: str, view: list[str]) -> str | None:
    """The agent of `view` that the service `key` belongs to (rendezvous hashing)."""
    return max(view, key=lambda host: hashlib.blake2b(f"{host}\0{key}".encode(), digest_size=8).digest(),
               default=None)


@dataclass
class _Built:
    service: Service
    address: str
    objects: dict[ObjectKey, ConfigObject]


@dataclass
class Agent:
    """One agent: `run()` joins (DuplicateHost if its host id is taken) and keeps its share written."""

    options: Options
    source: Source
    leases: LeaseStore
    devices: Devices
    addresses: Addresses
    metrics: Metrics
    instance: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    view: list[str] = field(default_factory=list)
    published: list[str] = field(default_factory=list)
    others: dict[str, list[str]] = field(default_factory=dict)
    leader: bool = False
    problems: dict[str, str] = field(default_factory=dict)
    last_reconcile: float | None = None
    last_error: str | None = None
    lease_until: float = 0.0

    def __post_init__(self) -> None:
        self.state = PartitionState(self.options.partition, self.options.environment)
        self.changed = asyncio.Event()
        self._built: dict[str, _Built] = {}
        self._reported: dict[str, Report] = {}
        self._moves_seen = -1
        self._reading: asyncio.Task[None] | None = None
        """Reading the partition again in the background (`_read_again`)."""
        self._written: list[list[Operation]] | None = None
        """The operations written since that read began."""
        self._owned: set[str] = set()
        """The services this agent writes, as of the last round."""
        self._changed_elsewhere: dict[str, float] = {}
        """Services the source changed while another agent wrote them, and when: those that come to this agent
        within two lease times of their change (their owner may have died before writing it, and its lease runs
        for one more) are planned and written before the rest of what it takes over."""
        self._writing = asyncio.Lock()
        self._views: tuple[list[str], dict[str, list[str]]] = ([], {})
        self._mine: dict[str, bool] = {}
        self._mine_views: tuple[list[str], dict[str, list[str]]] = ([], {})
        self._full = True
        self._views_read = False
        """Whether the others' views were read since the lease was last lost (nothing is written until then)."""
        self._report_queue: asyncio.Queue[str] = asyncio.Queue()
        self._to_report: dict[str, Report] = {}
        self.metrics.healthy = self.holds_lease

    # -- leases ------------------------------------------------------------------------------------

    @property
    def _interval(self) -> float:
        return min(0.25, self.options.lease_ttl / 8)

    def holds_lease(self) -> bool:
        return time.monotonic() < self.lease_until

    def status(self) -> AgentStatus:
        """What the agent publishes in its lease, for the others and for `tandem agent status` (a few
        problems, shortened: a lease's data is small). Its source errors are those it reports (its share,
        as for services); `problem_count` counts them with the services that have a problem."""
        errors = self.source.errors
        mine = self.mine(set(errors))
        source_errors = {key: error for key, error in errors.items() if key in mine}
        status = AgentStatus(view=tuple(self.published), instance=self.instance, source=self.source.kind,
                             owned=len(self._owned), leader=self.leader, device=self.devices.url,
                             last_reconcile=self.last_reconcile, error=(self.last_error or "")[:200] or None,
                             problem_count=len(self.problems.keys() | mine), problems=_sample(self.problems),
                             source_errors=_sample(source_errors))
        if len(orjson.dumps(status)) > STATUS_BYTES:
            status = replace(status, problems={}, source_errors={})
        return status

    async def _renew(self) -> bool:
        """Renew the lease; a new view is published only between reconciles (so that a reconcile under
        the old view never writes after the new one is out). During a reconcile the lease is renewed with the
        view already published: an agent that joined waited for its first round (5,000 services planned,
        written and reported) and lost its lease meanwhile (bench/agent.py, agent_takeover_s)."""
        if self.view == self.published or self._writing.locked():
            return await self._acquire()
        async with self._writing:
            self.published = list(self.view)
            return await self._acquire()

    async def _acquire(self) -> bool:
        started = time.monotonic()
        held = await self.leases.acquire(agent_lease(self.options.environment, self.options.host_id), self.instance,
                                         self.options.lease_ttl, self.status())
        if held:
            since = started + self.options.lease_ttl - self.lease_until
            if self.lease_until and since > self.options.lease_ttl / 2:
                log.warning("the lease was renewed %.1f s after the last renewal (it lasts %.1f s): the agent or its"
                            " lease store is slow", since, self.options.lease_ttl)
            self.lease_until = started + self.options.lease_ttl
        return held

    async def join(self) -> None:
        """Take this host id's lease; DuplicateHost if another live agent has it, AgentError if the
        leases cannot be reached."""
        self.view = [self.options.host_id]
        try:
            held = await self._renew()
        except Exception as error:  # the device or the Kubernetes API refuses or does not answer
            raise AgentError(f"cannot take this agent's lease: {error}") from None
        if not held:
            raise DuplicateHost(f"host id {self.options.host_id} is held by another live agent of environment "
                                f"{self.options.environment}: give each agent its own --host-id")

    async def _membership(self) -> None:
        """Renew the lease (publishing the view), read the others' leases, adopt the new view."""
        environment = self.options.environment
        while True:
            adopted, expiry = False, None
            try:
                before = self.published
                if not await self._renew():
                    raise DuplicateHost(f"host id {self.options.host_id} was taken by another agent while this one "
                                        "could not renew its lease")
                listed = time.monotonic()
                leases = await self.leases.list(f"tandem-{environment}-")
                live = {lease.name.removeprefix(f"tandem-{environment}-agent-"): lease for lease in leases
                        if lease.name.startswith(f"tandem-{environment}-agent-") and not lease.expired}
                me = self.options.host_id
                others = {host: lease.view for host, lease in live.items() if host != me}
                # look again the moment another agent's lease would run out (as judged when listing began), not
                # up to a cycle later
                expiry = min((listed + lease.remaining + 0.01 for host, lease in live.items() if host != me),
                             default=None)
                view = sorted(set(live) | {me})
                held = next((lease for lease in leases if lease.name == leader_lease(environment)), None)
                leader = False  # taken or renewed by its holder, tried by the others only when it is free
                if held is None or held.expired or held.holder == self.instance:
                    leader = await self.leases.acquire(leader_lease(environment), self.instance,
                                                       self.options.lease_ttl)
                adopted = view != self.view
                if adopted:
                    log.info("live agents: %s", " ".join(view))
                if (adopted or leader != self.leader or self.published != before or others != self.others
                        or not self._views_read):
                    self.view, self.leader, self.others = view, leader, others
                    self._views_read = True
                    self.changed.set()
            except DuplicateHost:
                raise
            except Exception as error:  # unreachable devices, the Kubernetes client's errors: keep trying
                self.last_error = f"leases: {error}"
                log.warning("cannot renew or read the leases: %s", error)
            if not adopted:  # a view just adopted is published at once
                wait = self._interval if expiry is None else min(self._interval, expiry - time.monotonic())
                await asyncio.sleep(max(0.0, wait))

    def mine(self, keys: set[str]) -> set[str]:
        """The services this agent writes now (see the module's doc); remembered until the views change."""
        views = (self.published, self.others)
        if views != self._mine_views:
            self._mine_views, self._mine = (list(self.published), dict(self.others)), {}
        me, others = self.options.host_id, [v for v in self.others.values() if v]
        for key in keys:  # not `keys - self._mine.keys()`: that copies every key remembered, each call
            if key not in self._mine:
                self._mine[key] = owner(key, self.published) == me and all(owner(key, v) == me for v in others)
        return {key for key in keys if self._mine[key]}

    # -- reconciling --------------------------------------------------------------------------------

    async def run(self) -> None:
        await self.join()
        tasks = [asyncio.create_task(self.source.run(self.changed), name="source"),
                 asyncio.create_task(self._membership(), name="membership"),
                 asyncio.create_task(self._reconciling(), name="reconcile"),
                 *(asyncio.create_task(self._reporting(), name="report") for _ in range(REPORTERS))]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            self._stop_reading_again()
            for task in tasks:
                task.cancel()
            with contextlib.suppress(Exception):
                await self.leases.release(agent_lease(self.options.environment, self.options.host_id), self.instance)
                if self.leader:
                    await self.leases.release(leader_lease(self.options.environment), self.instance)

    async def _reconciling(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self.changed.wait(), RESYNC)
            except TimeoutError:
                self._full = True  # now and then, everything is compared again
            self.changed.clear()
            if not self.holds_lease() or not self._views_read:
                continue  # without a live lease another agent may own this agent's share: write nothing
            started = time.perf_counter()
            try:
                async with self._writing:
                    # a view adopted meanwhile is taken up between rounds (its renewal publishes it): renewals made
                    # while rounds run back to back would never publish it
                    self.published = list(self.view)
                    full, self._full = self._full, False
                    await self.reconcile(full)
                self.last_error = None
            except Exception as error:  # unreachable devices, or a bug: log it, read the partition again, retry
                self.state.stale = True
                self.last_error = str(error)
                self.metrics.errors.inc()
                if isinstance(error, Unreachable | TandemError | OSError):
                    log.warning("reconcile failed: %s", error)
                else:
                    log.exception("reconcile failed")
                await asyncio.sleep(self._interval)
                self._full = True
                self.changed.set()
            self.metrics.reconciles.inc()
            self.metrics.reconcile_seconds.observe(time.perf_counter() - started)

    async def reconcile(self, full: bool = True) -> None:
        """Write the difference between what the source wants of this agent's share and what the
        partition holds, in one batch (split per service only when the batch is refused). Only the
        services the source changed are compared, unless `full` (or anything else changed)."""
        # off the event loop, which renews the lease: the Kubernetes source's first picture waits for a rebuild of
        # 10,000 services (on the loop, an agent that had just joined let its lease run out, bench/agent.py)
        changed = await asyncio.to_thread(self.source.take_changed)
        services = self.source.services
        views, moved = (self.published, self.others), False
        if self.state.stale or self._moves_seen != self.devices.moves:
            # after a move or a failed write: read what is there before writing anything
            self._stop_reading_again()
            moves = self.devices.moves
            self.state.load(await self.devices.call(lambda c: read_partition(c, self.options.partition)))
            self._moves_seen, full = moves, True
        elif views != self._views:
            # services and addresses taken over from another agent: what it wrote since this agent last read
            # is read in the background, and the work goes on from what this agent knows (a replace writes
            # the whole object; a delete of what is gone is refused, and the partition is read again then):
            # reading 10,000 services took longer than the lease (bench/agent.py, agent_takeover_s); the read
            # begins once this round wrote (reading in a thread meanwhile slowed the round)
            moved = True
        self._views = views
        full = full or changed is None
        # only what changed is looked at unless `full`: a round that went through every service took most of
        # the agent's time while 10,000 services arrived (bench/agent.py, initial_10k_s); when the views
        # changed, ownership is worked out for every service but only those that came to this agent are
        # planned with what changed (planning all 5,000 held a takeover 1.6 s); the background read's full
        # round compares the rest
        owners = {key: services[key].owner_key
                  for key in (services.keys() if full or moved else changed & services.keys())}
        mine = self.mine(set(owners.values()))
        considered = {key for key, owned_by in owners.items() if owned_by in mine}
        now = time.monotonic()
        self._changed_elsewhere = {key: at for key, at in self._changed_elsewhere.items()  # the owner dead right
                                   if now - at < 2 * self.options.lease_ttl and key in services}  # after: a lease on
        if full:
            self._owned = set(considered)
        elif moved:
            owned, self._owned = self._owned, considered
            considered = (considered - owned) | (considered & changed)
        else:  # in place: what changed alone is touched
            self._owned -= changed
            self._owned |= considered
            self._changed_elsewhere.update(dict.fromkeys(owners.keys() - considered, now))
        first = considered & self._changed_elsewhere.keys()
        for key in considered:
            self._changed_elsewhere.pop(key, None)
        self.metrics.services_owned.set(len(self._owned))
        self.addresses.begin()
        plans: dict[str, list[Operation]] = {}
        def sharing_of(key: str) -> str | None:
            other = services.get(key)
            return other.sharing_key if other else None

        if first:  # what changed while another agent wrote it, taken over: written before the rest is planned
            # (planning the 5,000 services taken over first held their changes 0.5 s, bench/agent.py,
            # agent_takeover_s)
            await self._plan_each(sorted(first), services, plans, sharing_of)
            if plans := {k: ops for k, ops in plans.items() if ops}:
                await self._write(plans)
                plans = {}
        await self._plan_each(sorted(considered - first), services, plans, sharing_of)
        for key in set(self.problems) - self._owned if full or moved else changed - considered:  # gone, not mine
            self.problems.pop(key, None)
        if self.leader:  # the objects of services gone from the source are removed
            if full or changed is None:
                gone = self.state.owned() - self.source.present
            else:  # a service of the source is present: only those that are not might be gone (the whole set of
                # those present, built each round, took a sixth of the agent's time, bench/agent.py)
                maybe = {key for key in changed if key not in services and self.state.owns(key)}
                gone = maybe - self.source.present if maybe else set()
            for key in gone:
                plans[key] = self.state.plan(key, {})[0]
        plans = {k: ops for k, ops in plans.items() if ops}
        if plans:
            await self._write(plans)
        if moved and not self.state.stale:  # (a stale picture is read again, whole, before the next write)
            self._read_again()
        self.metrics.problems.set(len(self.problems))
        self.last_reconcile = time.time()
        for key in considered:
            built = self._built.get(key)
            self._report(key, Report(built.address if built else None, self.problems.get(key),
                                     services[key].warnings, services[key].revision))
        for key, error in self.source.errors.items():
            if (full or changed is None or key in changed) and key in self.mine({key}):
                self._report(key, Report(None, error))
        if full:  # what is gone from the source is told anew should it come back
            for key in self._reported.keys() - self.source.present:
                del self._reported[key]

    def _read_again(self) -> None:
        """Read the partition in the background; what is written meanwhile is applied to what it read."""
        self._stop_reading_again()
        self._written = []
        self._reading = asyncio.get_running_loop().create_task(self._take_what_is_there())

    def _stop_reading_again(self) -> None:
        if self._reading is not None:
            self._reading.cancel()
        self._reading, self._written = None, None

    async def _take_what_is_there(self) -> None:
        try:
            objects = await self.devices.call(lambda c: read_partition(c, self.options.partition))
        except Exception as error:  # unreachable devices: the next round reads before it writes
            log.warning("cannot read the partition again: %s", error)
            self.state.stale = True
            self._reading, self._written = None, None
            self.changed.set()
            return
        async with self._writing:
            written, self._reading, self._written = self._written or [], None, None
            self.state.load(objects)
            for operations in written:
                self.state.applied(operations)
        self._full = True  # everything compared with what is there
        self.changed.set()

    async def _plan_each(self, keys: list[str], services: dict[str, Service], plans: dict[str, list[Operation]],
                         sharing_of: Callable[[str], str | None]) -> None:
        """Plan the services `keys` into `plans`, their problems noted; the event loop turns meanwhile."""
        for index, key in enumerate(keys):
            if index % PLANNED_BETWEEN_YIELDS == PLANNED_BETWEEN_YIELDS - 1:
                await asyncio.sleep(0)  # the lease is renewed meanwhile
            self._note(key, self._plan(services[key], plans, sharing_of))

    def _plan(self, service: Service, plans: dict[str, list[Operation]],
              sharing_of: Callable[[str], str | None]) -> str | None:
        address, problem = self.addresses.resolve(service, self.state, lambda a: bool(self.mine({f"address/{a}"})),
                                                  sharing_of)
        if address is None:
            return problem
        built = self._built.get(service.key)
        if built is None or built.service is not service or built.address != address:
            built = self._built[service.key] = _Built(service, address, objects(
                service, address, self.options.partition, self.options.environment))
        operations, problem = self.state.plan(service.key, built.objects)
        if problem is None:
            plans[service.key] = operations
        return problem

    def _note(self, key: str, problem: str | None) -> None:
        if problem is None:
            self.problems.pop(key, None)
        else:
            self.problems[key] = problem

    async def _write(self, plans: dict[str, list[Operation]]) -> None:
        """Write the plans in batches of at most MAX_BATCH operations and MAX_BATCH_BYTES (one batch, unless the
        change is large), each atomic and holding whole services: a large batch would hold the device up too
        long, or be over its request size."""
        chunk: dict[str, list[Operation]] = {}
        count = size = 0
        for key, operations in plans.items():
            weight = len(orjson.dumps([op.json() for op in operations]))
            if chunk and (count + len(operations) > MAX_BATCH or size + weight > MAX_BATCH_BYTES):
                await self._write_batch(chunk)
                chunk, count, size = {}, 0, 0
            chunk[key] = operations
            count, size = count + len(operations), size + weight
        if chunk:
            await self._write_batch(chunk)

    def _fence(self, keys: list[str]) -> dict[str, object] | None:
        """The fencing token that goes with a batch writing the services `keys` (None: the leases give none)."""
        token, epoch = self.leases.token, self.leases.epoch
        if token is None or epoch is None:
            return None
        return {"partition": self.options.partition, "epoch": epoch, "token": token, "holder": self.instance,
                "scope": [f"{self.options.environment}:{key}" for key in sorted(keys)]}

    def _lost(self, error: TandemError) -> None:
        """A device refused a write as fenced: another agent took this one's work over while its lease had
        run out. Write nothing until the lease is renewed and the others' views are read again."""
        log.warning("the lease was lost (%s): writing nothing until the leases are read again", error.message)
        self.lease_until, self._views_read = 0.0, False
        self.state.stale, self._full = True, True
        self.metrics.errors.inc()

    async def _write_batch(self, plans: dict[str, list[Operation]]) -> None:
        if not self.holds_lease():
            return  # the lease ran out while planning
        batch = ordered([op for ops in plans.values() for op in ops])
        fence = self._fence(list(plans))
        try:
            await self.devices.call(lambda c: c.batch([op.json() for op in batch], fence))
        except TandemError as error:
            if error.code == "lease_lost":
                return self._lost(error)
            if error.status_code is None or error.status_code >= 500:
                raise
            log.warning("batch of %d operations refused (%s): writing service by service", len(batch), error)
            for key, operations in plans.items():
                try:
                    await self.devices.call(lambda c, ops=operations, one=self._fence([key]): c.batch(
                        [op.json() for op in ops], one))
                except TandemError as refused:
                    if refused.code == "lease_lost":
                        return self._lost(refused)
                    if refused.status_code is None or refused.status_code >= 500:
                        raise
                    self._note(key, f"the device refused it: {refused}")
                    self.metrics.errors.inc()
                    self.state.stale = True
                    continue
                self._applied(operations, [key])
            return
        self._applied(batch, list(plans))

    def _applied(self, operations: list[Operation], keys: list[str]) -> None:
        self.state.applied(operations)
        if self._written is not None:
            self._written.append(operations)
        self.metrics.objects_written.inc(len(operations))
        log.info("instance %s wrote %d objects of services %s", self.instance, len(operations), " ".join(sorted(keys)))

    def _report(self, key: str, report: Report) -> None:
        """Have the source told (once per change, by the reporters, off the reconcile's path) the address a
        service got, or why it has none, and its warnings."""
        if self._reported.get(key) == report:
            return
        self._reported[key] = report
        if key not in self._to_report:
            self._report_queue.put_nowait(key)
        self._to_report[key] = report

    async def _reporting(self) -> None:
        while True:
            key = await self._report_queue.get()
            report = self._to_report.pop(key)
            try:
                await self.source.report(key, report)
            except Exception as error:  # reporting is best effort: the service is served either way
                log.warning("cannot report on %s: %s", key, error)
