"""HTTP and HTTPS virtual servers, their rules and certificates, and the new pool fields (weights,
persistence, lb methods) through the API of a running device: what is stored and read back, what is refused
(422 naming the field, nothing written), and what rules' pools and certificates hold."""

import pytest
from api_http import error_of, session

from pki import TestCA

WEB = {"partition": "Common", "name": "l7-web", "members": [{"address": "10.0.7.1", "port": 80}]}
RULES = [
    {"name": "api", "action": "forward", "pool": "l7-api",
     "match": {"host": "API.example.com", "path": "/v1/", "methods": ["GET", "POST"],
               "headers": [{"name": "X-Tenant", "value": "blue"}]}},
    {"name": "old", "action": "redirect", "location": "https://example.com/new",
     "match": {"path": "^/old/[0-9]+$", "path_type": "regex"}},
    {"name": "health", "action": "respond", "status": 204, "match": {"path": "/healthz", "path_type": "exact"}},
    {"name": "admin", "action": "reject", "match": {"host": "*.internal.example.com"}},
]


@pytest.fixture(scope="module")
def admin(shared_device):
    """An admin session; Common holds pools l7-web and l7-api, partition l7-b a pool l7-p and a certificate."""
    client = session(shared_device)
    assert client.post("/api/pools", json=WEB).status_code == 201
    assert client.post("/api/pools", json={"name": "l7-api"}).status_code == 201
    for name in ("l7-a", "l7-b"):
        assert client.post("/api/partitions", json={"name": name}).status_code == 201
    assert client.post("/api/pools", json={"partition": "l7-b", "name": "l7-p"}).status_code == 201
    return client


@pytest.fixture(scope="module")
def certificates(admin):
    """Certificates l7-one (www.example.com) and l7-two (api.example.com) in Common, l7-other in l7-b."""
    ca = TestCA()
    for partition, name, host in (("Common", "l7-one", "www.example.com"), ("Common", "l7-two", "api.example.com"),
                                  ("l7-b", "l7-other", "b.example.com")):
        issued = ca.issue(host, host)
        response = admin.post("/api/certificates", json={"partition": partition, "name": name,
                                                         "certificate": issued.chain, "key": issued.key})
        assert response.status_code == 201, response.text
    return ca


def virtual(name: str, port: int, **fields) -> dict:
    return {"name": name, "address": "192.0.2.70", "port": port, "protocol": "http", "pool": "l7-web", **fields}


def refused(response, target: str, says: str = "") -> dict:
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["target"] == target, error
    assert says in error["message"], error
    return error


def test_an_http_virtual_server_with_rules_round_trips(admin):
    created = admin.post("/api/virtuals", json=virtual("l7-http", 8001, rules=RULES))
    assert created.status_code == 201, created.text
    got = admin.get("/api/virtuals/Common/l7-http").json()
    assert (got["protocol"], got["forwarded_for"], got["proxy_protocol"], got["certificates"]) == (
        "http", True, False, [])
    api, old, health, reject = got["rules"]
    assert api["match"] == {"host": "api.example.com", "path": "/v1/", "path_type": "prefix",
                            "methods": ["GET", "POST"], "headers": [{"name": "X-Tenant", "value": "blue"}]}
    assert (api["pool"], old["status"], old["location"], health["status"]) == (
        "l7-api", 302, "https://example.com/new", 204)
    assert reject["match"]["host"] == "*.internal.example.com" and reject["pool"] is None

    patched = admin.patch("/api/virtuals/Common/l7-http", json={"rules": RULES[2:], "forwarded_for": False})
    assert patched.status_code == 200, patched.text
    got = admin.get("/api/virtuals/Common/l7-http").json()
    assert [r["name"] for r in got["rules"]] == ["health", "admin"] and got["forwarded_for"] is False
    assert admin.get("/api/virtuals", params={"protocol": "http", "name": "l7-http"}).json()["num_records"] == 1


