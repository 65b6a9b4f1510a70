"""Rules' pools and certificates after a merge: a virtual server missing one (or using another partition's)
is reported and not served; the data plane is sent the pools its rules forward to."""

import pytest

from dataplane_desired import desired_of
from tandem.config import ConfigService, integrity
from tandem.config.integrity import violations
from tandem.config.objects import write_object
from tandem.models import Partition, Pool, VirtualServer
from tandem.store import Store


def forward(name: str, pool: str) -> dict:
    return {"name": name, "action": "forward", "pool": pool, "match": {"path": f"/{name}"}}


@pytest.fixture
def store(tmp_path):
    """Partitions Common, A, B; pools Common/web, Common/api, B/p; virtual servers written unchecked, as a
    merge may leave them: `ok` (rules forward to api and web), `gone` (a rule's pool absent), `foreign` (a
    rule's pool in B), `nocert` (https, its certificate absent)."""
    store = Store(tmp_path / "s.db", index_of=integrity.references)
    config = ConfigService(store)
    for name in ("Common", "A", "B"):
        config.create(Partition(name=name))
    for partition, name in (("Common", "web"), ("Common", "api"), ("B", "p")):
        config.create(Pool(partition=partition, name=name))
    virtuals = [
        VirtualServer(partition="A", name="ok", address="192.0.2.1", port=80, protocol="http",
                      rules=[forward("a", "/Common/api"), forward("b", "/Common/web")]),
        VirtualServer(partition="A", name="gone", address="192.0.2.2", port=80, protocol="http",
                      pool="/Common/web", rules=[forward("a", "/Common/absent")]),
        VirtualServer(partition="A", name="foreign", address="192.0.2.3", port=80, protocol="http",
                      rules=[forward("a", "/B/p")]),
        VirtualServer(partition="A", name="nocert", address="192.0.2.4", port=443, protocol="https",
                      pool="/Common/web", certificates=["/Common/absent-cert"])]
    for obj in virtuals:
        with store.transaction() as txn:
            write_object(txn, obj, None, None)
    yield store
    store.close()


def test_a_missing_or_foreign_rule_pool_or_certificate_is_a_violation(store):
    found = sorted((v.name, v.rule, v.other, v.served) for v in violations(store))
    assert found == [("foreign", "cross-partition", "/B/p", False), ("gone", "reference", "/Common/absent", False),
                     ("nocert", "reference", "/Common/absent-cert", False)]
    assert all(v.view().resolution == "not served" for v in violations(store))


def test_the_data_plane_gets_the_pools_of_rules_and_not_what_breaks_a_rule(store):
    desired = desired_of(store)
    assert [v["name"] for v in desired.virtuals] == ["ok"]
    assert sorted(p["name"] for p in desired.pools) == ["api", "web"]
