"""Failover: traffic groups, and the failover state of a device (status, events, operator actions).

    TrafficGroup(name="traffic-group-1", device_group="dg", ha_order=["dev-1", "dev-2"]).post()
    failover = Failover(client)                 # or Failover() inside `with client:`
    failover.status()["traffic_groups"][0]["active_device"]       # "dev-1"
    failover.force_standby("traffic-group-1")   # the active device hands the traffic group on
    failover.offline(); failover.online()       # take the device out of failover, bring it back
    failover.events(traffic_group="traffic-group-1", limit=20)
    failover.wait_active("traffic-group-1", "dev-2", timeout=5)

The status and the actions are those of the device the connection reaches: each device answers
with what it hears (see docs/failover.md for the rule and the fields).
"""

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from tandem.models import cluster
from tandem.sdk.connection import get_connection
from tandem.sdk.errors import TandemError
from tandem.sdk.resource import Resource, segment

if TYPE_CHECKING:
    from tandem.sdk.client import Client

ACTIVE, STANDBY, OFFLINE = "active", "standby", "offline"
"""A device's states for a traffic group (a device forced offline is offline for all of them)."""

POLL_INTERVAL = 0.1


class TrafficGroup(Resource):
    """A traffic group: `/api/traffic-groups/{name}` (a record of the trust domain, like device groups).

    Fields: `name`, `device_group` (a sync-failover group), `ha_order` (device names, most preferred
    first), `addresses` (floating addresses besides the virtual servers' own), `auto_failback`,
    `failback_delay`, `quorum`, `trackers` (`[{"type": "gateway", "target": "198.18.0.1", "weight": 50}]`),
    `score_hold`, `mirroring`, `description`.
    """

    _model = cluster.TrafficGroup
    _collection = "/api/traffic-groups"
    _identity = ("name",)

    def status(self, connection: "Client | None" = None) -> dict[str, Any]:
        """This traffic group's entry of the connected device's failover status: `{"name", "state",
        "active_device", "declined", "ha_order", "addresses", "auto_failback", "members": [...]}`;
        TandemError `not_found` when the device has no such traffic group in its sync-failover group."""
        return Failover(self._conn(connection)).traffic_group(self._key_value("name"))

    def force_standby(self, connection: "Client | None" = None) -> dict[str, Any]:
        """Make the connected device (it must be active for this traffic group) hand it to the next
        device; the device's failover status after the change."""
        return Failover(self._conn(connection)).force_standby(self._key_value("name"))


