"""Leases kept by the device group, for agents (`client.leases`):

    lease = client.leases.acquire("apps", "k8s-sync", holder="agent-a", ttl=15, data={"hosts": 3})
    client.leases.acquire("apps", "k8s-sync", holder="agent-a", ttl=15)            # renew
    client.leases.acquire("apps", "k8s-sync", holder="agent-b", ttl=15, version=lease["version"])  # CAS
    client.leases.release("apps", "k8s-sync", holder="agent-a")
    client.leases.all("apps")

A lease held by another holder (or at another version) raises TandemError `conflict` (409).
Compare-and-swap is atomic per device; replication between devices is eventual: see docs/api.md.
`client.leases` is the `Lease` resource's methods with the client as the connection, leases as dicts.
"""

from typing import TYPE_CHECKING, Any, Self

from tandem.models import lease
from tandem.sdk.resource import Resource

if TYPE_CHECKING:
    from tandem.sdk.client import Client


class Lease(Resource):
    """A lease: `/api/leases/{partition}/{name}` (`client.leases` hands leases out as dicts)."""

    _model = lease.Lease
    _collection = "/api/leases"

    def acquire(self, holder: str, ttl: float, data: dict[str, Any] | None = None, version: int | None = None,
                *, connection: "Client | None" = None) -> Self:
        """Take or renew the lease for `ttl` seconds; with `version`, only if it is at that version
        (0: it does not exist). The attributes are those of the lease afterwards."""
        body: dict[str, Any] = {"holder": holder, "ttl": ttl}
        if data is not None:
            body["data"] = data
        if version is not None:
            body["version"] = version
        return self._act("acquire", body, connection)

    def release(self, holder: str, *, connection: "Client | None" = None) -> Self:
        """End the lease now (its holder only); the attributes are those of the lease, expired."""
        return self._act("release", {"holder": holder}, connection)

    def _act(self, action: str, body: dict[str, Any], connection: "Client | None") -> Self:
        self._remember(self._conn(connection).request("POST", f"{self._item_path()}/{action}", json=body))
        return self


class Leases:
    """The leases of the device the client talks to: `acquire`, `release`, `get`, `all`, `delete`
    (Lease's methods with the client as the connection, each lease as a dict)."""

    def __init__(self, client: "Client") -> None:
        self._client = client

    def __repr__(self) -> str:
        return f"Leases({self._client!r})"

    def acquire(self, partition: str, name: str, holder: str, ttl: float, data: dict[str, Any] | None = None,
                version: int | None = None) -> dict[str, Any]:
        """Take or renew the lease for `ttl` seconds; with `version`, only if it is at that version
        (0: it does not exist). Returns the lease."""
        return self._lease(partition, name).acquire(holder, ttl, data, version).to_dict()

    def release(self, partition: str, name: str, holder: str) -> dict[str, Any]:
        """End the lease now (its holder only); returns it, expired."""
        return self._lease(partition, name).release(holder).to_dict()

    def get(self, partition: str, name: str) -> dict[str, Any]:
        return self._lease(partition, name).get().to_dict()

    def all(self, partition: str | None = None) -> list[dict[str, Any]]:
        """Every lease (of `partition`, if given)."""
        return [found.to_dict() for found in Lease.get_collection(connection=self._client, partition=partition or None)]

    def delete(self, partition: str, name: str) -> None:
        """Remove the lease whoever holds it (admins only)."""
        self._lease(partition, name).delete()

    def _lease(self, partition: str, name: str) -> Lease:
        return Lease(partition=partition, name=name, connection=self._client)
