"""Random writes as merged replicas can hold them: unchecked, with references that may be missing or of another
partition, and virtual servers sharing destinations."""

import random

from tandem.models import Certificate, Monitor, Partition, Pool, VirtualServer
from tandem.store import GLOBAL, Store

PARTITIONS = ("Common", "A", "B")


def _reference(rng: random.Random, prefix: str, count: int) -> str:
    name = f"{prefix}{rng.randrange(count)}"
    return rng.choice((name, f"/Common/{name}", f"/A/{name}"))


def unchecked_write(rng: random.Random) -> tuple[str, str, str, dict | None]:
    """One unchecked write: any kind, references that may be missing, of another partition, or shared
    destinations (two addresses, two ports)."""
    kind = rng.choice((Partition.kind, Monitor.kind, Certificate.kind, Pool.kind, VirtualServer.kind,
                       VirtualServer.kind, Pool.kind))
    if kind == Partition.kind:
        name = rng.choice(PARTITIONS[1:])
        return kind, GLOBAL, name, None if rng.random() < 0.5 else {"name": name}
    partition = rng.choice(PARTITIONS)
    name = f"{kind[0]}{rng.randrange(4)}"
    if rng.random() < 0.25:
        return kind, partition, name, None
    body: dict = {"name": name, "partition": partition, "incarnation": f"{rng.randrange(100):03}"}
    if kind == Pool.kind:
        if rng.random() < 0.6:
            body["monitor"] = _reference(rng, "m", 4)
        if rng.random() < 0.3:
            body["tls"] = {"ca": _reference(rng, "c", 4)}
    elif kind == VirtualServer.kind:
        body |= {"address": rng.choice(("192.0.2.1", "192.0.2.2")), "port": rng.choice((80, 443)),
                 "protocol": rng.choice(("tcp", "http"))}
        if rng.random() < 0.8:
            body["pool"] = _reference(rng, "p", 5)
        body["rules"] = [{"pool": _reference(rng, "p", 5)} for _ in range(rng.randrange(2))]
        body["certificates"] = [_reference(rng, "c", 4) for _ in range(rng.randrange(2))]
        body["enabled"] = rng.random() < 0.9
    return kind, partition, name, body


def write_randomly(store: Store, rng: random.Random) -> None:
    """One transaction of one to three unchecked writes (a None body deletes)."""
    with store.transaction() as txn:
        for _ in range(rng.randrange(1, 4)):
            kind, partition, name, body = unchecked_write(rng)
            if body is not None:
                txn.put(kind, partition, name, body)
            elif txn.exists(kind, partition, name):
                txn.delete(kind, partition, name)
