"""Field types and models: what is a valid resource."""

import pytest
from pydantic import ValidationError

from tandem.config import Query
from tandem.config.validation import validate
from tandem.errors import BadRequest, Invalid
from tandem.models import Monitor, Pool, User, VirtualServer
from tandem.models.fields import member_key, parse_host_port, parse_member_key, resolve_reference
from tandem.models.partial import changes, patch_model


def test_addresses_are_normalized_and_keys_round_trip():
    virtual = VirtualServer(name="v", address="2001:DB8:0::1", port=80)
    assert virtual.address == "2001:db8::1"
    assert member_key("2001:db8::1", 80) == "[2001:db8::1]:80"
    assert parse_member_key("[2001:db8::1]:80") == ("2001:db8::1", 80)
    assert parse_member_key("10.0.0.1:8080") == ("10.0.0.1", 8080)
    assert parse_host_port("[::1]:8443") == ("::1", 8443)
    for bad in ("10.0.0.1", "10.0.0.1:0", "10.0.0.1:65536", "host:80", "10.0.0.1:x", ":80"):
        with pytest.raises(ValueError):
            parse_host_port(bad)


@pytest.mark.parametrize("name", ["..", ".hidden", "a/b", "a b", "", "x" * 64, "é", "-x", "a\x00"])
def test_names_that_are_not_safe_in_urls_and_paths_are_refused(name):
    with pytest.raises(ValidationError):
        Pool(name=name)


def test_references():
    assert resolve_reference("apps", "web") == ("apps", "web")
    assert resolve_reference("apps", "/Common/web") == ("Common", "web")
    for bad in ("/Common", "a/b", "/a/b/c", "//x"):
        with pytest.raises(ValidationError):
            Pool(name="p", monitor=bad)


def test_monitor_and_user_rules():
    assert Monitor(name="m", type="http").path == "/"
    assert Monitor(name="m", type="http").expected_status == 200
    with pytest.raises(Invalid) as error:
        validate(Monitor, {"name": "m", "type": "tcp", "path": "/"})
    assert error.value.target == "path"
    with pytest.raises(Invalid) as error:
        validate(User, {"name": "u", "role": "manager", "password": "12345678"})
    assert error.value.target == "partitions"
    with pytest.raises(Invalid) as error:
        validate(User, {"name": "u", "role": "auditor", "partitions": ["Common"]})
    assert error.value.target == "partitions"


def test_patch_models_keep_constraints_and_refuse_unknown_fields():
    Patch = patch_model(VirtualServer)
    assert changes(Patch.model_validate({"port": 81})) == {"port": 81}
    assert changes(Patch.model_validate({"address": "10.0.0.01".replace("01", "1")})) == {"address": "10.0.0.1"}
    for bad in ({"port": 0}, {"address": "nope"}, {"colour": "red"}, {"protocol": "sctp"}):
        with pytest.raises(ValidationError):
            Patch.model_validate(bad)


def test_queries():
    query = Query.parse([("name", "web-*"), ("enabled", "true"), ("fields", "port"), ("limit", "5")],
                        ["name", "enabled", "port"])
    assert query.matches({"name": "web-1", "enabled": True})
    assert not query.matches({"name": "web-1", "enabled": False})
    assert not query.matches({"name": "api", "enabled": True})
    assert query.project({"partition": "C", "name": "web-1", "port": 1, "enabled": True},
                         ("partition", "name")) == {"partition": "C", "name": "web-1", "port": 1}
    records = iter([(("C", f"n{i}"), {"name": f"n{i}"}) for i in range(12)])
    page, after = Query(limit=5).page(records, ("name",))
    assert len(page) == 5 and after == ("C", "n4")
    for bad in ([("limit", "0")], [("limit", "10001")], [("nope", "1")], [("fields", "nope")], [("after", "x")]):
        with pytest.raises(BadRequest):
            Query.parse(bad, ["name"])
