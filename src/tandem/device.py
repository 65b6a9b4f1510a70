"""One device: the composition root that builds its parts and wires them, and the façade the API uses."""

import asyncio
import ipaddress
import os
import secrets
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tandem._version import __version__
from tandem.auth import Sessions
from tandem.auth.audit import AuditTrail
from tandem.backups.archive import BackupError, Manifest
from tandem.backups.contents import take
from tandem.cluster.devices import TrustedDevices
from tandem.cluster.management_tls import ManagementTls
from tandem.cluster.members import ClusterMembers
from tandem.config import ConfigService, integrity
from tandem.config.batches import BatchWorker
from tandem.config.upgrade import upgrade
from tandem.dataplane.choice import EngineUnavailable, choose
from tandem.dataplane.service import DataPlane
from tandem.errors import ApiError, InsufficientStorage
from tandem.failover.addresses import provider
from tandem.failover.heartbeat import MAX_PATHS
from tandem.failover.service import FailoverService
from tandem.failover.traffic_groups import TrafficGroups
from tandem.jobs import Jobs
from tandem.leases import Leases
from tandem.models import DEFAULT_PARTITION, DeviceInfo, Partition, User
from tandem.models.api import DEFAULT_ENGINE, EngineInfo, EngineRequest
from tandem.models.cluster import TrustedDevice
from tandem.models.fields import host_port
from tandem.peering.service import PeeringService
from tandem.store import NewerStore, Store
from tandem.store.database import STORE_FILE, read_meta
from tandem.sync.engine import SyncEngine
from tandem.sync.groups import DeviceGroups
from tandem.trust.domain import Domain
from tandem.trust.identity import (
    IDENTITY_DIR,
    Identity,
    IdentityError,
    import_pair,
    load_or_create,
    regenerate,
    write_private,
)
from tandem.trust.management_cert import current as management_certificate
from tandem.trust.users import Users, carry_over

ADMIN_PASSWORD_FILE = "admin-password"
PRIVATE_DIR = 0o700
"""The mode of the data directory and the directories in it, whatever the umask: only the device's user
enters them (the store holds the trust domain's secret and password hashes)."""
T = TypeVar("T")


class DeviceError(Exception):
    """The device cannot start: the message says why."""


