"""The configuration and user resources of a device's API."""

from typing import TYPE_CHECKING, Any

from tandem.models import DEFAULT_PARTITION
from tandem.models.fields import member_key
from tandem.sdk.resource import Resource, _segment

if TYPE_CHECKING:
    from tandem.sdk.client import Client


class Partition(Resource):
    """A namespace of configuration objects: `/api/partitions/{name}`."""

    _collection = "/api/partitions"
    _identity = ("name",)


class Monitor(Resource):
    """A health monitor (tcp or http): `/api/monitors/{partition}/{name}`."""

    _collection = "/api/monitors"
    _identity_defaults = {"partition": DEFAULT_PARTITION}


class Pool(Resource):
    """A pool: `/api/pools/{partition}/{name}`; `members` is the embedded list of member dicts."""

    _collection = "/api/pools"
    _identity_defaults = {"partition": DEFAULT_PARTITION}

    def stats(self, connection: "Client | None" = None) -> dict[str, Any]:
        """Member health and counters, as the connected device serves the pool now: `{"ADDRESS:PORT":
        {"health", "enabled", "connections_total", "connections_current", "bytes_in", "bytes_out"}}`;
        TandemError `not_found` when the device does not serve it (a standby, or no virtual server uses it)."""
        return self._conn(connection).request("GET", f"{self._item_path()}/stats")


class VirtualServer(Resource):
    """A virtual server: `/api/virtuals/{partition}/{name}`."""

    _collection = "/api/virtuals"
    _identity_defaults = {"partition": DEFAULT_PARTITION}

    def stats(self, connection: "Client | None" = None) -> dict[str, Any]:
        """Counters of the virtual server as the connected device serves it now: `{"address", "port",
        "pool", "listening", "error", "connections_total", "connections_current", "bytes_in",
        "bytes_out"}`; TandemError `not_found` when the device does not serve it (e.g. a standby)."""
        return self._conn(connection).request("GET", f"{self._item_path()}/stats")


class PoolMember(Resource):
    """A member of a pool: `PoolMember("Common", "web", address="10.0.0.1", port=80)`.

    `/api/pools/{partition}/{pool}/members/{address}:{port}` (IPv6 as `[address]:port`).
    """

    _collection = "/api/pools/{partition}/{pool}/members"
    _parents = ("partition", "pool")
    _identity = ("address", "port")

    def _item_segments(self) -> list[str]:
        address: Any = self._key_value("address")
        return [_segment(member_key(str(address), self._key_value("port")))]


class User(Resource):
    """An API user: `/api/users/{name}`; `password` is write-only."""

    _collection = "/api/users"
    _identity = ("name",)
