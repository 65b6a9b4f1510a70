"""The data plane feed: each round reads again only what commits changed and sends only what differs; the
data plane process's catalog builds again only the virtual servers whose objects changed."""

import random
from dataclasses import dataclass, field

import pytest

from tandem.config import ConfigService, integrity
from tandem.dataplane.catalog import Catalog
from tandem.dataplane.feed import Feed
from tandem.models import Certificate, Monitor, Partition, Pool, PoolMember, VirtualServer
from tandem.store import GLOBAL, Store
from unchecked_writes import write_randomly

WEB = {"partition": "Common", "pool": "web"}


@dataclass
class Device:
    """A configuration service and the keys its commits changed since the feed last read them."""

    config: ConfigService
    changed: list = field(default_factory=list)

    def __getattr__(self, name: str):
        return getattr(self.config, name)


@pytest.fixture
def config(tmp_path):
    """Pools web (monitored) and api, virtual servers v (web) and w (api); every commit's keys collected."""
    store = Store(tmp_path / "s.db", index_of=integrity.references)
    config = ConfigService(store)
    config.create(Partition(name="Common"))
    config.create(Monitor(name="m", type="tcp"))
    config.create(Pool(name="web", monitor="m", members=[PoolMember(address="10.0.0.1", port=80)]))
    config.create(Pool(name="api", members=[PoolMember(address="10.0.0.2", port=80)]))
    config.create(VirtualServer(name="v", address="192.0.2.1", port=80, pool="web"))
    config.create(VirtualServer(name="w", address="192.0.2.2", port=80, pool="api"))
    device = Device(config)
    store.on_keys.append(device.changed.extend)
    yield device
    store.close()


def rounds(config: Device) -> tuple[Feed, Catalog]:
    """A feed that sent everything once, and the catalog that took it."""
    feed, catalog = Feed(config.store), Catalog()
    catalog.update(feed.changes(feed.build((), {"tg": []})))
    return feed, catalog


def next_round(config: Device, feed: Feed) -> dict | None:
    changed = list(config.changed)
    config.changed.clear()
    return feed.changes(feed.build(changed, {"tg": []}))


def test_the_first_message_holds_everything_then_nothing_until_something_changes(config):
    feed = Feed(config.store)
    first = feed.changes(feed.build((), {"tg": []}))
    assert first["full"] is True
    assert sorted(v["name"] for v in first["put"]["virtuals"]) == ["v", "w"]
    assert sorted(p["name"] for p in first["put"]["pools"]) == ["api", "web"]
    assert [m["name"] for m in first["put"]["monitors"]] == ["m"]
    assert next_round(config, feed) is None


def test_a_member_added_sends_its_pool_alone_and_rebuilds_only_its_virtual_server(config):
    feed, catalog = rounds(config)
    before = {v.name: v for v in catalog.served()}
    config.create(PoolMember(address="10.0.0.3", port=80), parent=WEB)
    message = next_round(config, feed)
    assert message["full"] is False
    assert [p["name"] for p in message["put"]["pools"]] == ["web"]
    assert [len(p["members"]) for p in message["put"]["pools"]] == [2]
    assert not message["put"]["virtuals"] and not any(message["removed"].values())
    catalog.update(message)
    after = {v.name: v for v in catalog.served()}
    assert after["w"] is before["w"]  # untouched: the very same object (the engines compare by identity)
    assert after["v"] is not before["v"]
    assert [m.address for m in after["v"].pool.members] == ["10.0.0.1", "10.0.0.3"]


def test_a_monitor_change_rebuilds_the_virtual_servers_of_the_pools_using_it(config):
    feed, catalog = rounds(config)
    before = {v.name: v for v in catalog.served()}
    config.update(Monitor, {"partition": "Common", "name": "m"}, {"interval": 7})
    catalog.update(next_round(config, feed))
    after = {v.name: v for v in catalog.served()}
    assert after["v"].pool.monitor.interval == 7 and after["w"] is before["w"]


