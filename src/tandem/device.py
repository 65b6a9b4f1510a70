"""One device's services, wired together: identity, store, configuration, sessions, jobs."""

import os
import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from tandem.auth import Sessions
from tandem.cluster.members import member_views
from tandem.config import ConfigService
from tandem.config.batches import BatchWorker
from tandem.config.upgrade import upgrade
from tandem.dataplane.service import DataPlane
from tandem.errors import ApiError
from tandem.failover.addresses import provider
from tandem.failover.service import FailoverService
from tandem.jobs import Jobs
from tandem.models import DEFAULT_PARTITION, Partition, User
from tandem.peering.service import PeeringService
from tandem.store import Store
from tandem.sync import groups
from tandem.sync.engine import SyncEngine
from tandem.trust.domain import Domain
from tandem.trust.identity import Identity, load_or_create, write_private

ADMIN_PASSWORD_FILE = "admin-password"


class DeviceError(Exception):
    """The device cannot start: the message says why."""


@dataclass
class Device:
    """The server side of one device, as the api sees it."""

    name: str
    data_dir: Path
    management_url: str
    identity: Identity
    store: Store
    config: ConfigService
    batches: BatchWorker
    sessions: Sessions
    jobs: Jobs
    domain: Domain
    sync: SyncEngine
    failover: FailoverService
    dataplane: DataPlane
    peering: PeeringService
    peer_listen: tuple[str, int]

    @classmethod
    def open(cls, name: str, data_dir: Path, host: str, port: int, *, peer_listen: tuple[str, int] | None = None,
             peer_advertise: tuple[str, int] | None = None, admin_password: str | None = None,
             token_ttl: float = 3600.0, durable: bool = False, log_retention: int = 100_000,
             addresses: str = "loopback", interface: str | None = None,
             intercluster_listen: tuple[str, int] | None = None) -> "Device":
        """Open (on first start: create) the device kept in `data_dir`. The peer channel listens on
        `peer_listen` (default: the management address, port + 1) and is dialed at `peer_advertise`;
        peer clusters reach it at `intercluster_listen` (none: this device does not take part in peering)."""
        try:
            data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            store = Store(data_dir / "tandem.db", durable=durable)
            upgrade(store)
        except (OSError, sqlite3.Error) as error:
            raise DeviceError(f"cannot open the store in {data_dir}: {error}") from None
        known = store.meta("device_name")
        if known is not None and known != name:
            raise DeviceError(f"{data_dir} holds device {known!r}, not {name!r}")
        identity = load_or_create(data_dir / "identity", name, [host])
        config = ConfigService(store)
        sessions = Sessions(store, lambda user: config.stored(User, {"name": user}), token_ttl)
        management_url = f"https://{_host_port(host, port)}"
        peer_listen = peer_listen or (host, port + 1)
        me = {"id": store.device_id, "name": name, "fingerprint": identity.fingerprint,
              "cert": identity.cert_path.read_text(), "management_url": management_url,
              "peer_url": _host_port(*(peer_advertise or peer_listen)),
              "intercluster_url": _host_port(*intercluster_listen) if intercluster_listen else ""}
        domain = Domain(store, me)
        engine = SyncEngine(store, domain, identity, log_retention=log_retention)
        try:
            provider(addresses, interface)  # refused here, with a clear error, rather than in the failover process
        except (OSError, ValueError) as error:
            raise DeviceError(str(error)) from None
        (data_dir / "run").mkdir(exist_ok=True, mode=0o700)
        failover = FailoverService(store, domain, peer_listen, addresses, interface, data_dir)
        dataplane = DataPlane(store, domain, failover, data_dir)
        store.on_change.append(dataplane.changed)
        peering = PeeringService(store, domain, intercluster_listen, members=lambda: member_views(device),
                                 is_leader=lambda: _leads(domain, engine),
                                 adopt_partition=lambda partition: _sync_partition(domain, store, partition))
        config.read_only = peering.read_only
        batches = BatchWorker(store, config, lambda: {name: reason for _, name in store.keys(Partition.kind)
                                                      if (reason := peering.read_only(name))})
        device = cls(name, data_dir, management_url, identity, store, config, batches, sessions, Jobs(), domain,
                     engine, failover, dataplane, peering, peer_listen)
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
            if self.config.stored(User, {"name": "admin"}) is None:
                admin = User(name="admin", role="admin", password=admin_password)
                self.config.create(admin, {"password_hash": self.sessions.hash_password_now(admin_password)})
        except ApiError as error:
            raise DeviceError(f"cannot set up the device: {error.message}") from None

    def close(self) -> None:
        self.batches.close()
        self.store.close()


def _leads(domain: Domain, engine: SyncEngine) -> bool:
    """Whether this device leads its cluster's chores (the first by name of the devices it can reach)."""
    reachable = [d["name"] for d in domain.peers() if (view := engine.peers.get(d["id"])) and view.connected]
    return domain.me["name"] <= min(reachable, default=domain.me["name"])


def _sync_partition(domain: Domain, store: Store, partition: str) -> None:
    """Add `partition` to the device group through which this device syncs, if it has one."""
    me = domain.me["name"]
    mine = sorted((g for g in domain.groups() if me in g["members"]), key=lambda g: g["type"] != "sync-failover")
    if mine and partition not in mine[0]["partitions"]:
        groups.update(domain, store, mine[0]["name"], {"partitions": [*mine[0]["partitions"], partition]})


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


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
