"""Leases that all agents of an environment see: on the Tandem device group (file source) or as
Kubernetes `coordination.k8s.io/v1` Lease objects (Kubernetes source), behind one small interface.

Names: `tandem-ENV-agent-HOST` (an agent's liveness, and the status it publishes in `data`) and
`tandem-ENV-leader` (cluster-wide chores).

Each store also gives the agent its fencing token (`token`): the newest change of the leases it has seen
(a device lease's `token`, a Kubernetes resourceVersion). An agent that sees another's view after it was
published holds a newer token than that agent had when it wrote, so the devices can refuse the writes of an
agent whose lease ran out while the others took its work over (`tandem.config.fences`). Tokens are compared
within one `epoch`, the store's identity: the partition's device leases, or the uid of the Lease
`tandem-ENV-epoch` that the agents of an environment create once and never change (another Kubernetes
cluster, or that Lease deleted, starts a new epoch whose tokens replace the old ones).
"""

import asyncio
import functools
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import orjson

from tandem.agents.devices import Devices
from tandem.sdk import TandemError

DATA_ANNOTATION = "tandem.io/agent"


@dataclass(frozen=True)
class AgentStatus:
    """What an agent publishes in its lease: the view it works with (the host ids of the live agents, for
    the other agents), and how it is doing (for `tandem agent status`)."""

    view: tuple[str, ...]
    instance: str
    source: str
    """The kind of its source: `file`, `kubernetes`."""
    owned: int
    """How many services it writes."""
    leader: bool
    device: str
    """The URL of the device it writes to."""
    last_reconcile: float | None
    """When its last reconcile ended (epoch seconds)."""
    error: str | None
    problem_count: int
    problems: dict[str, str]
    """A few of the services with a problem, and the problem (shortened)."""
    source_errors: dict[str, str]


@dataclass(frozen=True)
class Lease:
    name: str
    holder: str
    expired: bool
    data: dict[str, Any]
    """What the holder published, as JSON (an agent's lease: its AgentStatus); shown by `tandem agent status`."""
    remaining: float = 0.0
    """Seconds until it expires (if not renewed), as the store judged when listed."""

    @property
    def view(self) -> list[str]:
        """The view an agent published in its lease (empty if none)."""
        return list(self.data.get("view") or [])


def agent_lease(environment: str, host_id: str) -> str:
    return f"tandem-{environment}-agent-{host_id}"


def leader_lease(environment: str) -> str:
    return f"tandem-{environment}-leader"


def epoch_lease(environment: str) -> str:
    return f"tandem-{environment}-epoch"


class LeaseStore(Protocol):
    token: int | None
    """The newest change of the leases seen so far (None: none yet, or a store without tokens)."""
    epoch: str | None
    """The identity of the store the tokens come from (None: not known yet)."""

    async def acquire(self, name: str, holder: str, ttl: float, status: AgentStatus | None = None) -> bool:
        """Take or renew the lease (publishing `status`, an agent's); False if another holder has it."""

    async def release(self, name: str, holder: str) -> None: ...

    async def list(self, prefix: str) -> list[Lease]: ...


class DeviceLeases:
    """Leases kept by the device group, in the agent's partition."""

    def __init__(self, devices: Devices, partition: str) -> None:
        self._devices = devices
        self._partition = partition
        self.token: int | None = None
        self.epoch: str | None = "device leases"

    def _saw(self, token: int) -> None:
        self.token = max(self.token or 0, token)

    async def acquire(self, name: str, holder: str, ttl: float, status: AgentStatus | None = None) -> bool:
        data = None if status is None else asdict(status)
        try:
            lease = await self._devices.call(lambda c: c.leases.acquire(self._partition, name, holder, ttl, data))
        except TandemError as error:
            if error.status_code == 409:
                return False
            raise
        self._saw(lease.get("token", 0))
        return True

    async def release(self, name: str, holder: str) -> None:
        try:
            await self._devices.call(lambda c: c.leases.release(self._partition, name, holder))
        except TandemError as error:
            if error.status_code not in (404, 409):
                raise

    async def list(self, prefix: str) -> list[Lease]:
        leases = await self._devices.call(lambda c: c.leases.all(self._partition))
        for lease in leases:
            self._saw(lease.get("token", 0))
        return [Lease(lease["name"], lease["holder"], lease["expired"], lease.get("data") or {}, lease["remaining"])
                for lease in leases if lease["name"].startswith(prefix)]


