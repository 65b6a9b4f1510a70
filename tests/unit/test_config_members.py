"""Pool members through the generic configuration service: the read-only guard of mirrored partitions
and the bulk changes, on a store."""

import pytest

from tandem.config import ConfigService
from tandem.config.query import Query
from tandem.errors import Conflict, NotFound
from tandem.models import Pool, PoolMember


@pytest.fixture
def config(mirrored_config):
    def pools(service: ConfigService) -> None:
        for partition in ("Common", "mirror"):
            service.create(Pool(partition=partition, name="web", members=[
                PoolMember(address="10.0.0.1", port=80), PoolMember(address="10.0.0.2", port=80, enabled=False)]))

    return mirrored_config(pools)


def members(config: ConfigService, partition: str = "Common") -> list[dict]:
    return config.page(PoolMember, Query(limit=100), {"partition": partition, "pool": "web"})[0]


MIRRORED = {"partition": "mirror", "pool": "web"}


@pytest.mark.parametrize("change", [
    lambda c: c.create(PoolMember(address="10.0.0.9", port=80), parent=MIRRORED),
    lambda c: c.update(PoolMember, MIRRORED | {"member": "10.0.0.1:80"}, {"enabled": False}),
    lambda c: c.delete(PoolMember, MIRRORED | {"member": "10.0.0.1:80"}),
    lambda c: c.update_matching(PoolMember, Query(filters={"enabled": "true"}), {"enabled": False}, MIRRORED),
    lambda c: c.delete_matching(PoolMember, Query(filters={"address": "192.0.2.*"}), MIRRORED),  # matches none
], ids=["create", "update", "delete", "update_matching", "delete_matching_none"])
def test_a_member_of_a_read_only_partition_cannot_change(config, change):
    before, shown = config.store.last_commit_id(), members(config, "mirror")
    with pytest.raises(Conflict) as refused:
        change(config)
    assert "peer cluster's mirror" in refused.value.message and refused.value.target == "partition"
    assert config.store.last_commit_id() == before and members(config, "mirror") == shown


def test_bulk_member_changes_touch_only_the_matching_ones_in_one_commit(config):
    before = config.store.last_commit_id()
    parent = {"partition": "Common", "pool": "web"}
    assert config.update_matching(PoolMember, Query(filters={"enabled": "false"}), {"description": "off"}, parent) == 1
    assert config.store.last_commit_id() == before + 1
    assert [(m["address"], m["description"]) for m in members(config)] == [("10.0.0.1", ""), ("10.0.0.2", "off")]
    assert config.delete_matching(PoolMember, Query(filters={"address": "10.0.0.1"}), parent) == 1
    assert [m["address"] for m in members(config)] == ["10.0.0.2"]


def test_a_created_member_is_answered_as_stored_and_a_bad_key_is_not_found(config):
    created = config.create(PoolMember(address="2001:DB8::1", port=443), parent={"partition": "Common", "pool": "web"})
    assert created == config.read(PoolMember, {"partition": "Common", "pool": "web", "member": "[2001:db8::1]:443"})
    assert created["address"] == "2001:db8::1"
    with pytest.raises(NotFound):
        config.read(PoolMember, {"partition": "Common", "pool": "web", "member": "not-an-address"})
