"""Certificates in the configuration service: the key is stored and kept but never presented, what changes a
chain is checked against the stored key, and the data plane and a peer cluster's mirror get the key."""

import pytest

from dataplane_desired import desired_of
from pki import TestCA
from tandem.config import ConfigService, integrity
from tandem.config.query import Query
from tandem.dataplane.feed import Feed
from tandem.errors import Conflict, Invalid
from tandem.models import Certificate, Partition, VirtualServer
from tandem.models.batch import BatchRequest, Operation
from tandem.peering import mirror
from tandem.store import Store

WHERE = {"partition": "Common", "name": "site"}


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA()


@pytest.fixture
def config(tmp_path):
    store = Store(tmp_path / "t.db", index_of=integrity.references)
    service = ConfigService(store)
    service.create(Partition(name="Common"))
    yield service
    store.close()


def stored_key(config: ConfigService, name: str = "site") -> str | None:
    return config.store.get(Certificate.kind, "Common", name)["key"]


def test_created_stored_with_its_key_and_presented_without_it(config, ca):
    issued = ca.issue("site.example.com", "site.example.com")
    shown = config.create(Certificate(name="site", certificate=issued.chain, key=issued.key))
    assert "key" not in shown and issued.key not in str(shown)
    assert shown["subjects"] == ["site.example.com"] and shown["fingerprint"] == issued.fingerprint
    assert shown["status"] == "valid"
    assert stored_key(config) == issued.key
    assert config.read(Certificate, WHERE) == shown
    records, _ = config.page(Certificate, Query())
    assert records == [shown]
    assert config.page(Certificate, Query(fields=["key"]))[0] == [{"partition": "Common", "name": "site"}]


def test_a_change_without_key_keeps_it_and_a_new_chain_must_match_it(config, ca):
    issued, other = ca.issue("a.example.com"), ca.issue("b.example.com")
    config.create(Certificate(name="site", certificate=issued.chain, key=issued.key))
    assert config.update(Certificate, WHERE, {"description": "renewed"})["description"] == "renewed"
    assert stored_key(config) == issued.key
    renewed = ca.issue("a.example.com", days=400)  # a new chain for another key, without that key
    with pytest.raises(Invalid) as refused:
        config.update(Certificate, WHERE, {"certificate": other.chain})
    assert refused.value.target == "key" and "does not match" in refused.value.message
    with pytest.raises(Invalid):
        config.update(Certificate, WHERE, {"certificate": renewed.chain})
    assert stored_key(config) == issued.key
    config.update(Certificate, WHERE, {"certificate": other.chain, "key": other.key})
    assert stored_key(config) == other.key


def test_a_batch_replace_without_key_keeps_it_and_writes_nothing_when_equal(config, ca):
    issued = ca.issue("r.example.com")
    config.create(Certificate(name="site", certificate=issued.chain, key=issued.key))
    replace = Operation(action="replace", resource="certificates", name="site", body={"certificate": issued.chain})
    assert config.apply_batch(BatchRequest(operations=[replace])) is None  # nothing changed
    assert stored_key(config) == issued.key
    config.apply_batch(BatchRequest(operations=[Operation(action="create", resource="certificates", name="bare",
                                                          body={"certificate": issued.chain})]))  # a CA bundle
    assert config.store.get(Certificate.kind, "Common", "bare")["key"] is None


def test_refusals_write_nothing(config, ca):
    expired = ca.issue("old.example.com", days=-1, starts=-10)
    early = ca.issue("early.example.com", days=30, starts=2)
    before = config.store.last_commit_id()
    for obj, target, message in [
        (Certificate(name="c", certificate=expired.chain, key=expired.key), "certificate", "expired on"),
        (Certificate(name="c", certificate=early.chain, key=early.key), "certificate", "not valid before"),
    ]:
        with pytest.raises(Invalid, match=message) as refused:
            config.create(obj)
        assert refused.value.target == target
    assert config.store.last_commit_id() == before


def test_a_bulk_change_cannot_match_on_the_key(config, ca):
    issued = ca.issue("m.example.com")
    config.create(Certificate(name="site", certificate=issued.chain, key=issued.key))
    assert config.update_matching(Certificate, Query(filters={"key": "-----BEGIN*"}), {"description": "x"}) == 0


def test_in_use_by_a_virtual_server_it_stays(config, ca):
    issued = ca.issue("v.example.com")
    config.create(Certificate(name="site", certificate=issued.chain, key=issued.key))
    config.create(VirtualServer(name="v", address="192.0.2.1", port=443, protocol="https", certificates=["site"]))
    with pytest.raises(Conflict) as refused:
        config.delete(Certificate, WHERE)
    assert refused.value.target == "name" and "used by virtual /Common/v" in refused.value.message


def test_the_data_plane_gets_the_certificates_it_serves_with_their_keys(config, ca):
    issued, unused = ca.issue("d.example.com"), ca.issue("u.example.com")
    config.create(Certificate(name="site", certificate=issued.chain, key=issued.key))
    config.create(Certificate(name="unused", certificate=unused.chain, key=unused.key))
    config.create(VirtualServer(name="v", address="192.0.2.1", port=443, protocol="https", certificates=["site"]))
    desired = desired_of(config.store)
    assert desired.certificates == [{"partition": "Common", "name": "site", "certificate": issued.chain,
                                     "key": issued.key, "description": ""}]
    message = Feed(config.store).changes(desired)
    assert message is not None and message["put"]["certificates"] == desired.certificates


def test_a_mirror_copies_the_key(config, ca, tmp_path):
    issued = ca.issue("p.example.com")
    config.create(Certificate(name="site", certificate=issued.chain, key=issued.key))
    objects = mirror.snapshot(config.store, "Common")
    assert ["certificates", "site", {"partition": "Common", "name": "site", "certificate": issued.chain,
                                     "key": issued.key, "description": ""}] in objects
    other = Store(tmp_path / "mirror.db", index_of=integrity.references)
    try:
        ConfigService(other).create(Partition(name="Common"))
        mirror.apply_state(other, "Common", objects)
        assert other.get(Certificate.kind, "Common", "site")["key"] == issued.key
        assert mirror.digest(mirror.snapshot(other, "Common")) == mirror.digest(objects)
    finally:
        other.close()
