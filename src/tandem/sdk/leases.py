"""Leases kept by the device group, for agents (`client.leases`):

    lease = client.leases.acquire("apps", "k8s-sync", holder="agent-a", ttl=15, data={"hosts": 3})
    client.leases.acquire("apps", "k8s-sync", holder="agent-a", ttl=15)            # renew
    client.leases.acquire("apps", "k8s-sync", holder="agent-b", ttl=15, version=lease["version"])  # CAS
    client.leases.release("apps", "k8s-sync", holder="agent-a")
    client.leases.all("apps")

A lease held by another holder (or at another version) raises TandemError `conflict` (409).
Compare-and-swap is atomic per device; replication between devices is eventual: see docs/api.md.
"""

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from tandem.sdk.resource import PAGE_LIMIT, _segment

if TYPE_CHECKING:
    from tandem.sdk.client import Client

_LEASES = "/api/leases"


class Leases:
    """The leases of the device the client talks to: `acquire`, `release`, `get`, `all`, `delete`."""

    def __init__(self, client: "Client") -> None:
        self._client = client

    def __repr__(self) -> str:
        return f"Leases({self._client!r})"

    def acquire(self, partition: str, name: str, holder: str, ttl: float, data: dict[str, Any] | None = None,
                version: int | None = None) -> dict[str, Any]:
        """Take or renew the lease for `ttl` seconds; with `version`, only if it is at that version
        (0: it does not exist). Returns the lease."""
        body: dict[str, Any] = {"holder": holder, "ttl": ttl}
        if data is not None:
            body["data"] = data
        if version is not None:
            body["version"] = version
        return self._client.request("POST", f"{self._path(partition, name)}/acquire", json=body)

    def release(self, partition: str, name: str, holder: str) -> dict[str, Any]:
        """End the lease now (its holder only); returns it, expired."""
        return self._client.request("POST", f"{self._path(partition, name)}/release", json={"holder": holder})

    def get(self, partition: str, name: str) -> dict[str, Any]:
        return self._client.request("GET", self._path(partition, name))

    def all(self, partition: str | None = None) -> list[dict[str, Any]]:
        """Every lease (of `partition`, if given)."""
        return list(self._pages({"partition": partition} if partition else {}))

    def delete(self, partition: str, name: str) -> None:
        """Remove the lease whoever holds it (admins only)."""
        self._client.request("DELETE", self._path(partition, name))

    def _pages(self, filters: dict[str, str]) -> Iterator[dict[str, Any]]:
        path: str | None = _LEASES
        params: dict[str, Any] | None = {**filters, "limit": PAGE_LIMIT}
        while path:
            page = self._client.request("GET", path, params=params)
            yield from page["records"]
            path, params = page.get("next"), None

    @staticmethod
    def _path(partition: str, name: str) -> str:
        return f"{_LEASES}/{_segment(partition)}/{_segment(name)}"
