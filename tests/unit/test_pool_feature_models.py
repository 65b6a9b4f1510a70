"""Pool member states, full health monitors and pools over TLS in the models, the configuration service and
the integrity rules: bad values are refused with their field as target, `enabled: false` still works."""

import pytest
from pydantic import ValidationError

from dataplane_desired import desired_of
from pki import TestCA
from tandem.config import ConfigService, integrity
from tandem.config.integrity import violations
from tandem.config.objects import write_object
from tandem.config.pool_members import write_member
from tandem.config.validation import validate
from tandem.errors import Conflict, Invalid
from tandem.models import Certificate, Monitor, Partition, Pool, PoolMember, VirtualServer
from tandem.models.resources import MonitorSettings
from tandem.store import Store

MEMBER = {"address": "10.0.0.1", "port": 80}


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA()


@pytest.fixture
def config(tmp_path):
    store = Store(tmp_path / "f.db", index_of=integrity.references)
    service = ConfigService(store)
    for name in ("Common", "A", "B"):
        service.create(Partition(name=name))
    yield service
    store.close()


@pytest.mark.parametrize(("given", "state"), [
    ({}, "enabled"), ({"state": "drain"}, "drain"), ({"state": "disabled"}, "disabled"),
    ({"enabled": False}, "disabled"), ({"enabled": True}, "enabled"),
    ({"enabled": True, "state": "disabled"}, "disabled"),  # `state` is the truth when given
])
def test_member_state_and_the_former_enabled(given, state):
    member = PoolMember.model_validate(MEMBER | given)
    assert member.state == state
    assert member.model_dump()["enabled"] is (state != "disabled")  # shown, read-only


@pytest.mark.parametrize(("given", "target"), [
    ({"state": "off"}, "state"), ({"state": None}, "state"), ({"enabled": "no"}, "enabled"),
])
def test_bad_member_states_are_refused(given, target):
    with pytest.raises(ValidationError):
        PoolMember.model_validate(MEMBER | given)
    with pytest.raises(Invalid) as refused:
        validate(PoolMember, MEMBER | given)
    assert refused.value.target == target


def test_a_member_patch_with_enabled_replaces_the_stored_state(config):
    config.create(Pool(name="web", members=[PoolMember(**MEMBER)]))
    where = {"partition": "Common", "pool": "web", "member": "10.0.0.1:80"}
    steps = [({"state": "drain"}, "drain"), ({"enabled": False}, "disabled"), ({"state": "enabled"}, "enabled"),
             ({"state": "drain"}, "drain"), ({"enabled": True}, "enabled"), ({"weight": 3}, "enabled")]
    for patch, state in steps:
        config.update(PoolMember, where, patch)
        shown = config.read(PoolMember, where)
        assert (shown["state"], shown["enabled"]) == (state, state != "disabled"), patch


@pytest.mark.parametrize(("fields", "target"), [
    ({"rise": 0}, "rise"), ({"fall": 11}, "fall"), ({"rise": "2"}, "rise"),
    ({"method": "GET /"}, "method"), ({"method": ""}, "method"), ({"method": "G\nET"}, "method"),
    ({"host": "*.example.com"}, "host"), ({"host": "a b"}, "host"), ({"host": "x" * 300}, "host"),
    ({"tls": "maybe"}, "tls"),
    ({"type": "tcp", "method": "GET"}, "method"), ({"type": "tcp", "host": "a.example"}, "host"),
])
def test_bad_monitor_settings_are_refused(fields, target):
    body = {"name": "m", "type": "http"} | fields
    for model in (Monitor, MonitorSettings):
        with pytest.raises(Invalid) as refused:
            validate(model, body if model is Monitor else {k: v for k, v in body.items() if k != "name"})
        assert refused.value.target == target


def test_monitor_defaults_and_values():
    http = Monitor(name="m", type="http", rise=3, fall=10, method="OPTIONS", host="Health.Example", tls=True)
    assert (http.rise, http.fall, http.method, http.host, http.tls) == (3, 10, "OPTIONS", "health.example", True)
    assert Monitor(name="m", type="http").method == "GET"
    tcp = MonitorSettings(type="tcp", tls=True)
    assert (tcp.rise, tcp.fall, tcp.method, tcp.host, tcp.tls) == (1, 1, None, None, True)


