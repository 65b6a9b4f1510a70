"""`ClusterPeer`: a relationship with another cluster, as ONTAP's SDK shapes it.

    offer = ClusterPeer(authentication={"generate_passphrase": True, "expiry_time": "PT2H"}).post()
    passphrase = offer.authentication["passphrase"]          # give it to the other cluster's admin
    # on the other cluster:
    peer = ClusterPeer(remote={"ip_addresses": ["10.0.0.1:7444"]},
                       authentication={"passphrase": passphrase}).post()
    peer.poll(state="available")
    peer.mirror("web")                                         # the partition web, one way, to the peer
"""

import time
from typing import TYPE_CHECKING, Any, Self

from tandem.models import peering
from tandem.sdk.errors import TandemError
from tandem.sdk.resource import MISSING, Resource, segment

if TYPE_CHECKING:
    from tandem.sdk.client import Client


class ClusterPeer(Resource):
    """A cluster peer relationship: `/api/cluster/peers/{uuid}`."""

    _model = peering.PeerRecord
    _collection = "/api/cluster/peers"
    _identity = ("uuid",)

    def _changes(self) -> dict[str, Any]:
        """Like every resource, but within an object field (`authentication`, `remote`...) only the
        sub-fields that changed are sent: the others are the server's to tell."""
        changes = super()._changes()
        for key, value in list(changes.items()):
            old = self._last.get(key, MISSING)
            if isinstance(value, dict) and isinstance(old, dict):
                changes[key] = {k: v for k, v in value.items() if old.get(k, MISSING) != v}
        return changes

    def delete(self, *, connection: "Client | None" = None) -> dict[str, Any]:  # type: ignore[override]
        """Delete the relationship (on both clusters when the peer is reachable); the device's report:
        `{"uuid", "name", "remote_removed", "message"}`."""
        return self._conn(connection).request("DELETE", self._item_path())

    def poll(self, state: str = "available", *, timeout: float = 30.0, interval: float = 0.2,
             connection: "Client | None" = None) -> Self:
        """Read the relationship again until its `status.state` is `state`; TandemError `timeout` if not
        within `timeout` seconds (the last status message says why)."""
        deadline = time.monotonic() + timeout
        while True:
            self.get(connection=connection)
            status = self.__dict__.get("status") or {}
            if status.get("state") == state:
                return self
            if time.monotonic() >= deadline:
                raise TandemError(None, "timeout", f"cluster peer {self.__dict__.get('name')} is "
                                  f"{status.get('state')}, not {state}, after {timeout} s: {status.get('message')}",
                                  "status.state")
            time.sleep(interval)

    def mirrors(self, *, connection: "Client | None" = None) -> list[dict[str, Any]]:
        """The partitions of this cluster mirrored to the peer, each with its state."""
        return self._conn(connection).request("GET", f"{self._item_path()}/mirrors")["records"]

    def mirror(self, partition: str, *, connection: "Client | None" = None) -> dict[str, Any]:
        """Mirror `partition` one way to the peer cluster (it is read-only there while mirrored)."""
        return self._conn(connection).request("POST", f"{self._item_path()}/mirrors", json={"partition": partition})

    def unmirror(self, partition: str, *, connection: "Client | None" = None) -> None:
        """Stop mirroring `partition`; the peer keeps its copy, now its own."""
        self._conn(connection).request("DELETE", f"{self._item_path()}/mirrors/{segment(partition)}")
