"""A service as Tandem objects, marked as the agent's: a monitor; per tcp port a pool and a virtual server;
per backend of its http/https ports a pool, per certificate a certificate, per http/https port a virtual
server with its routes as rules.

Names derive from the service's key (`namespace/name` becomes `namespace_name`, with a hash suffix when
too long), so that every agent of an environment names a service's objects the same way. The mark, in
each object's description, names the environment and the key: an agent touches no object without it.
"""

import hashlib
import re
from typing import Any

from tandem.agents.service import Member, Service
from tandem.models import Certificate, Monitor, Pool, PoolMember, VirtualServer
from tandem.models.resources import LAYER4, Rule

ObjectKey = tuple[str, str]
"""(resource, name): monitors, pools, virtuals."""
ConfigObject = Monitor | Certificate | Pool | VirtualServer
"""An object of the partition, as the device stores it."""
ORDER = (Monitor.kind, Certificate.kind, Pool.kind, VirtualServer.kind)
"""The order to create in (references point backwards); deletes go the other way."""
MODELS: dict[str, type[ConfigObject]] = {model.kind: model for model in (Monitor, Certificate, Pool, VirtualServer)}
"""The model of each resource the agent writes, by collection name."""
MARK = "managed by tandem agent {environment}: {key}"
_MARK = re.compile(r"^managed by tandem agent (?P<environment>\S+): (?P<key>\S+)$")


def base_name(key: str) -> str:
    """A name for the service's objects, valid as a Tandem name and the same on every agent."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", key.replace("/", "_")).lstrip("_.-") or "service"
    if len(name) > 48:
        name = f"{name[:39]}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"
    return name


def owner_of(obj: ConfigObject, environment: str) -> str | None:
    """The service key an object belongs to, if this environment's agents made it (the mark in its description)."""
    match = _MARK.match(obj.description)
    return match["key"] if match and match["environment"] == environment else None


def objects(service: Service, address: str, partition: str, environment: str) -> dict[ObjectKey, ConfigObject]:
    """The objects that serve `service` at `address`, as the device stores them (pool members sorted)."""
    mark = MARK.format(environment=environment, key=service.key)
    base = base_name(service.key)
    out: dict[ObjectKey, ConfigObject] = {}
    monitor = None
    if service.monitor is not None:
        monitor = base
        out[(Monitor.kind, base)] = Monitor(partition=partition, name=base, description=mark,
                                            **service.monitor.model_dump())

    def pool(name: str, members: list[Member]) -> str:
        out[(Pool.kind, name)] = Pool(partition=partition, name=name, lb_method=service.lb_method, monitor=monitor,
                                      members=[PoolMember(address=m.address, port=m.port, weight=m.weight)
                                               for m in sorted(members, key=lambda m: (m.address, m.port))],
                                      description=mark)
        return name

    pools = {backend.name: pool(f"{base}-b-{backend.name}", backend.members) for backend in service.backends}
    certificates = {}
    for pair in service.certificates:
        name = certificates[pair.name] = f"{base}-c-{pair.name}"
        out[(Certificate.kind, name)] = Certificate(partition=partition, name=name, certificate=pair.certificate,
                                                    key=pair.key, description=mark)
    for port in service.ports:
        name = f"{base}-{port.port}"
        rules = [Rule(name=route.name, match=route.match, action="forward" if route.backend else "redirect",
                      pool=pools.get(route.backend or ""), location=route.location, status=route.status)
                 for route in port.routes]
        out[(VirtualServer.kind, name)] = VirtualServer(
            partition=partition, name=name, address=address, port=port.port, protocol=port.protocol,
            pool=pool(name, port.members) if port.protocol in LAYER4 else pools.get(port.backend or ""),
            rules=rules, certificates=[certificates[c] for c in port.certificates],
            traffic_group=service.traffic_group, description=mark)
    return out


def stored_form(obj: ConfigObject) -> ConfigObject:
    """`obj` as a read gives it back: a certificate without its (write-only) key. A certificate's key
    cannot change without its chain, so comparing the chains compares both."""
    return obj.model_copy(update={"key": None}) if isinstance(obj, Certificate) else obj


def comparable(resource: str, body: dict[str, Any]) -> ConfigObject:
    """A stored body (as the API returns it) in the form `objects` makes: its model, pool members sorted.
    Two objects are the same when their models are equal (every field, the description and its mark too)."""
    model = MODELS[resource]
    obj = model.model_validate({k: v for k, v in body.items() if k in model.model_fields})  # not computed fields
    if isinstance(obj, Pool):
        return obj.model_copy(update={"members": sorted(obj.members, key=lambda m: (m.address, m.port))})
    return obj
