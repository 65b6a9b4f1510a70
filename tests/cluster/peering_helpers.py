"""Two-site tests: lab clusters of two devices each, with intercluster listeners behind cut proxies."""

from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from cluster_helpers import Cluster, Node, check
from cutproxy import CutProxy

from devices import free_port
from tandem.peering.secure import PSK_SUPPORTED
from waiting import wait_until

PASSPHRASE = "correct horse battery"
DEFAULT_ENCRYPTION = "tls-psk" if PSK_SUPPORTED else "none"
needs_psk = pytest.mark.skipif(not PSK_SUPPORTED, reason="tls-psk needs Python 3.13 (ssl's PSK callbacks)")


@dataclass
class Site:
    """One cluster of the test: its nodes and the proxies in front of their intercluster listeners."""

    name: str
    cluster: Cluster
    proxies: list[CutProxy]

    @property
    def nodes(self) -> list[Node]:
        return self.cluster.nodes

    @property
    def api(self) -> httpx.Client:
        return self.nodes[0].api

    @property
    def addresses(self) -> list[str]:
        """Where the other site reaches this one (through the proxies)."""
        return [p.address for p in self.proxies]

    def cut(self) -> None:
        for proxy in self.proxies:
            proxy.cut()

    def heal(self) -> None:
        for proxy in self.proxies:
            proxy.heal()

    def close(self) -> None:
        for proxy in self.proxies:
            proxy.close()

    def peers(self, node: Node | None = None) -> list[dict[str, Any]]:
        return check((node or self.nodes[0]).api.get("/api/cluster/peers"), 200).json()["records"]

    def peer(self, node: Node | None = None) -> dict[str, Any]:
        peers = self.peers(node)
        assert len(peers) == 1, peers
        return peers[0]

    def wait_state(self, state: str, timeout: float = 15.0) -> None:
        """Until every node of the site shows its one relationship in `state`."""
        wait_until(lambda: all(self.peer(n)["status"]["state"] == state for n in self.nodes), timeout,
                   f"{self.name}: peer state {state}", detail=lambda: {n.name: self.peers(n) for n in self.nodes})


def start_site(cluster: Cluster, name: str) -> Site:
    """A formed 2-device cluster named `name` whose devices listen for peer clusters."""
    proxies = []
    for index in (1, 2):
        port = free_port()
        cluster.start(f"{name}-{index}", extra_args=["--intercluster-listen", f"127.0.0.1:{port}"])
        proxies.append(CutProxy(("127.0.0.1", port)))
    cluster.form()
    check(cluster.nodes[0].api.patch("/api/cluster", json={"cluster_name": name}), 200)
    return Site(name, cluster, proxies)


def create_peer(site: Site, body: dict[str, Any], status: int = 201) -> dict[str, Any]:
    return check(site.api.post("/api/cluster/peers", json=body), status).json()


def pair(a: Site, b: Site, **extra: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Peer the two sites with a passphrase on both sides (a first, pending; then b, which pairs)."""
    first = create_peer(a, {"remote": {"ip_addresses": b.addresses}, "authentication": {"passphrase": PASSPHRASE},
                            **extra})
    assert first["status"]["state"] == "pending", first
    second = create_peer(b, {"remote": {"ip_addresses": a.addresses}, "authentication": {"passphrase": PASSPHRASE},
                             **extra})
    return first, second