@pytest.mark.parametrize(("tls", "target"), [
    ({"verify": True}, "tls.ca"), ({}, "tls.ca"), ({"verify": False, "ca": "bundle"}, "tls.ca"),
    ({"verify": True, "ca": "a b"}, "tls.ca"), ({"verify": "sometimes", "ca": "b"}, "tls.verify"),
    ({"ca": "b", "sni": "x"}, "tls.sni"), ({"ca": "b", "server_name": "*.example"}, "tls.server_name"),
    ({"verify": False, "server_name": "a b"}, "tls.server_name"),
])
def test_bad_pool_tls_is_refused(tls, target):
    with pytest.raises(Invalid) as refused:
        validate(Pool, {"name": "p", "tls": tls})
    assert refused.value.target == target


def test_ca_bundles_pools_and_https_virtual_servers(config, ca):
    site = ca.issue("site.example", "site.example")
    config.create(Certificate(name="bundle", certificate=ca.pem))  # no key: a CA bundle
    config.create(Certificate(name="site", certificate=site.chain, key=site.key))
    config.create(Certificate(partition="B", name="theirs", certificate=ca.pem))
    with pytest.raises(Invalid) as refused:
        config.create(VirtualServer(name="v", address="192.0.2.1", port=443, protocol="https",
                                    certificates=["site", "bundle"]))
    assert refused.value.target == "certificates.1" and "no private key" in refused.value.message
    for reference, says in (("absent", "does not exist"), ("/B/theirs", "in partition B")):
        with pytest.raises(Invalid, match=says) as refused:
            config.create(Pool(partition="A", name="p", tls={"ca": reference}))
        assert refused.value.target == "tls.ca"
    shown = config.create(Pool(partition="A", name="p", tls={"ca": "/Common/bundle"}))
    assert shown["tls"] == {"verify": True, "ca": "/Common/bundle", "server_name": None}
    with pytest.raises(Conflict, match="used by pool /A/p"):
        config.delete(Certificate, {"partition": "Common", "name": "bundle"})
    config.update(Pool, {"partition": "A", "name": "p"}, {"tls": {"verify": False}})
    config.delete(Certificate, {"partition": "Common", "name": "bundle"})  # no longer held


def test_a_missing_ca_bundle_after_a_merge_and_what_the_data_plane_gets(config, ca):
    config.create(Certificate(name="bundle", certificate=ca.pem))
    with config.store.transaction() as txn:  # as a merge may leave them: unchecked
        for name, reference in (("ok", "bundle"), ("gone", "absent")):
            write_object(txn, Pool(name=name, tls={"ca": reference}, members=[PoolMember(**MEMBER)]), None, None)
            write_object(txn, VirtualServer(name=name, address="192.0.2.1", port=80 if name == "ok" else 81,
                                            pool=name), None, None)
    (found,) = violations(config.store)
    assert (found.kind, found.name, found.other, found.served) == ("pools", "gone", "/Common/absent", False)
    assert found.view().resolution == "not served"
    desired = desired_of(config.store)
    assert [c["name"] for c in desired.certificates] == ["bundle"]
    assert desired.certificates[0]["certificate"] == ca.pem


def test_a_member_stored_before_states_is_shown_with_its_state(config):
    config.create(Pool(name="old", members=[PoolMember(**MEMBER)]))
    with config.store.transaction() as txn:  # as an earlier version stored it
        pool = txn.get(Pool.kind, "Common", "old")
        write_member(txn, pool, "10.0.0.1:80", MEMBER | {"enabled": False, "weight": 1, "description": ""})
    where = {"partition": "Common", "pool": "old", "member": "10.0.0.1:80"}
    assert {k: config.read(PoolMember, where)[k] for k in ("state", "enabled")} == {"state": "disabled",
                                                                                     "enabled": False}
    (member,) = config.read(Pool, {"partition": "Common", "name": "old"})["members"]
    assert (member["state"], member["enabled"]) == ("disabled", False)
    config.update(PoolMember, where, {"weight": 2})
    assert config.read(PoolMember, where)["state"] == "disabled"
