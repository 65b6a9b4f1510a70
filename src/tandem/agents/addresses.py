"""The address of each service: the one it asks for, the one it has, or a free one from the address
pool of its traffic group. An agent hands out only the pool addresses that belong to it — by the same
rendezvous hashing, over the same published views, as the services — so two agents never give out the
same address at once, and no request to anyone is needed to take one."""

import hashlib
import ipaddress
from collections.abc import Callable

from tandem.agents.objects import owner_of
from tandem.agents.partition import PartitionState
from tandem.agents.service import Service


def parse_pool(text: str) -> tuple[str, list[str]]:
    """`TRAFFIC_GROUP=FIRST-LAST` (or `=CIDR`) into the traffic group and its addresses; ValueError if bad."""
    group, sep, spec = text.partition("=")
    if not sep or not group:
        raise ValueError(f"{text!r} is not TRAFFIC_GROUP=FIRST-LAST or TRAFFIC_GROUP=CIDR")
    try:
        if "/" in spec:
            network = ipaddress.ip_network(spec, strict=False)
            addresses = list(network.hosts()) if network.num_addresses > 2 else list(network)
        else:
            first_text, _, last_text = spec.partition("-")
            first, last = ipaddress.ip_address(first_text), ipaddress.ip_address(last_text or first_text)
            if first.version != last.version or int(last) < int(first):
                raise ValueError("the last address comes before the first")
            addresses = [ipaddress.ip_address(i) for i in range(int(first), int(last) + 1)]
    except ValueError as error:
        raise ValueError(f"address pool {text!r}: {error}") from None
    if not addresses or len(addresses) > 65_536:
        raise ValueError(f"address pool {text!r}: 1 to 65,536 addresses")
    return group, [a.compressed for a in addresses]


class Addresses:
    """Address pools per traffic group."""

    def __init__(self, pools: dict[str, list[str]], environment: str) -> None:
        self._pools = pools
        self._environment = environment
        self._given: set[str] = set()
        """Addresses given out in this reconcile, not yet written."""

    def begin(self) -> None:
        """A new reconcile: what was given out is in the partition now, or was not written."""
        self._given = set()

    def resolve(self, service: Service, state: PartitionState, mine: Callable[[str], bool]) -> tuple[str | None,
                                                                                                    str | None]:
        """The service's address, or why it has none. `mine(address)`: whether this agent may give it out."""
        destinations = state.destinations()
        if service.address is not None:
            for (address, _), other in destinations.items():
                if address == service.address and owner_of(other, self._environment) != service.key:
                    return None, f"address {address} is taken by virtual server {other.name}"
            return service.address, None
        current = state.address_of(service.key)
        pool = self._pools.get(service.traffic_group)
        if current is not None and pool and current in pool:
            return current, None
        if not pool:
            return None, f"no address asked for and no address pool for traffic group {service.traffic_group}"
        used = {address for address, _ in destinations} | self._given
        start = int.from_bytes(hashlib.blake2b(service.key.encode(), digest_size=4).digest()) % len(pool)
        for address in pool[start:] + pool[:start]:
            if address not in used and mine(address):
                self._given.add(address)
                return address, None
        return None, f"the address pool of traffic group {service.traffic_group} is exhausted"
