"""The clustering resources of a device's API: the trust domain and its device groups.

    TrustedDevice(url="https://10.0.0.2:8443", username="admin", password="...",
                  fingerprint="sha256:...").post()          # add a device to the trust domain
    TrustedDevice(name="dev-2").delete()                    # remove it, everywhere
    group = DeviceGroup(name="dg", type="sync-failover", members=["dev-1", "dev-2"]).post()
    group.status()["status"]                                # "In Sync", ...
    group.sync("dev-1")                                     # make dev-1's configuration the group's

See docs/clustering.md for the fields and the sync status.
"""

from typing import TYPE_CHECKING, Any, Self

from tandem.models import cluster
from tandem.sdk.job import Job, run_job
from tandem.sdk.resource import Resource

if TYPE_CHECKING:
    from tandem.sdk.client import Client


class TrustedDevice(Resource):
    """A device of the trust domain: `/api/trust/devices/{name}`.

    Records read from the device have `name`, `id`, `fingerprint`, `management_url`, `peer_url`,
    `self`, `connected` and `message`. To add a device, post one made of that device's
    `url`, admin `username` and `password`, and optionally the `fingerprint` its certificate
    must have; the device's record comes back (the password is not kept on the object).
    `delete()` removes the device from the domain, on every member.
    """

    _model = cluster.TrustedDevice
    _collection = "/api/trust/devices"
    _identity = ("name",)

    def post(self, *, hydrate: bool = False, connection: "Client | None" = None) -> Self:
        try:
            return super().post(hydrate=hydrate, connection=connection)
        finally:
            self.__dict__.pop("password", None)
            self._last.pop("password", None)

    @classmethod
    def add(
        cls,
        url: str,
        username: str,
        password: str,
        fingerprint: str | None = None,
        *,
        connection: "Client | None" = None,
    ) -> "TrustedDevice":
        """Add the device at `url` to the trust domain of the connected device; its record."""
        body: dict[str, Any] = {"url": url, "username": username, "password": password}
        if fingerprint:
            body["fingerprint"] = fingerprint
        return cls(connection=connection, **body).post()


class DeviceGroup(Resource):
    """A device group: `/api/device-groups/{name}`.

    Fields: `name`, `type` (`sync-failover` or `sync-only`, fixed once created), `members`
    (device names), `partitions` (default `["Common"]`), `auto_sync`, `full_load_on_sync`,
    `description`.
    """

    _model = cluster.DeviceGroup
    _collection = "/api/device-groups"
    _identity = ("name",)

    def status(self, connection: "Client | None" = None) -> dict[str, Any]:
        """The group's sync status as the connected device sees it: `{"name", "type", "status",
        "members": [{"name", "status", "connected", "pending_changes", "last_commit", "message"}],
        "conflicts": [...]}`."""
        return self._conn(connection).request("GET", f"{self._item_path()}/status")

    def sync(
        self,
        from_device: str,
        *,
        poll: bool = True,
        poll_timeout: float = 60,
        connection: "Client | None" = None,
    ) -> Job:
        """Make `from_device`'s configuration the group's (a job; with `poll`, waited for and
        raised as TandemError if it failed)."""
        return run_job(
            self._conn(connection),
            "POST",
            f"{self._item_path()}/sync",
            json={"from": from_device},
            poll=poll,
            timeout=poll_timeout,
        )

    def clear_conflicts(self, connection: "Client | None" = None) -> None:
        """Clear the group's conflict records."""
        self._conn(connection).request("DELETE", f"{self._item_path()}/conflicts")