@dataclass
class Device:
    """One device: its parts, built and wired together in one place (`open`), and the façade the API uses.

    The API reaches the device through the services below and `write`, `flush`, `info`; `store` and
    `domain` are the device's internals, for the services and the tests."""

    name: str
    data_dir: Path
    management_url: str
    identity: Identity
    store: Store
    domain: Domain
    sync: SyncEngine
    failover: FailoverService
    dataplane: DataPlane
    trust: TrustedDevices
    groups: DeviceGroups
    traffic_groups: TrafficGroups
    members: ClusterMembers
    peering: PeeringService
    config: ConfigService
    leases: Leases
    batches: BatchWorker
    sessions: Sessions
    users: Users
    audit: AuditTrail
    jobs: Jobs
    management_tls: ManagementTls
    peer_listen: tuple[str, int]

    @classmethod
    def open(cls, name: str, data_dir: Path, host: str, port: int, *, peer_listen: tuple[str, int] | None = None,
             peer_advertise: tuple[str, int] | None = None, admin_password: str | None = None,
             token_ttl: float = 3600.0, durable: bool = False, log_retention: int = 100_000,
             addresses: str = "loopback", interface: str | None = None,
             intercluster_listen: tuple[str, int] | None = None, engine: EngineRequest = DEFAULT_ENGINE,
             notify: tuple[list[Path], float] = ([], 10.0),
             heartbeat_listen: tuple[tuple[str, int], ...] = (), audit_retention: float = 90 * 86400.0) -> "Device":
        """Open (on first start: create) the device kept in `data_dir`. The peer channel listens on
        `peer_listen` (default: the management address, port + 1) and is dialed at `peer_advertise`;
        peer clusters reach it at `intercluster_listen` (none: this device does not take part in peering).
        Its data plane runs the `engine` asked for (`dataplane.choice.choose`); `notify`: the scripts run at each
        transition of its traffic groups, and the seconds each may take (`failover.notify`); its heartbeats go and
        come on the peer address and on each of `heartbeat_listen` (dedicated heartbeat paths)."""
        peer_listen = peer_listen or (host, port + 1)
        _check_heartbeat_paths(peer_listen, heartbeat_listen)  # before anything is written, as the engine's choice
        try:
            chosen = choose(engine)  # before anything is written: a refused start changes nothing
        except EngineUnavailable as error:
            raise DeviceError(str(error)) from None
        try:
            _private_dir(data_dir)
            store = Store(data_dir / STORE_FILE, durable=durable, index_of=integrity.references)
            upgrade(store)
        except (OSError, sqlite3.Error, NewerStore) as error:
            raise DeviceError(f"cannot open the store in {data_dir}: {error}") from None
        known = store.meta("device_name")
        if known is not None and known != name:
            raise DeviceError(f"{data_dir} holds device {known!r}, not {name!r}")
        try:
            provider(addresses, interface)  # refused here, with a clear error, rather than in the failover process
        except (OSError, ValueError) as error:
            raise DeviceError(str(error)) from None
        try:
            _private_dir(data_dir / "run")
            identity = load_or_create(data_dir / IDENTITY_DIR, name, [host], existing=known is not None)
            presented = management_certificate(identity)
        except OSError as error:
            raise DeviceError(f"cannot set up {data_dir}: {error}") from None
        except IdentityError as error:
            raise DeviceError(str(error)) from None
        management_url = f"https://{host_port(host, port)}"
        me = TrustedDevice(id=store.device_id, name=name, fingerprint=identity.fingerprint,
                           cert=identity.cert_path.read_text(), management_url=management_url,
                           peer_url=host_port(*(peer_advertise or peer_listen)),
                           intercluster_url=host_port(*intercluster_listen) if intercluster_listen else "",
                           heartbeat_urls=[host_port(*address) for address in heartbeat_listen],
                           management_fingerprint=presented.leaf.fingerprint if presented.source == "installed" else "")

        # The parts, each given only what it reads.
        domain = Domain(store, me)
        sync = SyncEngine(store, domain, identity, log_retention=log_retention)
        failover = FailoverService(store, domain, (peer_listen, *heartbeat_listen), addresses, interface, data_dir,
                                   notify)
        dataplane = DataPlane(store, domain, failover, data_dir, chosen)
        members = ClusterMembers(domain, failover, sync)
        groups = DeviceGroups(domain, store, sync)
        peering = PeeringService(store, domain, intercluster_listen, members=members.views,
                                 is_leader=lambda: _leads(domain, sync), adopt_partition=groups.add_partition)
        config = ConfigService(store, read_only=peering.read_only, managers=lambda partition: users.assigned(partition))
        sessions = Sessions(store, lambda name: users.lookup(name), token_ttl)
        users = Users(domain, lambda: {name for _, name in store.keys(Partition.kind)}, sessions.forget_user)
        batches = BatchWorker(store, config, lambda: {name: reason for _, name in store.keys(Partition.kind)
                                                      if (reason := peering.read_only(name))}, users.assignments)

        # Who hears what, in the order a write travels: a commit replicates (sync), a change of the objects
        # reaches the data plane and the mirrors; a change of the trust domain reaches sync, failover, the
        # data plane and peering.
        store.scope_of = sync.scopes.rule
        store.on_commit.append(sync.committed)
        store.on_keys += [dataplane.keys_changed, peering.mirrors.keys_changed]
        domain.listeners += [sync.domain_changed, failover.config_changed, dataplane.changed,
                             peering.domain_changed, users.domain_changed]
        carry_over(store, domain)  # users a release before kept on this device

        device = cls(name, data_dir, management_url, identity, store, domain, sync, failover, dataplane,
                     TrustedDevices(domain, sync), groups, TrafficGroups(domain, sync.older_peers), members, peering,
                     config, Leases(store), batches, sessions, users, AuditTrail(store, audit_retention), Jobs(),
                     ManagementTls(identity, domain, sync, presented), peer_listen)
        if known is None:
            device._first_start(admin_password)
            store.set_meta("device_name", name)
        return device

    def _first_start(self, admin_password: str | None) -> None:
        if admin_password is not None and len(admin_password) < 8:
            raise DeviceError("the admin password needs at least 8 characters")
        if admin_password is None:
            admin_password = secrets.token_urlsafe(18)
            write_private(self.data_dir / ADMIN_PASSWORD_FILE, (admin_password + "\n").encode())
        try:
            if self.config.stored(Partition, {"name": DEFAULT_PARTITION}) is None:
                self.config.create(Partition(name=DEFAULT_PARTITION, description="The default partition"))
            if self.users.lookup("admin") is None:
                self.users.create(User(name="admin", role="admin"), self.sessions.hash_password_now(admin_password))
        except ApiError as error:
            raise DeviceError(f"cannot set up the device: {error.message}") from None

    # -- the façade ----------------------------------------------------------------------------------

    async def write(self, change: Callable[..., T], *args: Any) -> T:
        """Run `change(*args)` (a method of `config` or `leases`) on the store's writer thread, where every
        change of the objects runs, one transaction at a time; its result or its exception."""
        return await self.store.write(change, *args)

    async def flush(self) -> None:
        """Wait until the small writes queued so far (tokens, trust domain records) are committed."""
        await self.store.flush()

    def info(self) -> DeviceInfo:
        """This device: `GET /api/device`."""
        presented = self.domain.me.management_fingerprint
        return DeviceInfo(name=self.name, id=self.store.device_id, fingerprint=self.identity.fingerprint,
                          management_fingerprint=presented,
                          management_url=self.management_url, version=__version__,
                          last_commit_id=self.store.last_commit_id(), logins=self.sessions.throttle.stats(),
                          engine=EngineInfo(name=self.dataplane.engine.name, version=self.dataplane.engine.version))

    async def backup(self, passphrase: str) -> tuple[Manifest, bytes]:
        """This device's backup archive (`tandem.backups`), sealed with `passphrase`: made off the event loop,
        from a copy of the store at one point in time. 507 when the data directory has no room for the copy."""
        try:
            return await asyncio.to_thread(take, self.data_dir, self.name, self.store.device_id,
                                           self.identity.fingerprint, passphrase)
        except BackupError as error:
            raise InsufficientStorage(f"cannot make the backup: {error}") from None

    def close(self) -> None:
        self.batches.close()
        self.store.close()