def test_https_needs_certificates_that_exist(admin, certificates):
    https = virtual("l7-https", 8443, protocol="https", rules=RULES[:1])
    refused(admin.post("/api/virtuals", json=https), "certificates", "needs at least one certificate")
    refused(admin.post("/api/virtuals", json={**https, "certificates": ["l7-one", "l7-absent"]}),
            "certificates.1", "/Common/l7-absent does not exist")
    refused(admin.post("/api/virtuals", json={**https, "certificates": ["/l7-b/l7-other"]}),
            "certificates.0", "may use only objects of Common")
    assert admin.get("/api/virtuals/Common/l7-https").status_code == 404

    created = admin.post("/api/virtuals", json={**https, "certificates": ["l7-one", "/Common/l7-two"]})
    assert created.status_code == 201, created.text
    got = admin.get("/api/virtuals/Common/l7-https").json()
    assert (got["protocol"], got["certificates"]) == ("https", ["l7-one", "/Common/l7-two"])

    conflict = admin.delete("/api/certificates/Common/l7-two")
    assert conflict.status_code == 409, conflict.text
    assert "used by virtual /Common/l7-https" in error_of(conflict)["message"]
    refused(admin.patch("/api/virtuals/Common/l7-https", json={"protocol": "http"}), "certificates",
            "only an https virtual server takes certificates")
    assert admin.patch("/api/virtuals/Common/l7-https", json={"certificates": ["l7-one"]}).status_code == 200
    assert admin.delete("/api/certificates/Common/l7-two").status_code == 204  # no longer used
    assert admin.get("/api/virtuals/Common/l7-https").json()["certificates"] == ["l7-one"]


@pytest.mark.parametrize(("fields", "target", "says"), [
    ({"protocol": "https"}, "certificates", "needs at least one certificate"),
    ({"certificates": ["l7-one"]}, "certificates", "only an https virtual server"),
    ({"protocol": "tcp", "rules": RULES[2:3]}, "rules", "a tcp virtual server takes no rules"),
    ({"proxy_protocol": True}, "proxy_protocol", "only a tcp virtual server"),
    ({"rules": [{**RULES[0], "pool": "l7-absent"}]}, "rules.0.pool", "/Common/l7-absent does not exist"),
    ({"rules": [{**RULES[0], "pool": None}]}, "rules.0.pool", "a forward rule needs a pool"),
    ({"rules": [{**RULES[1], "location": None}]}, "rules.0.location", "a redirect rule needs a location"),
    ({"rules": [{**RULES[1], "status": 200}]}, "rules.0.status", "301, 302, 303, 307, 308"),
    ({"rules": [{**RULES[2], "status": None}]}, "rules.0.status", "a respond rule needs a status"),
    ({"rules": [{**RULES[3], "pool": "l7-web"}]}, "rules.0.pool", "only a forward rule takes a pool"),
    ({"rules": [RULES[2], RULES[2]]}, "rules.1.name", "given twice"),
    ({"rules": [{**RULES[1], "match": {"path": "^/(old", "path_type": "regex"}}]}, "rules.0.match.path",
     "not a valid regular expression"),
    ({"rules": [{**RULES[3], "match": {"headers": [{"name": "X Bad", "value": "a"}]}}]},
     "rules.0.match.headers.0.name", "a header name of 1 to 64"),
    ({"rules": [{**RULES[3], "match": {"methods": ["TRACE"]}}]}, "rules.0.match.methods.0", ""),
    ({"rules": [{**RULES[3], "match": {"path": "v1"}}]}, "rules.0.match.path", "must start with '/'"),
    ({"rules": [{**RULES[3], "match": {"host": "a..example.com"}}]}, "rules.0.match.host", "DNS name"),
])
def test_every_refusal_is_a_422_naming_the_field_and_writes_nothing(admin, fields, target, says):
    refused(admin.post("/api/virtuals", json=virtual("l7-refused", 8002, **fields)), target, says)
    assert admin.get("/api/virtuals/Common/l7-refused").status_code == 404
    # the same change to a stored virtual server is refused and changes nothing
    assert admin.post("/api/virtuals", json=virtual("l7-kept", 8003)).status_code in (201, 409)
    before = admin.get("/api/virtuals/Common/l7-kept").json()
    refused(admin.patch("/api/virtuals/Common/l7-kept", json=fields), target, says)
    assert admin.get("/api/virtuals/Common/l7-kept").json() == before