def test_a_deleted_or_disabled_virtual_server_and_its_unused_pool_are_removed(config):
    feed, catalog = rounds(config)
    config.delete(VirtualServer, {"partition": "Common", "name": "w"})
    config.update(VirtualServer, {"partition": "Common", "name": "v"}, {"enabled": False})
    message = next_round(config, feed)
    assert sorted(map(tuple, message["removed"]["virtuals"])) == [("Common", "v"), ("Common", "w")]
    assert sorted(map(tuple, message["removed"]["pools"])) == [("Common", "api"), ("Common", "web")]
    catalog.update(message)
    assert catalog.served() == []


def test_a_data_plane_process_started_again_is_sent_everything(config):
    feed, _ = rounds(config)
    feed.sent = None  # as `DataPlane` does when its process starts again
    message = next_round(config, feed)
    assert message["full"] is True and len(message["put"]["virtuals"]) == 2


def test_a_new_traffic_group_alone_is_sent(config):
    feed, _ = rounds(config)
    message = feed.changes(feed.build(list(config.changed), {"tg": [], "other": ["198.51.100.7"]}))
    assert message["traffic_groups"] == {"other": ["198.51.100.7"], "tg": []} and not any(message["put"].values())


@pytest.mark.parametrize("seed", range(6))
def test_rounds_that_look_only_at_what_changed_agree_with_a_round_that_reads_everything(tmp_path, seed):
    """Whatever the writes (unchecked, as merged replicas hold them: missing and cross-partition references,
    shared destinations, partitions that come and go), each incremental round serves what a new feed would,
    and the catalog fed its messages serves the same virtual servers."""
    rng = random.Random(seed)
    store = Store(tmp_path / "s.db", index_of=integrity.references)
    changed: list = []
    store.on_keys.append(changed.extend)
    with store.transaction() as txn:
        txn.put(Partition.kind, GLOBAL, "Common", {"name": "Common"})
    feed, catalog, served = Feed(store), Catalog(), 0
    try:
        for step in range(250):
            keys = list(changed)
            changed.clear()
            desired = feed.build(keys, {"tg": []})
            fresh = Feed(store).build((), {"tg": []})
            assert desired.objects == fresh.objects and desired.violations == fresh.violations, f"step {step}"
            assert desired.addresses == fresh.addresses, f"step {step}"
            message = feed.changes(desired)
            if message is not None:
                catalog.update(message)
            fresh_catalog = Catalog()
            fresh_catalog.update(Feed(store).changes(fresh))
            assert ({v.key: v for v in catalog.served()} == {v.key: v for v in fresh_catalog.served()}), f"step {step}"
            served += len(desired.virtuals)
            write_randomly(store, rng)
    finally:
        store.close()
    assert served > 0  # virtual servers were served along the way, not only refused


def test_a_pools_ca_bundle_of_another_partition_is_never_served(tmp_path):
    """The partition rule holds for a pool's CA bundle, also when the bundle comes after the pool is served."""
    store = Store(tmp_path / "s.db", index_of=integrity.references)
    changed: list = []
    store.on_keys.append(changed.extend)
    with store.transaction() as txn:
        for partition in ("Common", "A"):
            txn.put(Partition.kind, GLOBAL, partition, {"name": partition})
        txn.put(Pool.kind, "Common", "p", {"name": "p", "partition": "Common", "tls": {"ca": "/A/c"}})
        txn.put(VirtualServer.kind, "Common", "v", {"name": "v", "partition": "Common", "address": "192.0.2.1",
                                                     "port": 80, "pool": "p"})
    feed = Feed(store)
    feed.build((), {"tg": []})
    changed.clear()
    with store.transaction() as txn:
        txn.put(Certificate.kind, "A", "c", {"name": "c", "partition": "A", "certificate": "PEM"})
    desired = feed.build(list(changed), {"tg": []})
    try:
        assert desired.virtuals and not desired.certificates
        assert desired.objects == Feed(store).build((), {"tg": []}).objects
    finally:
        store.close()
