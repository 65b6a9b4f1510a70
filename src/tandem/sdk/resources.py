"""The configuration and user resources of a device's API.

Their models (`tandem.models`) give the collection (`/api/{kind}`), the identity fields and their
defaults (`partition` is `Common` where the model says so).
"""

from typing import TYPE_CHECKING, Any

from tandem import models
from tandem.models.fields import member_key
from tandem.sdk.resource import Resource, segment

if TYPE_CHECKING:
    from tandem.sdk.client import Client


class Partition(Resource):
    """A namespace of configuration objects: `/api/partitions/{name}`."""

    _model = models.Partition


class Monitor(Resource):
    """A health monitor (tcp or http): `/api/monitors/{partition}/{name}`."""

    _model = models.Monitor


class Certificate(Resource):
    """A TLS certificate: `/api/certificates/{partition}/{name}`, a PEM chain (`certificate`) and its private
    `key`. The key is write-only: `post` and `patch` send it, then the object forgets it (no read returns it);
    reads bring `subjects`, `not_after`, `fingerprint` and `status`."""

    _model = models.Certificate

    def _remember(self, data: Any) -> None:
        self.__dict__.pop("key", None)
        super()._remember(data)


class Pool(Resource):
    """A pool: `/api/pools/{partition}/{name}`; `members` is the embedded list of member dicts."""

    _model = models.Pool

    def stats(self, connection: "Client | None" = None) -> dict[str, Any]:
        """Member health and counters, as the connected device serves the pool now: `{"ADDRESS:PORT":
        {"health", "state", "enabled", "weight", "connections_total", "connections_current", "bytes_in",
        "bytes_out"}}` (`state`: enabled, disabled or drain; `enabled`: not disabled);
        TandemError `not_found` when the device does not serve it (a standby, or no virtual server uses it)."""
        return self._conn(connection).request("GET", f"{self._item_path()}/stats")


class VirtualServer(Resource):
    """A virtual server: `/api/virtuals/{partition}/{name}`; `rules` is a list of rule dicts (the shape of
    `tandem.models.Rule`), `certificates` a list of references."""

    _model = models.VirtualServer

    def stats(self, connection: "Client | None" = None) -> dict[str, Any]:
        """Counters of the virtual server as the connected device serves it now: `{"address", "port",
        "pool", "listening", "error", "connections_total", "connections_current", "bytes_in",
        "bytes_out"}`; TandemError `not_found` when the device does not serve it (e.g. a standby)."""
        return self._conn(connection).request("GET", f"{self._item_path()}/stats")


class PoolMember(Resource):
    """A member of a pool: `PoolMember("Common", "web", address="10.0.0.1", port=80)`; its `state` is
    `enabled`, `disabled` or `drain` (`member.state = "drain"; member.patch()`), `enabled` a read-only mirror.

    `/api/pools/{partition}/{pool}/members/{address}:{port}` (IPv6 as `[address]:port`).
    """

    _model = models.PoolMember

    def _item_segments(self) -> list[str]:
        address: Any = self._key_value("address")
        return [segment(member_key(str(address), self._key_value("port")))]


class User(Resource):
    """An API user: `/api/users/{name}`; `password` is write-only."""

    _model = models.User