@pytest.mark.parametrize("value", ["a b", "a\"b", "a'b", "a#b", "a%b", "a\nb", "a\rb", "a\x00b", " a"])
def test_names_with_quotes_spaces_newlines_hash_or_percent_are_refused(admin, value):
    refused(admin.post("/api/virtuals", json=virtual(f"bad{value}", 8004)), "name")
    refused(admin.post("/api/virtuals", json=virtual("l7-names", 8004, rules=[{**RULES[3], "name": value}])),
            "rules.0.name")
    refused(admin.post("/api/virtuals", json=virtual("l7-names", 8004, rules=[
        {**RULES[3], "match": {"host": f"{value}.example.com"}}])), "rules.0.match.host")
    assert admin.get("/api/virtuals/Common/l7-names").status_code == 404


@pytest.mark.parametrize(("value", "kept"), [
    ("a \"quoted\" 'value'", True), ("a #not-a-comment", True), ("100% %[src] %{+Q}o", True),
    ("line\nX-Injected: 1", False), ("cr\rlf", False), ("tab\there", False), ("nul\x00", False), ("é", False),
])
def test_header_values_are_kept_exactly_or_refused(admin, value, kept):
    rules = [{**RULES[3], "match": {"headers": [{"name": "X-Odd", "value": value}]}}]
    response = admin.post("/api/virtuals", json=virtual("l7-values", 8005, rules=rules))
    if not kept:
        refused(response, "rules.0.match.headers.0.value", "printable ASCII")
        return
    assert response.status_code == 201, response.text
    got = admin.get("/api/virtuals/Common/l7-values").json()
    assert got["rules"][0]["match"]["headers"] == [{"name": "X-Odd", "value": value}]
    assert admin.delete("/api/virtuals/Common/l7-values").status_code == 204


@pytest.mark.parametrize(("field", "value", "kept"), [
    ("path", "/a%20b/'x'", True), ("path", "/a#b", False), ("path", "/a b", False), ("path", "/a\"\nb", False),
    ("path", "/a?b=1", False), ("regex", "^/a#b%'\"$", True), ("regex", "^/a b$", False),
    ("regex", "^/a\n$", False), ("location", "/new?a=%20#top'", True), ("location", "/x y", False),
    ("location", "/x\nSet-Cookie: a=b", False), ("header-name", "X-A_b.c", True),
    ("header-name", "X-A#b%'", False), ("header-name", "X-A\"", False),
    ("header-name", "X-A\n", False),
])
def test_paths_locations_and_header_names_are_kept_exactly_or_refused(admin, field, value, kept):
    rule, target = {
        "path": ({**RULES[3], "match": {"path": value}}, "rules.0.match.path"),
        "regex": ({**RULES[3], "match": {"path": value, "path_type": "regex"}}, "rules.0.match.path"),
        "location": ({**RULES[1], "match": {}, "location": value}, "rules.0.location"),
        "header-name": ({**RULES[3], "match": {"headers": [{"name": value, "value": "x"}]}},
                        "rules.0.match.headers.0.name"),
    }[field]
    response = admin.post("/api/virtuals", json=virtual("l7-odd", 8006, rules=[rule]))
    if not kept:
        refused(response, target)
        assert admin.get("/api/virtuals/Common/l7-odd").status_code == 404
        return
    assert response.status_code == 201, response.text
    assert admin.get("/api/virtuals/Common/l7-odd").json()["rules"] == [
        validated_rule(admin, rule)]
    assert admin.delete("/api/virtuals/Common/l7-odd").status_code == 204


def validated_rule(admin, rule: dict) -> dict:
    """`rule` as the device stores it (defaults filled in)."""
    match = {"host": None, "path": None, "path_type": "prefix", "methods": [], "headers": [], **rule["match"]}
    return {"pool": None, "location": None, "status": 302 if rule["action"] == "redirect" else None, **rule,
            "match": match}


