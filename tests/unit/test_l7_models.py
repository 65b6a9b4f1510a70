"""HTTP/HTTPS virtual servers, rules and the new pool fields: what the models accept, refuse (naming the field)
and normalize. Every value that could reach a proxy's configuration is limited to what HTTP allows."""

import pytest

from tandem.config.integrity import references
from tandem.config.validation import validate
from tandem.errors import Invalid
from tandem.models import Pool, PoolMember, Rule, VirtualServer

HTTP = {"name": "v", "address": "192.0.2.1", "port": 80, "protocol": "http"}


def rule(**fields) -> dict:
    return {"name": "r", "action": "reject", **fields}


def refusal(model, body) -> Invalid:
    with pytest.raises(Invalid) as caught:
        validate(model, body)
    return caught.value


def test_defaults_keep_a_tcp_virtual_server_and_a_pool_as_they_were():
    virtual = validate(VirtualServer, {"name": "v", "address": "192.0.2.1", "port": 80})
    assert (virtual.protocol, virtual.rules, virtual.certificates) == ("tcp", [], [])
    assert (virtual.forwarded_for, virtual.proxy_protocol) == (True, False)
    pool = validate(Pool, {"name": "p", "members": [{"address": "10.0.0.1", "port": 80}]})
    assert (pool.lb_method, pool.persistence, pool.members[0].weight) == ("round-robin", "none", 1)


def test_an_http_virtual_server_with_every_kind_of_rule():
    rules = [
        rule(name="api", action="forward", pool="/Common/api",
             match={"host": "*.Example.COM", "path": "/api/%7e'x", "methods": ["GET", "POST"],
                    "headers": [{"name": "X-Tenant_1.v2", "value": "a \"quoted\" #value% 'x'"}]}),
        rule(name="old", action="redirect", location="https://example.com/new?a=1#top",
             match={"path": "^/old/[0-9]+$", "path_type": "regex"}),
        rule(name="gone", action="respond", status=410, match={"path": "/gone", "path_type": "exact"}),
        rule(name="rest"),
    ]
    virtual = validate(VirtualServer, {**HTTP, "pool": "web", "rules": rules})
    api, old, gone, rest = virtual.rules
    assert api.match.host == "*.example.com"  # stored lower case
    assert api.match.headers[0].value == "a \"quoted\" #value% 'x'"  # kept: the renderer escapes it
    assert (old.status, gone.status, rest.status) == (302, 410, None)
    assert rest.match.path is None and rest.match.path_type == "prefix"


@pytest.mark.parametrize(("match", "target"), [
    ({"host": "exa mple.com"}, "rules.0.match.host"),
    ({"host": "example.com\n"}, "rules.0.match.host"),
    ({"host": "a.*.example.com"}, "rules.0.match.host"),
    ({"host": "\"example.com\""}, "rules.0.match.host"),
    ({"host": "exam#ple.com"}, "rules.0.match.host"),
    ({"path": "api"}, "rules.0.match.path"),
    ({"path": "/a b"}, "rules.0.match.path"),
    ({"path": "/a\nb"}, "rules.0.match.path"),
    ({"path": "/a#frag"}, "rules.0.match.path"),
    ({"path": "/a?q=1"}, "rules.0.match.path"),
    ({"path": "/" + "a" * 1024}, "rules.0.match.path"),
    ({"path": "/(", "path_type": "regex"}, "rules.0.match.path"),
    ({"path": "/a b", "path_type": "regex"}, "rules.0.match.path"),
    ({"path": "/" + "a" * 256, "path_type": "regex"}, "rules.0.match.path"),
    ({"path_type": "glob"}, "rules.0.match.path_type"),
    ({"methods": ["CONNECT"]}, "rules.0.match.methods.0"),
    ({"headers": [{"name": "X Tenant", "value": "a"}]}, "rules.0.match.headers.0.name"),
    ({"headers": [{"name": "X-T:", "value": "a"}]}, "rules.0.match.headers.0.name"),
    ({"headers": [{"name": "X\"T", "value": "a"}]}, "rules.0.match.headers.0.name"),
    ({"headers": [{"name": "X-" + "a" * 63, "value": "a"}]}, "rules.0.match.headers.0.name"),
    ({"headers": [{"name": "X-T", "value": "a\r\nX-Evil: 1"}]}, "rules.0.match.headers.0.value"),
    ({"headers": [{"name": "X-T", "value": "a\tb"}]}, "rules.0.match.headers.0.value"),
    ({"headers": [{"name": "X-T", "value": "é"}]}, "rules.0.match.headers.0.value"),
    ({"headers": [{"name": "X-T", "value": "a" * 257}]}, "rules.0.match.headers.0.value"),
    ({"headers": [{"name": f"X-{i}", "value": "a"} for i in range(9)]}, "rules.0.match.headers"),
    ({"hosts": "example.com"}, "rules.0.match.hosts"),
])
def test_a_bad_match_is_refused_naming_its_field(match, target):
    error = refusal(VirtualServer, {**HTTP, "rules": [rule(match=match)]})
    assert error.target == target
    assert str(error).startswith(f"{target}: ")


