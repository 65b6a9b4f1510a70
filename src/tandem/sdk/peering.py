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

import orjson

from tandem.models import peering
from tandem.sdk.answers import Answer
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

    def post(self, *, hydrate: bool = False, poll: bool = True, poll_interval: float | None = None,  # type: ignore[override]
             poll_timeout: float | None = None, connection: "Client | None" = None) -> Answer:
        """Create the relationship (or an offer); the answer is netapp_ontap's shape (`http_response`, `is_job`,
        `poll()`) and reads through to this object (a generated passphrase is in `authentication`, this once).
        `poll*` are netapp_ontap's: a create is answered when done."""
        conn = self._conn(connection)
        response = conn.send("POST", self._collection_path(self._parent_values), json=self.to_dict())
        self._remember(orjson.loads(response.content))
        if hydrate:
            self.get(connection=conn)
        return Answer(self, response)

    def patch(self, *, hydrate: bool = False, poll: bool = True, poll_interval: float | None = None,  # type: ignore[override]
              poll_timeout: float | None = None, connection: "Client | None" = None) -> Answer:
        """Send the fields changed since the last read or write (within `authentication`, `remote`...: only the
        sub-fields changed); netapp_ontap's answer, as `post`."""
        conn = self._conn(connection)
        changes = self._changes()
        response = conn.send("PATCH", self._item_path(), json=changes) if changes else None
        if response is not None:
            self._remember(orjson.loads(response.content))
        if hydrate or response is None:
            response = conn.send("GET", self._item_path())
            self._remember(orjson.loads(response.content))
        return Answer(self, response)

    def delete(self, *, poll: bool = True, poll_interval: float | None = None,  # type: ignore[override]
               poll_timeout: float | None = None, connection: "Client | None" = None) -> Answer:
        """Delete the relationship (on both clusters when the peer is reachable); the answer reads through to the
        device's report: `{"uuid", "name", "remote_removed", "message"}`."""
        response = self._conn(connection).send("DELETE", self._item_path())
        return Answer(orjson.loads(response.content), response)

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