class KubernetesLeases:
    """Lease objects in one namespace, replaced with the resourceVersion they were read at (as
    Kubernetes controllers do); expiry is `renewTime + leaseDurationSeconds` by the agent's clock."""

    def __init__(self, api: Any, namespace: str, epoch_name: str | None = None) -> None:
        self._api = api
        """A `kubernetes.client.CoordinationV1Api`."""
        self._namespace = namespace
        self._epoch_name = epoch_name
        """The Lease whose uid is the epoch (None: no tokens, for reading only)."""
        self.token: int | None = None
        self.epoch: str | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="leases")
        """The Kubernetes client's calls for leases run here, not in the thread pool the agent's reads, writes
        and status reports share: a renewal never waits behind them."""

    async def _call(self, function: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, functools.partial(function, *args))

    def _read_epoch(self) -> None:
        """Learn the epoch: the uid of the epoch Lease, created if there is none."""
        from kubernetes.client import ApiException, V1Lease, V1ObjectMeta

        if self._epoch_name is None or self.epoch is not None:
            return
        try:
            lease = self._api.read_namespaced_lease(self._epoch_name, self._namespace)
        except ApiException as error:
            if error.status != 404:
                raise
            try:
                lease = self._api.create_namespaced_lease(self._namespace, V1Lease(metadata=V1ObjectMeta(
                    name=self._epoch_name, annotations={DATA_ANNOTATION: "{}"})))
            except ApiException as created:
                if created.status != 409:
                    raise
                lease = self._api.read_namespaced_lease(self._epoch_name, self._namespace)
        self.epoch = lease.metadata.uid

    def _saw(self, resource_version: str | None) -> None:
        """Note a resourceVersion as a token: etcd's revision, an integer on API servers backed by etcd (an
        API server whose versions are not integers gives no token: writes then go unfenced)."""
        if resource_version is not None and resource_version.isdigit():
            self.token = max(self.token or 0, int(resource_version))

    @staticmethod
    def _remaining(lease: Any, now: datetime) -> float:
        """Seconds until the lease expires (negative: expired)."""
        spec = lease.spec
        if not spec or not spec.holder_identity or spec.renew_time is None:
            return -1.0
        return (spec.renew_time + timedelta(seconds=spec.lease_duration_seconds or 0) - now).total_seconds()

    @classmethod
    def _expired(cls, lease: Any, now: datetime) -> bool:
        return cls._remaining(lease, now) < 0

    def _acquire(self, name: str, holder: str, ttl: float, status: AgentStatus | None) -> bool:
        from kubernetes.client import ApiException, V1Lease, V1LeaseSpec, V1ObjectMeta

        self._read_epoch()
        now = datetime.now(UTC)
        annotations = {DATA_ANNOTATION: orjson.dumps(status if status is not None else {}).decode()}
        try:
            lease = self._api.read_namespaced_lease(name, self._namespace)
        except ApiException as error:
            if error.status != 404:
                raise
            body = V1Lease(metadata=V1ObjectMeta(name=name, annotations=annotations), spec=V1LeaseSpec(
                holder_identity=holder, lease_duration_seconds=math.ceil(ttl), acquire_time=now, renew_time=now))
            try:
                created = self._api.create_namespaced_lease(self._namespace, body)
            except ApiException as refused:
                if refused.status == 409:
                    return False
                raise
            self._saw(created.metadata.resource_version)
            return True
        if lease.spec.holder_identity != holder and not self._expired(lease, now):
            return False
        if lease.spec.holder_identity != holder:
            lease.spec.acquire_time = now
        lease.spec.holder_identity, lease.spec.renew_time = holder, now
        lease.spec.lease_duration_seconds = math.ceil(ttl)
        lease.metadata.annotations = {**(lease.metadata.annotations or {}), **annotations}
        try:
            replaced = self._api.replace_namespaced_lease(name, self._namespace, lease)
        except ApiException as error:
            if error.status == 409:
                return False
            raise
        self._saw(replaced.metadata.resource_version)
        return True

    async def acquire(self, name: str, holder: str, ttl: float, status: AgentStatus | None = None) -> bool:
        return await self._call(self._acquire, name, holder, ttl, status)

    def _release(self, name: str, holder: str) -> None:
        from kubernetes.client import ApiException

        try:
            lease = self._api.read_namespaced_lease(name, self._namespace)
            if lease.spec.holder_identity == holder:
                self._api.delete_namespaced_lease(name, self._namespace)
        except ApiException as error:
            if error.status not in (404, 409):
                raise

    async def release(self, name: str, holder: str) -> None:
        await self._call(self._release, name, holder)

    def _list(self, prefix: str) -> list[Lease]:
        now = datetime.now(UTC)
        out = []
        listing = self._api.list_namespaced_lease(self._namespace)
        self._saw(listing.metadata.resource_version)
        for lease in listing.items:
            if not lease.metadata.name.startswith(prefix):
                continue
            try:
                data = orjson.loads((lease.metadata.annotations or {}).get(DATA_ANNOTATION, "{}"))
            except orjson.JSONDecodeError:
                data = {}
            remaining = self._remaining(lease, now)
            holder = (lease.spec.holder_identity if lease.spec else None) or ""
            out.append(Lease(lease.metadata.name, holder, remaining < 0,
                             data if isinstance(data, dict) else {}, max(0.0, remaining)))
        return out

    async def list(self, prefix: str) -> list[Lease]:
        return await self._call(self._list, prefix)