@pytest.mark.parametrize(("fields", "target", "says"), [
    ({"action": "forward"}, "rules.0.pool", "a forward rule needs a pool"),
    ({"action": "redirect"}, "rules.0.location", "a redirect rule needs a location"),
    ({"action": "respond"}, "rules.0.status", "a respond rule needs a status"),
    ({"action": "reject", "pool": "web"}, "rules.0.pool", "only a forward rule takes a pool"),
    ({"action": "forward", "pool": "web", "status": 200}, "rules.0.status", "only a redirect or respond"),
    ({"action": "respond", "status": 200, "location": "/x"}, "rules.0.location", "only a redirect rule"),
    ({"action": "redirect", "location": "/x", "status": 200}, "rules.0.status", "301, 302, 303, 307, 308"),
    ({"action": "redirect", "location": "/x", "status": 0}, "rules.0.status", "301, 302, 303, 307, 308"),
    ({"action": "respond", "status": 199}, "rules.0.status", "200-599"),
    ({"action": "redirect", "location": "example.com/x"}, "rules.0.location", "absolute http(s) URL"),
    ({"action": "redirect", "location": "/x y"}, "rules.0.location", "without space"),
    ({"action": "redirect", "location": "/x\n"}, "rules.0.location", "without space"),
    ({"action": "redirect", "location": "javascript:alert(1)"}, "rules.0.location", "absolute http(s) URL"),
    ({"action": "drop"}, "rules.0.action", ""),
    ({"name": "a b"}, "rules.0.name", ""),
])
def test_a_bad_action_is_refused_naming_its_field(fields, target, says):
    error = refusal(VirtualServer, {**HTTP, "rules": [rule(**fields)]})
    assert error.target == target
    assert says in str(error)


@pytest.mark.parametrize(("body", "target", "says"), [
    ({"protocol": "https"}, "certificates", "needs at least one certificate"),
    ({"certificates": ["c"]}, "certificates", "only an https virtual server"),
    ({"protocol": "tcp", "certificates": ["c"]}, "certificates", "a tcp virtual server takes no certificates"),
    ({"protocol": "tcp", "rules": [rule()]}, "rules", "a tcp virtual server takes no rules"),
    ({"proxy_protocol": True}, "proxy_protocol", "only a tcp virtual server"),
    ({"protocol": "sctp"}, "protocol", ""),
    ({"protocol": "udp", "rules": [rule()]}, "rules", "a udp virtual server takes no rules"),
    ({"protocol": "udp", "proxy_protocol": True}, "proxy_protocol", "only a tcp virtual server"),
    ({"snat": "automap"}, "snat", "snat is for tcp and udp"),
    ({"protocol": "udp", "snat": "masquerade"}, "snat", ""),
    ({"rules": [rule(), rule(action="respond", status=200)]}, "rules.1.name", "'r' is given twice"),
    ({"rules": [rule(name=f"r{i}") for i in range(201)]}, "rules", ""),
    ({"protocol": "https", "certificates": ["c", "c"]}, "certificates.1", "given twice"),
    ({"protocol": "https", "certificates": [f"c{i}" for i in range(17)]}, "certificates", ""),
    ({"protocol": "https", "certificates": ["a b"]}, "certificates.0", ""),
])
def test_a_bad_virtual_server_is_refused_naming_its_field(body, target, says):
    error = refusal(VirtualServer, {**HTTP, **body})
    assert error.target == target
    assert says in str(error)


def test_udp_and_snat_automap_are_layer_4():
    virtual = validate(VirtualServer, {**HTTP, "protocol": "udp", "port": 53, "snat": "automap"})
    assert (virtual.protocol, virtual.snat) == ("udp", "automap")
    assert validate(VirtualServer, {**HTTP, "protocol": "tcp"}).snat == "none"


def test_tcp_takes_the_proxy_protocol_and_https_takes_certificates():
    assert validate(VirtualServer, {**HTTP, "protocol": "tcp", "proxy_protocol": True}).proxy_protocol
    virtual = validate(VirtualServer, {**HTTP, "protocol": "https", "certificates": ["a", "/Common/b"]})
    assert virtual.certificates == ["a", "/Common/b"]


@pytest.mark.parametrize(("body", "target"), [
    ({"lb_method": "fastest"}, "lb_method"),
    ({"persistence": "ssl"}, "persistence"),
    ({"members": [{"address": "10.0.0.1", "port": 80, "weight": 257}]}, "members.0.weight"),
    ({"members": [{"address": "10.0.0.1", "port": 80, "weight": -1}]}, "members.0.weight"),
])
def test_bad_pool_fields_are_refused(body, target):
    assert refusal(Pool, {"name": "p", **body}).target == target


@pytest.mark.parametrize("lb_method", ["round-robin", "least-connections", "source-hash", "random"])
def test_every_lb_method_and_persistence(lb_method):
    for persistence in ("none", "source", "cookie"):
        pool = validate(Pool, {"name": "p", "lb_method": lb_method, "persistence": persistence})
        assert (pool.lb_method, pool.persistence) == (lb_method, persistence)
    assert validate(PoolMember, {"address": "10.0.0.1", "port": 80, "weight": 0}).weight == 0


def test_rule_pools_and_certificates_are_indexed_resolved_and_once():
    body = {**HTTP, "partition": "t", "protocol": "https", "pool": "web", "certificates": ["c", "/Common/d"],
            "rules": [rule(name="a", action="forward", pool="/t/web"), rule(name="b", action="forward",
                                                                            pool="/Common/api")]}
    assert references("virtuals", "t", body) == [
        ("destination", "192.0.2.1 80 tcp"), ("pool", "/t/web"), ("pool", "/Common/api"),
        ("certificate", "/t/c"), ("certificate", "/Common/d")]


def test_http_and_tcp_on_one_port_share_a_destination():
    """They would bind the same TCP port: the destination is (address, port, transport)."""
    tcp = references("virtuals", "Common", {**HTTP, "protocol": "tcp"})[0]
    assert tcp == references("virtuals", "Common", HTTP)[0] == ("destination", "192.0.2.1 80 tcp")


def test_rule_is_a_model_of_its_own():
    assert Rule.model_validate({"name": "r", "action": "respond", "status": 503}).match.methods == []
