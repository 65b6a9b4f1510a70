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
        self._in_pool = {group: frozenset(addresses) for group, addresses in pools.items()}
        """Each pool as a set: whether an address is in it was a scan of the list (16,384 addresses, for each
        service a takeover planned: most of its time, bench/agent.py agent_takeover_s)."""
        self._environment = environment
        self._given: set[str] = set()
        """Addresses given out in this reconcile, not yet written."""
        self._shared: dict[str, str] | None = None
        """The address of each sharing key, in the partition or given out in this reconcile."""

    def begin(self) -> None:
        """A new reconcile: what was given out is in the partition now, or was not written."""
        self._given, self._shared = set(), None

    def resolve(self, service: Service, state: PartitionState, mine: Callable[[str], bool],
                sharing_of: Callable[[str], str | None]) -> tuple[str | None, str | None]:
        """The service's address, or why it has none. `mine(address)`: whether this agent may give it out;
        `sharing_of(key)`: the sharing key of another service of the source (services of one sharing key
        share an address on different ports, and are all written by the same agent)."""
        if service.address is not None:
            problem = self._clash(service, service.address, state, sharing_of)
            return (None, problem) if problem else (service.address, None)
        pool = self._pools.get(service.traffic_group)
        current = state.address_of(service.key)
        if current is None and service.sharing_key is not None:
            current = self._shared_addresses(state, sharing_of).get(service.sharing_key)
        if (current is not None and current in self._in_pool.get(service.traffic_group, ())
                and service.ip_family in (None, _family(current))):
            problem = self._clash(service, current, state, sharing_of)
            return (None, problem) if problem else (current, None)
        if not pool:
            return None, f"no address asked for and no address pool for traffic group {service.traffic_group}"
        families = (service.ip_family,) if service.ip_family else (4, 6)
        start = int.from_bytes(hashlib.blake2b(service.owner_key.encode(), digest_size=4).digest()) % len(pool)
        for offset in range(len(pool)):  # from `start` round (not a copy of the pool: 16,384 addresses a service)
            address = pool[(start + offset) % len(pool)]
            if (not state.at(address) and address not in self._given and _family(address) in families
                    and mine(address)):
                self._given.add(address)
                if service.sharing_key is not None:
                    self._shared_addresses(state, sharing_of)[service.sharing_key] = address
                return address, None
        family = f" of IPv{service.ip_family} addresses" if service.ip_family else ""
        return None, f"the address pool of traffic group {service.traffic_group} is exhausted{family}"

    def _clash(self, service: Service, address: str, state: PartitionState,
               sharing_of: Callable[[str], str | None]) -> str | None:
        """Why `service` cannot have `address` (None: it can): another's virtual server is there, and is not
        of the same sharing key on another port."""
        ports = {port.port for port in service.ports}
        for port, other in state.at(address).items():
            owner = owner_of(other, self._environment)
            if owner == service.key:
                continue
            if service.sharing_key is None or owner is None or sharing_of(owner) != service.sharing_key:
                return f"address {address} is taken by virtual server {other.name}"
            if port in ports:
                return (f"port {port} of address {address} is taken by virtual server {other.name} (sharing key "
                        f"{service.sharing_key})")
        return None

    def _shared_addresses(self, state: PartitionState, sharing_of: Callable[[str], str | None]) -> dict[str, str]:
        if self._shared is None:
            self._shared = {}
            for key in state.owned():
                sharing = sharing_of(key)
                address = state.address_of(key) if sharing else None
                if sharing and address:
                    self._shared.setdefault(sharing, address)
        return self._shared


def _family(address: str) -> int:
    return 6 if ":" in address else 4