class Failover:
    """The failover state of one device and the operator's actions on it.

    `Failover(client)` talks to `client`; `Failover()` to the default connection (`with client:`,
    `set_default`), resolved at each call. Every method also takes `connection=` to talk to
    another device for one call.
    """

    def __init__(self, connection: "Client | None" = None) -> None:
        self._connection = connection

    def __repr__(self) -> str:
        return f"Failover({self._connection!r})"

    def _conn(self, connection: "Client | None") -> "Client":
        return get_connection(connection if connection is not None else self._connection)

    # --- reads ------------------------------------------------------------------------------

    def status(self, *, connection: "Client | None" = None) -> dict[str, Any]:
        """`GET /api/failover/status`: `{"device", "device_group", "offline", "state",
        "heartbeat": {"interval", "timeout", "received", "forged", "replayed", "malformed"},
        "traffic_groups": [{"name", "state", "active_device", "declined", "ha_order", "addresses",
        "auto_failback", "members": [{"name", "alive", "offline", "state", "last_heard_s"}]}]}`."""
        return self._conn(connection).request("GET", "/api/failover/status")

    def traffic_group(self, name: str, *, connection: "Client | None" = None) -> dict[str, Any]:
        """One traffic group's entry of `status()`; TandemError `not_found` when it has none."""
        status = self.status(connection=connection)
        for group in status.get("traffic_groups", ()):
            if group.get("name") == name:
                return group
        raise TandemError(404, "not_found",
                          f"{status.get('device', 'the device')} has no traffic group {name!r} in its "
                          f"sync-failover group ({status.get('device_group') or 'none'})", name)

    def active_device(self, traffic_group: str, *, connection: "Client | None" = None) -> str | None:
        """The device the connected device hears active for `traffic_group` (None: none now)."""
        return self.traffic_group(traffic_group, connection=connection).get("active_device")

    def events(self, traffic_group: str | None = None, limit: int = 100, *,
               connection: "Client | None" = None) -> list[dict[str, Any]]:
        """The device's latest failover events, oldest first (at most `limit`, 1 to 10000):
        `{"id", "at" (UNIX time), "traffic_group", "from_state", "to_state", "reason", "kind"}`; `kind` is
        `transition`, or `path` for a heartbeat path lost or back (no traffic group: not shown with one asked)."""
        params: dict[str, Any] = {"limit": limit}
        if traffic_group is not None:
            params["traffic_group"] = traffic_group
        answer = self._conn(connection).request("GET", "/api/failover/events", params=params)
        return list(answer.get("records", ())) if isinstance(answer, dict) else []

    def watch_events(self, traffic_group: str | None = None, last: int = 1, *,
                     connection: "Client | None" = None) -> Iterator[dict[str, Any]]:
        """The device's last `last` events (1 to 10000), then each as it happens
        (`GET /api/failover/events?watch=true`), for as long as the caller reads; records as `events` gives them."""
        params: dict[str, Any] = {"watch": "true", "limit": last}
        if traffic_group is not None:
            params["traffic_group"] = traffic_group
        yield from self._conn(connection).watch("/api/failover/events", params=params)

    def dataplane(self, *, connection: "Client | None" = None) -> dict[str, Any]:
        """`GET /api/dataplane`: what the device serves now: `{"addresses", "address_errors",
        "errors", "virtuals": {"/P/N": {...}}, "pools": {"/P/N": {member: {...}}}}`."""
        return self._conn(connection).request("GET", "/api/dataplane")

    # --- actions ----------------------------------------------------------------------------

    def force_standby(self, traffic_group: str, *, connection: "Client | None" = None) -> dict[str, Any]:
        """The connected device, active for `traffic_group`, steps down and declines it while another
        candidate is alive (TandemError `conflict` when it is not active); its status afterwards."""
        path = f"/api/failover/traffic-groups/{segment(traffic_group)}/force-standby"
        return self._conn(connection).request("POST", path)

    def offline(self, *, connection: "Client | None" = None) -> dict[str, Any]:
        """Take the connected device out of failover: it takes no traffic group (kept across restarts);
        its status afterwards."""
        return self._conn(connection).request("POST", "/api/failover/offline")

    def online(self, *, connection: "Client | None" = None) -> dict[str, Any]:
        """Bring the connected device back into failover (and clear its forced standbys); its status."""
        return self._conn(connection).request("POST", "/api/failover/online")

    # --- waiting ----------------------------------------------------------------------------

    def wait_active(self, traffic_group: str, device: str | None = None, *, timeout: float = 10.0,
                    connection: "Client | None" = None) -> dict[str, Any]:
        """Poll the connected device's status until it hears `device` (any device, when None) active
        for `traffic_group`; the traffic group's entry. TandemError `timeout` with the last state seen."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                group = self.traffic_group(traffic_group, connection=connection)
            except TandemError as exc:
                if exc.status_code != 404:
                    raise
                group = {"active_device": None, "state": "(no such traffic group yet)"}
            active = group.get("active_device")
            if active is not None and (device is None or active == device):
                return group
            if time.monotonic() >= deadline:
                wanted = device or "a device"
                raise TandemError(None, "timeout",
                                  f"waited {timeout:g} s for {wanted} to be active for {traffic_group}; last seen: "
                                  f"active {active or 'none'}, this device {group.get('state')}", traffic_group)
            time.sleep(POLL_INTERVAL)