def test_rule_pools_follow_the_partition_rule(admin, shared_device):
    assert admin.post("/api/users", json={"name": "l7-mgr", "role": "manager", "partitions": ["l7-a"],
                                          "password": "l7-mgr-password"}).status_code == 201
    manager = session(shared_device, "l7-mgr", "l7-mgr-password")
    body = {**virtual("l7-tenant", 8007, partition="l7-a", pool=None),
            "rules": [{**RULES[3], "name": "ok"}, {**RULES[0], "pool": "/l7-b/l7-p"}]}
    refused(manager.post("/api/virtuals", json=body), "rules.1.pool", "may use only objects of l7-a and Common")
    refused(admin.post("/api/virtuals", json=body), "rules.1.pool", "may use only objects of l7-a and Common")
    assert admin.get("/api/virtuals/l7-a/l7-tenant").status_code == 404
    body["rules"][1]["pool"] = "/Common/l7-api"
    assert manager.post("/api/virtuals", json=body).status_code == 201
    refused(manager.patch("/api/virtuals/l7-a/l7-tenant", json={"rules": [{**RULES[0], "pool": "l7-api"}]}),
            "rules.0.pool", "/l7-a/l7-api does not exist")  # a bare name is of the virtual server's partition


def test_a_pool_used_by_a_rule_cannot_be_deleted(admin):
    assert admin.post("/api/pools", json={"name": "l7-ruled"}).status_code == 201
    rules = [{**RULES[0], "pool": "l7-ruled"}]
    assert admin.post("/api/virtuals", json=virtual("l7-holder", 8008, pool=None, rules=rules)).status_code == 201
    response = admin.delete("/api/pools/Common/l7-ruled")
    assert response.status_code == 409, response.text
    assert "used by virtual /Common/l7-holder" in error_of(response)["message"]
    assert admin.patch("/api/virtuals/Common/l7-holder", json={"rules": []}).status_code == 200
    assert admin.delete("/api/pools/Common/l7-ruled").status_code == 204


def test_http_and_tcp_cannot_share_a_destination(admin):
    assert admin.post("/api/virtuals", json=virtual("l7-port-http", 8009)).status_code == 201
    response = admin.post("/api/virtuals", json=virtual("l7-port-tcp", 8009, protocol="tcp"))
    assert response.status_code == 409, response.text
    assert error_of(response)["target"] == "port"


def test_weights_persistence_and_lb_methods_round_trip(admin):
    pool = {"name": "l7-weighted", "lb_method": "source-hash", "persistence": "cookie",
            "members": [{"address": "10.0.7.2", "port": 80, "weight": 3}, {"address": "10.0.7.3", "port": 80}]}
    assert admin.post("/api/pools", json=pool).status_code == 201
    got = admin.get("/api/pools/Common/l7-weighted").json()
    assert (got["lb_method"], got["persistence"]) == ("source-hash", "cookie")
    assert [m["weight"] for m in got["members"]] == [3, 1]
    assert admin.patch("/api/pools/Common/l7-weighted", json={"lb_method": "random", "persistence": "source"}
                       ).status_code == 200
    member = "/api/pools/Common/l7-weighted/members/10.0.7.3:80"
    assert admin.patch(member, json={"weight": 0}).json()["weight"] == 0
    refused(admin.patch(member, json={"weight": 257}), "weight")
    refused(admin.post("/api/pools/Common/l7-weighted/members", json={"address": "10.0.7.4", "port": 80,
                                                                     "weight": -1}), "weight")
    refused(admin.patch("/api/pools/Common/l7-weighted", json={"persistence": "ssl-id"}), "persistence")
    got = admin.get("/api/pools/Common/l7-weighted").json()
    assert (got["lb_method"], got["persistence"]) == ("random", "source")
    assert [(m["address"], m["weight"]) for m in got["members"]] == [("10.0.7.2", 3), ("10.0.7.3", 0)]