def _leads(domain: Domain, sync: SyncEngine) -> bool:
    """Whether this device leads its cluster's chores (the first by name of the devices it can reach)."""
    reachable = [d.name for d in domain.peers() if (view := sync.peers.get(d.id)) and view.connected]
    return domain.me.name <= min(reachable, default=domain.me.name)


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    path.chmod(PRIVATE_DIR)  # also one made before, or under a wider umask


def regenerate_identity(data_dir: Path, hosts: list[str] | None = None) -> Identity:
    """Give the device kept in `data_dir` (stopped) a new key pair and certificate (`identity.regenerate`)."""
    name = read_meta(data_dir / STORE_FILE, "device_name")
    if name is None:
        raise DeviceError(f"{data_dir} holds no device: `tandem serve` creates one, with its identity")
    try:
        return regenerate(data_dir / IDENTITY_DIR, name, hosts)
    except OSError as error:
        raise DeviceError(f"cannot write the identity in {data_dir}: {error}") from None


def import_identity(data_dir: Path, cert: Path, key: Path) -> Identity:
    """Make the certificate and key in these files (a matching pair) the identity of the device kept in
    `data_dir` (stopped, or not created yet)."""
    try:
        cert_pem, key_pem = cert.read_bytes(), key.read_bytes()
        _private_dir(data_dir)
        name = read_meta(data_dir / STORE_FILE, "device_name") or ""
        return import_pair(data_dir / IDENTITY_DIR, name, cert_pem, key_pem)
    except OSError as error:
        raise DeviceError(f"cannot import the identity: {error}") from None
    except IdentityError as error:
        raise DeviceError(str(error)) from None


def _check_heartbeat_paths(peer_listen: tuple[str, int], heartbeat_listen: tuple[tuple[str, int], ...]) -> None:
    """DeviceError unless the dedicated heartbeat addresses are few enough and each its own."""
    if len(heartbeat_listen) >= MAX_PATHS:
        raise DeviceError(f"at most {MAX_PATHS - 1} heartbeat addresses, not {len(heartbeat_listen)}")
    seen = {peer_listen}
    for address in heartbeat_listen:
        if ipaddress.ip_address(address[0]).is_unspecified:
            raise DeviceError(f"heartbeat address {host_port(*address)}: give the address peers reach (it is "
                              "advertised to them), not an unspecified one")
        if address in seen:
            raise DeviceError(f"heartbeat address {host_port(*address)} is given twice (the peer address counts)")
        seen.add(address)


def admin_password_from(file: Path | None) -> str | None:
    """The first admin's password: from `file`, else from TANDEM_ADMIN_PASSWORD, else None (generate)."""
    if file is not None:
        try:
            password = file.read_text().strip()
        except OSError as error:
            raise DeviceError(f"cannot read the admin password file: {error}") from None
    else:
        password = os.environ.get("TANDEM_ADMIN_PASSWORD", "")
    return password or None
