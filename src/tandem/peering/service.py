"""The peering service of one device: the relationships' API operations, the intercluster listener,
the links to the peer clusters' devices, and mirroring."""

import asyncio
import secrets
import time
import uuid as uuids
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from tandem.errors import Conflict, Invalid, NotFound
from tandem.models import Partition
from tandem.models.cluster import ClusterMemberView
from tandem.models.peering import DEFAULT_EXPIRY, Authentication, PeerCreate, PeerPatch, PeerRecord, expires_in
from tandem.peering.links import Link, LinkKey, LinkSet
from tandem.peering.mirror import MirrorSource, MirrorTarget, MirrorView
from tandem.peering.pairing import ClusterDescription, pair_with, paired_record
from tandem.peering.records import (
    ClusterStatus,
    MemberHealth,
    PeerStatus,
    Relationships,
    authentication_state,
    iso,
    view,
)
from tandem.peering.secure import PSK_SUPPORTED
from tandem.peering.server import InterclusterServer
from tandem.peering.wire import WireError
from tandem.store import GLOBAL, Store
from tandem.trust.domain import Domain

SETTLE_TIMEOUT = 3.0
"""How long a create or patch that paired waits for its sessions to open, so that its answer shows them."""


class PeeringService:
    """Cluster peering as one device takes part in it."""

    def __init__(self, store: Store, domain: Domain, listen: tuple[str, int] | None,
                 members: Callable[[], list[ClusterMemberView]], is_leader: Callable[[], bool],
                 adopt_partition: Callable[[str], None]) -> None:
        self._store = store
        self._domain = domain
        self.listen = listen
        self._members = members
        self.is_leader = is_leader
        self.relationships = Relationships(domain)
        self.links = LinkSet(self._new_link)
        self.mirrors = MirrorSource(store, self.relationships, self.links, is_leader)
        target = MirrorTarget(store, self.relationships, adopt_partition,
                              synced=lambda partition: any(partition in g.partitions for g in domain.groups()))
        self._server = InterclusterServer(self.relationships, self.local, {
            "status": lambda _uuid, _request: {"type": "status", "cluster": self.cluster_status().frame()},
            "delete": self._deleted_by_remote,
            "mirror-digest": target.digest, "mirror-state": target.state, "mirror-changes": target.changes,
            "mirror-stop": target.stop})
        self._remote: dict[str, tuple[MemberHealth, ...]] = {}
        """The members of each relationship's remote cluster, as its last status answer told them."""
        self._since: dict[str, tuple[str, float]] = {}
        self._running = False

    # -- running ---------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.listen is not None:
            await self._server.start(*self.listen)
        self._running = True
        await self._follow()
        self.mirrors.start()

    async def stop(self) -> None:
        self._running = False
        await self.mirrors.stop()
        await self._server.close()
        for stop in self.links.follow([]):
            await stop

    def domain_changed(self) -> None:
        """The trust domain changed: follow the relationships it holds."""
        if self._running:
            asyncio.get_running_loop().create_task(self._follow())

    async def _follow(self) -> None:
        for stop in self.links.follow(self.relationships.all()):
            await stop
        self.mirrors.wake()

    def _new_link(self, key: LinkKey) -> Link:
        return Link(key, self._domain.domain_id, self.cluster_status, self._on_reply)

    def _on_reply(self, uuid: str, members: tuple[MemberHealth, ...]) -> None:
        self._remote[uuid] = members

    # -- what this cluster tells -----------------------------------------------------------------

    def local_network(self) -> list[str]:
        """The intercluster addresses of this cluster's devices."""
        return [d.intercluster_url for d in self._domain.devices() if d.intercluster_url]

    def local(self) -> ClusterDescription:
        """How this cluster describes itself when pairing (sent as it is: the peer validates it)."""
        return ClusterDescription.model_construct(uuid=self._domain.domain_id, name=self._domain.cluster_name,
                                                  addresses=self.local_network())

    def cluster_status(self) -> ClusterStatus:
        members = tuple(MemberHealth(m.server_name, m.status, m.message) for m in self._members())
        return ClusterStatus(self._domain.domain_id, self._domain.cluster_name, members)

    # -- views -------------------------------------------------------------------------------------

    def status(self, record: PeerRecord) -> PeerStatus:
        """The relationship's state as this device sees it, and since when."""
        remote_members: tuple[MemberHealth, ...] = ()
        if not record.key:
            state = "pending"
            message = ("the passphrase expired: patch a new one" if authentication_state(record) == "expired" else
                       "waiting for the remote cluster to pair with this passphrase")
        else:
            links = self.links.of(record.uuid)
            up = [link for link in links if link.ok]
            state = "available" if links and len(up) == len(links) else "partial" if up else "unavailable"
            message = "; ".join(f"{link.target.address}: {link.message}" for link in links if not link.ok)
            if record.passphrase:
                message = "; ".join(filter(None, [message, "a new passphrase awaits the remote cluster"]))
            if up:
                remote_members = self._remote.get(record.uuid, ())
        since = self._since.get(record.uuid)
        if since is None or since[0] != state:
            since = self._since[record.uuid] = (state, time.time())
        return PeerStatus(state, iso(since[1]), message, remote_members)

    def view(self, record: PeerRecord, shown_passphrase: str | None = None) -> dict[str, Any]:
        shown = view(record, self.status(record), self.local_network())
        if shown_passphrase:
            shown["authentication"]["passphrase"] = shown_passphrase
        return shown

    def uuid_of(self, key: str) -> str:
        """The uuid of the relationship `key` names (its uuid or its name); NotFound if none."""
        return self.relationships.named(key).uuid

    def all(self) -> list[dict[str, Any]]:
        return [self.view(r) for r in sorted(self.relationships.all(), key=lambda r: r.name)]

    def get(self, uuid: str) -> dict[str, Any]:
        return self.view(self.relationships.get(uuid))

    # -- create, change, delete --------------------------------------------------------------------

    def _check_partitions(self, names: list[str]) -> None:
        for name in names:
            if not self._store.exists(Partition.kind, GLOBAL, name):
                raise Invalid(f"initial_allowed_partitions: partition {name!r} does not exist",
                              target="initial_allowed_partitions")

    @staticmethod
    def _check_encryption(proposed: str) -> None:
        if proposed == "tls-psk" and not PSK_SUPPORTED:
            raise Invalid("encryption.proposed: tls-psk needs Python 3.13 or later on this device",
                          target="encryption.proposed")

    @staticmethod
    def _secret(auth: Authentication) -> tuple[str, float, bool]:
        """The passphrase (given or generated), when it expires, and whether it was generated."""
        expires_at = time.time() + expires_in(auth.expiry_time or DEFAULT_EXPIRY).total_seconds()
        if auth.generate_passphrase:
            return secrets.token_urlsafe(18), expires_at, True
        assert auth.passphrase is not None
        return auth.passphrase, expires_at, False

    async def create(self, body: PeerCreate) -> dict[str, Any]:
        """Create a relationship by ONTAP's rules: remote addresses with a passphrase (given or generated),
        or an offer (generate_passphrase alone)."""
        auth = body.authentication or Authentication()
        remote = body.remote.ip_addresses if body.remote else []
        if body.local_network is not None:
            raise Invalid(f"local_network: read-only here: each device listens for peer clusters at its "
                          f"--intercluster-listen address; this cluster's are {self.local_network()}",
                          target="local_network")
        if body.ipspace not in (None, "Default"):
            raise Invalid(f"ipspace: no ipspace {body.ipspace!r}: only Default exists", target="ipspace")
        if auth.passphrase is None and not auth.generate_passphrase:
            if remote:
                raise Invalid("a remote address alone is not enough: give authentication.passphrase as well, or "
                              "authentication.generate_passphrase: true", target="authentication")
            raise Invalid("give remote.ip_addresses and authentication.passphrase, or authentication."
                          "generate_passphrase: true to make an offer", target="authentication")
        if auth.passphrase is not None and not remote:
            raise Invalid("a passphrase alone is not enough: give remote.ip_addresses too (or generate_passphrase: "
                          "true without a passphrase, to make an offer)", target="remote.ip_addresses")
        proposed = body.encryption.proposed if body.encryption else ("tls-psk" if PSK_SUPPORTED else "none")
        self._check_encryption(proposed)
        self._check_partitions(body.initial_allowed_partitions)
        if body.name and any(r.name == body.name for r in self.relationships.all()):
            raise Conflict(f"a cluster peer named {body.name!r} already exists", target="name")
        if not self.local_network():
            raise Conflict("no device of this cluster listens for peer clusters: start devices with "
                           "--intercluster-listen", target="local_network")
        passphrase, expires_at, generated = self._secret(auth)
        uuid = str(uuids.uuid4())
        record = PeerRecord(uuid=uuid, name=body.name or f"pending-{uuid[:8]}", name_given=bool(body.name),
                            remote_addresses=remote, passphrase=passphrase, expires_at=expires_at,
                            encryption_proposed=proposed, initial_allowed_partitions=body.initial_allowed_partitions)
        if remote and not generated:
            pairing = await pair_with(remote, passphrase, proposed, self.local())
            if pairing is not None:
                if self.relationships.with_cluster(pairing.remote.uuid):
                    raise Conflict(f"this cluster is already peered with {pairing.remote.name}", target="remote")
                record = paired_record(record, pairing, self.relationships)
        self.relationships.put(record)
        await self._settle(record)
        return self.view(self.relationships.get(uuid), passphrase if generated else None)

    async def _settle(self, record: PeerRecord) -> None:
        if not record.key:
            return
        await self._follow()
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while not all(link.ok for link in self.links.of(record.uuid)) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    async def update(self, uuid: str, body: PeerPatch) -> dict[str, Any]:
        """Rename, change the remote addresses, or agree a new key (a new passphrase, perhaps with a new
        proposed encryption): a wrong passphrase changes nothing."""
        record = updated = self.relationships.get(uuid)
        if body.name is not None and body.name != record.name:
            if any(r.name == body.name for r in self.relationships.all()):
                raise Conflict(f"a cluster peer named {body.name!r} already exists", target="name")
            updated = updated.model_copy(update={"name": body.name, "name_given": True})
        if body.remote is not None:
            updated = updated.model_copy(update={"remote_addresses": body.remote.ip_addresses})
        if body.initial_allowed_partitions is not None:
            self._check_partitions(body.initial_allowed_partitions)
            updated = updated.model_copy(update={"initial_allowed_partitions": body.initial_allowed_partitions})
        auth = body.authentication
        rekey = auth is not None and (auth.passphrase is not None or auth.generate_passphrase)
        if body.encryption is not None and not rekey:
            raise Invalid("changing encryption.proposed agrees a new key: give authentication.passphrase or "
                          "generate_passphrase as well", target="encryption.proposed")
        if auth is not None and auth.expiry_time is not None and not rekey:  # ONTAP: extend the passphrase's validity
            if authentication_state(record) == "expired":
                raise Conflict("authentication.expiry_time: the passphrase expired; give a new one (authentication."
                               "passphrase or generate_passphrase)", target="authentication.expiry_time")
            if record.passphrase is None:
                raise Conflict("authentication.expiry_time: no passphrase of this relationship awaits use (its key is"
                               " agreed): give a new passphrase to rekey", target="authentication.expiry_time")
            updated = updated.model_copy(update={
                "expires_at": time.time() + expires_in(auth.expiry_time).total_seconds()})
        shown = None
        if rekey:
            assert auth is not None
            proposed = body.encryption.proposed if body.encryption else record.encryption_proposed
            self._check_encryption(proposed)
            passphrase, expires_at, generated = self._secret(auth)
            shown = passphrase if generated else None
            updated = updated.model_copy(update={"passphrase": passphrase, "expires_at": expires_at,
                                                 "encryption_proposed": proposed})
        addresses = updated.remote_addresses
        if rekey and addresses and not shown:
            pairing = await pair_with(addresses, updated.passphrase or "", updated.encryption_proposed, self.local(),
                                      rekey=bool(record.key))
            if pairing is not None:
                if record.remote_uuid and pairing.remote.uuid != record.remote_uuid:
                    raise Conflict(f"{pairing.remote.name} is not the cluster of this relationship", target="remote")
                updated = paired_record(updated, pairing, self.relationships)
        self.relationships.put(updated)
        await self._settle(updated)
        return self.view(self.relationships.get(uuid), shown)

    async def delete(self, uuid: str) -> dict[str, Any]:
        """Delete the relationship here, and on the remote cluster if it is reachable (else it shows the
        relationship as unknown to this cluster when it next connects)."""
        record = self.relationships.get(uuid)
        link = self.links.up(uuid)
        message = "removed on both clusters"
        removed = False
        if link is not None:
            try:
                await link.call({"type": "delete"}, 5.0)
                removed = True
            except WireError as error:
                message = f"removed here only: the remote cluster did not answer ({error})"
        else:
            message = ("removed here only: the remote cluster is unreachable; it marks the relationship "
                       "unavailable when it next connects")
        self.relationships.delete(record.uuid)
        return {"uuid": record.uuid, "name": record.name, "remote_removed": removed, "message": message}

    def _deleted_by_remote(self, uuid: str, _request: dict[str, Any]) -> dict[str, Any]:
        self.relationships.delete(uuid)
        return {"type": "deleted"}

    def read_only(self, partition: str) -> str | None:
        """Why `partition` may not be changed here: it is a mirror of a peer cluster's."""
        owner = self.relationships.mirrored_in(partition)
        return f"partition {partition} is a mirror of cluster peer {owner.name}: change it there" if owner else None

    # -- mirrors -------------------------------------------------------------------------------------

    def _mirror_views(self, uuid: str) -> list[MirrorView]:
        record = self.relationships.get(uuid)
        pusher = self._domain.me.name if self.is_leader() else None
        return [self.mirrors.view(uuid, p, pusher) for p in record.mirrors]

    def mirror_views(self, uuid: str) -> list[dict[str, Any]]:
        return [asdict(m) for m in self._mirror_views(uuid)]

    def mirror_view(self, uuid: str, partition: str) -> dict[str, Any]:
        if partition not in self.relationships.get(uuid).mirrors:
            raise NotFound(f"partition {partition} is not mirrored to this peer", target=partition)
        return asdict(next(m for m in self._mirror_views(uuid) if m.partition == partition))

    async def add_mirror(self, uuid: str, partition: str) -> dict[str, Any]:
        record = self.relationships.get(uuid)
        if not record.key:
            raise Conflict(f"cluster peer {record.name} is not paired yet", target="uuid")
        if not self._store.exists(Partition.kind, GLOBAL, partition):
            raise Invalid(f"partition {partition!r} does not exist", target="partition")
        if record.initial_allowed_partitions and partition not in record.initial_allowed_partitions:
            raise Conflict(f"partition {partition} is not among this peer's initial_allowed_partitions",
                           target="partition")
        owner = self.relationships.mirrored_in(partition)
        if owner is not None:
            raise Conflict(f"partition {partition} here is a mirror of peer {owner.name}", target="partition")
        if partition in record.mirrors:
            raise Conflict(f"partition {partition} is already mirrored to {record.name}", target="partition")
        self.relationships.put(record.model_copy(update={"mirrors": [*record.mirrors, partition]}))
        self.mirrors.wake()
        return self.mirror_view(uuid, partition)

    async def remove_mirror(self, uuid: str, partition: str) -> None:
        """Stop mirroring; the peer keeps its copy, which becomes its own (writable) partition."""
        record = self.relationships.get(uuid)
        if partition not in record.mirrors:
            raise NotFound(f"partition {partition} is not mirrored to {record.name}", target=partition)
        link = self.links.up(uuid)
        if link is None:
            raise Conflict(f"cluster peer {record.name} is unreachable: the mirror cannot be released there",
                             target="uuid")
        await link.call({"type": "mirror-stop", "partition": partition}, 5.0)
        self.relationships.put(record.model_copy(update={"mirrors": [p for p in record.mirrors if p != partition]}))
