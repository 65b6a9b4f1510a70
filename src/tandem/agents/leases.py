"""Leases that all agents of an environment see: on the Tandem device group (file source) or as
Kubernetes `coordination.k8s.io/v1` Lease objects (Kubernetes source), behind one small interface.

Names: `tandem-ENV-agent-HOST` (an agent's liveness, and the status it publishes in `data`) and
`tandem-ENV-leader` (cluster-wide chores).
"""

import asyncio
import math
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


class LeaseStore(Protocol):
    async def acquire(self, name: str, holder: str, ttl: float, status: AgentStatus | None = None) -> bool:
        """Take or renew the lease (publishing `status`, an agent's); False if another holder has it."""

    async def release(self, name: str, holder: str) -> None: ...

    async def list(self, prefix: str) -> list[Lease]: ...


class DeviceLeases:
    """Leases kept by the device group, in the agent's partition."""

    def __init__(self, devices: Devices, partition: str) -> None:
        self._devices = devices
        self._partition = partition

    async def acquire(self, name: str, holder: str, ttl: float, status: AgentStatus | None = None) -> bool:
        data = None if status is None else asdict(status)
        try:
            await self._devices.call(lambda c: c.leases.acquire(self._partition, name, holder, ttl, data))
        except TandemError as error:
            if error.status_code == 409:
                return False
            raise
        return True

    async def release(self, name: str, holder: str) -> None:
        try:
            await self._devices.call(lambda c: c.leases.release(self._partition, name, holder))
        except TandemError as error:
            if error.status_code not in (404, 409):
                raise

    async def list(self, prefix: str) -> list[Lease]:
        leases = await self._devices.call(lambda c: c.leases.all(self._partition))
        return [Lease(lease["name"], lease["holder"], lease["expired"], lease.get("data") or {}, lease["remaining"])
                for lease in leases if lease["name"].startswith(prefix)]


class KubernetesLeases:
    """Lease objects in one namespace, replaced with the resourceVersion they were read at (as
    Kubernetes controllers do); expiry is `renewTime + leaseDurationSeconds` by the agent's clock."""

    def __init__(self, api: Any, namespace: str) -> None:
        self._api = api
        """A `kubernetes.client.CoordinationV1Api`."""
        self._namespace = namespace

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
                self._api.create_namespaced_lease(self._namespace, body)
            except ApiException as created:
                if created.status == 409:
                    return False
                raise
            return True
        if lease.spec.holder_identity != holder and not self._expired(lease, now):
            return False
        if lease.spec.holder_identity != holder:
            lease.spec.acquire_time = now
        lease.spec.holder_identity, lease.spec.renew_time = holder, now
        lease.spec.lease_duration_seconds = math.ceil(ttl)
        lease.metadata.annotations = {**(lease.metadata.annotations or {}), **annotations}
        try:
            self._api.replace_namespaced_lease(name, self._namespace, lease)
        except ApiException as error:
            if error.status == 409:
                return False
            raise
        return True

    async def acquire(self, name: str, holder: str, ttl: float, status: AgentStatus | None = None) -> bool:
        return await asyncio.to_thread(self._acquire, name, holder, ttl, status)

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
        await asyncio.to_thread(self._release, name, holder)

    def _list(self, prefix: str) -> list[Lease]:
        now = datetime.now(UTC)
        out = []
        for lease in self._api.list_namespaced_lease(self._namespace).items:
            if not lease.metadata.name.startswith(prefix):
                continue
            try:
                data = orjson.loads((lease.metadata.annotations or {}).get(DATA_ANNOTATION, "{}"))
            except orjson.JSONDecodeError:
                data = {}
            remaining = self._remaining(lease, now)
            out.append(Lease(lease.metadata.name, lease.spec.holder_identity or "", remaining < 0,
                             data if isinstance(data, dict) else {}, max(0.0, remaining)))
        return out

    async def list(self, prefix: str) -> list[Lease]:
        return await asyncio.to_thread(self._list, prefix)
