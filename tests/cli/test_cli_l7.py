"""The CLI of HTTP/HTTPS virtual servers and the new pool features: `virtual create/update` with
`--protocol`, `--certificate`, `--rules-file`, `--no-forwarded-for`, `--proxy-protocol`; pools with
`--persistence`, the new `--lb-method`s and member weights."""

import json

import pytest

from pki import TestCA
from tandem.cli.errors import CliError
from tandem.cli.main import app
from tandem.cli.objects import parse_weighted_member, read_rules_file

RULES_YAML = """\
- name: api
  action: forward
  pool: cli7-api
  match: {host: API.example.com, path: /v1/, methods: [GET]}
- name: old
  action: redirect
  location: /new
  status: 301
"""


@pytest.fixture
def tandem(runner, shared_device):
    """Run `tandem --url DEVICE --output json ARGS` (pinned, admin): (exit code, JSON output or text)."""

    def run(*args: str):
        result = runner.invoke(app, ["--url", shared_device.url, "--fingerprint", shared_device.fingerprint,
                                     "--output", "json", *args], env={"TANDEM_PASSWORD": shared_device.admin_password})
        try:
            return result.exit_code, json.loads(result.stdout or result.stderr)
        except json.JSONDecodeError:
            return result.exit_code, result.output

    return run


def test_pools_with_weights_persistence_and_lb_methods(tandem):
    code, pool = tandem("pool", "create", "cli7-web", "--lb-method", "source-hash", "--persistence", "cookie",
                        "--member", "10.0.8.1:80:5", "--member", "[2001:db8::8]:80:0", "--member", "10.0.8.2:80")
    assert code == 0, pool
    assert (pool["lb_method"], pool["persistence"]) == ("source-hash", "cookie")
    assert {(m["address"], m["weight"]) for m in pool["members"]} == {
        ("10.0.8.1", 5), ("2001:db8::8", 0), ("10.0.8.2", 1)}
    code, member = tandem("pool", "member", "add", "cli7-web", "10.0.8.3:80", "--weight", "7")
    assert (code, member["weight"]) == (0, 7)
    code, member = tandem("pool", "member", "update", "cli7-web", "10.0.8.1:80", "--weight", "2")
    assert (code, member["weight"]) == (0, 2)
    code, pool = tandem("pool", "update", "cli7-web", "--lb-method", "random", "--persistence", "none")
    assert (code, pool["lb_method"], pool["persistence"]) == (0, "random", "none")
    code, error = tandem("pool", "member", "add", "cli7-web", "10.0.8.4:80", "--weight", "300")
    assert code == 2 and "less than or equal to 256" in str(error)


def test_http_and_https_virtual_servers(tandem, tmp_path, shared_device):
    assert tandem("pool", "create", "cli7-api")[0] == 0
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES_YAML)
    code, created = tandem("virtual", "create", "cli7-http", "--address", "192.0.2.80", "--port", "80",
                           "--protocol", "http", "--pool", "cli7-api", "--rules-file", str(rules),
                           "--no-forwarded-for")
    assert code == 0, created
    assert (created["protocol"], created["forwarded_for"]) == ("http", False)
    assert [(r["name"], r["status"]) for r in created["rules"]] == [("api", None), ("old", 301)]
    assert created["rules"][0]["match"]["host"] == "api.example.com"

    as_json = tmp_path / "rules.json"
    as_json.write_text(json.dumps([{"name": "all", "action": "respond", "status": 503}]))
    code, updated = tandem("virtual", "update", "cli7-http", "--rules-file", str(as_json), "--forwarded-for")
    assert code == 0, updated
    assert [r["name"] for r in updated["rules"]] == ["all"] and updated["forwarded_for"] is True

    code, error = tandem("virtual", "update", "cli7-http", "--rules-file", str(rules), "--proxy-protocol")
    assert code == 1 and error["error"]["target"] == "proxy_protocol"
    bad = tmp_path / "bad.yaml"
    bad.write_text("- name: x\n  action: forward\n  pool: cli7-absent\n")
    code, error = tandem("virtual", "update", "cli7-http", "--rules-file", str(bad))
    assert code == 1 and error["error"]["target"] == "rules.0.pool"

    code, error = tandem("virtual", "create", "cli7-https", "--address", "192.0.2.80", "--port", "443",
                         "--protocol", "https")
    assert code == 1 and error["error"]["target"] == "certificates"
    issued = TestCA().issue("www.example.com", "www.example.com")
    with shared_device.client() as client:
        client.request("POST", "/api/certificates", json={"name": "cli7-cert", "certificate": issued.chain,
                                                          "key": issued.key})
    code, https = tandem("virtual", "create", "cli7-https", "--address", "192.0.2.80", "--port", "443",
                         "--protocol", "https", "--certificate", "cli7-cert", "--pool", "cli7-api")
    assert code == 0, https
    assert (https["protocol"], https["certificates"]) == ("https", ["cli7-cert"])
    code, tcp = tandem("virtual", "update", "cli7-https", "--protocol", "tcp", "--no-certificates",
                       "--proxy-protocol")
    assert code == 0, tcp
    assert (tcp["protocol"], tcp["certificates"], tcp["proxy_protocol"]) == ("tcp", [], True)


@pytest.mark.parametrize(("text", "parsed"), [
    ("10.0.0.1:80", ("10.0.0.1", 80, None)),
    ("10.0.0.1:80:3", ("10.0.0.1", 80, 3)),
    ("[2001:db8::1]:443", ("2001:db8::1", 443, None)),
    ("[2001:db8::1]:443:0", ("2001:db8::1", 443, 0)),
    ("2001:db8::1:443", ("2001:db8::1", 443, None)),  # unbracketed IPv6: no weight
])
def test_parse_weighted_member(text, parsed):
    assert parse_weighted_member(text) == parsed


@pytest.mark.parametrize("text", ["10.0.0.1:80:x", "10.0.0.1:80:-1", "[::1]:80:w"])
def test_parse_weighted_member_refuses(text):
    with pytest.raises(CliError):
        parse_weighted_member(text)


@pytest.mark.parametrize(("content", "says"), [
    ("name: not-a-list\n", "does not hold a list of rules"),
    ("- [unclosed\n", "cannot read rules"),
])
def test_read_rules_file_refuses(tmp_path, content, says):
    path = tmp_path / "rules.yaml"
    path.write_text(content)
    with pytest.raises(CliError, match=says):
        read_rules_file(path)
    with pytest.raises(CliError, match="cannot read rules"):
        read_rules_file(tmp_path / "absent.yaml")


def test_member_states_monitors_and_pools_over_tls(tandem, tmp_path):
    code, pool = tandem("pool", "create", "cli7-st", "--member", "10.0.9.1:80", "--member", "10.0.9.2:80")
    assert code == 0, pool
    code, member = tandem("pool", "member", "drain", "cli7-st", "10.0.9.1:80")
    assert (code, member["state"], member["enabled"]) == (0, "drain", True)
    code, member = tandem("pool", "member", "disable", "cli7-st", "10.0.9.2:80")
    assert (code, member["state"], member["enabled"]) == (0, "disabled", False)
    code, member = tandem("pool", "member", "update", "cli7-st", "10.0.9.2:80", "--state", "drain", "--weight", "4")
    assert (code, member["state"], member["weight"]) == (0, "drain", 4)
    code, member = tandem("pool", "member", "enable", "cli7-st", "10.0.9.2:80")
    assert (code, member["state"]) == (0, "enabled")
    code, member = tandem("pool", "member", "add", "cli7-st", "10.0.9.3:80", "--state", "drain")
    assert (code, member["state"]) == (0, "drain")
    code, member = tandem("pool", "member", "add", "cli7-st", "10.0.9.4:80", "--disabled")
    assert (code, member["state"]) == (0, "disabled")
    code, error = tandem("pool", "member", "add", "cli7-st", "10.0.9.5:80", "--state", "off")
    assert code == 2 and "off" in str(error)

    code, monitor = tandem("monitor", "create", "cli7-chk", "--type", "http", "--rise", "3", "--fall", "2",
                           "--method", "HEAD", "--host", "health.example", "--tls")
    assert code == 0, monitor
    assert {k: monitor[k] for k in ("rise", "fall", "method", "host", "tls")} == {
        "rise": 3, "fall": 2, "method": "HEAD", "host": "health.example", "tls": True}
    code, monitor = tandem("monitor", "update", "cli7-chk", "--no-host", "--no-tls", "--fall", "5")
    assert (code, monitor["host"], monitor["tls"], monitor["fall"]) == (0, None, False, 5)
    code, monitor = tandem("monitor", "update", "cli7-chk", "--type", "tcp")
    assert (code, monitor["method"], monitor["path"]) == (0, None, None)
    code, error = tandem("monitor", "update", "cli7-chk", "--type", "http", "--host", "*.example")
    assert code == 1 and error["error"]["target"] == "host"
    code, error = tandem("monitor", "create", "cli7-bad", "--type", "http", "--rise", "11")
    assert code == 2

    bundle = tmp_path / "ca.pem"
    bundle.write_text(TestCA().pem)
    code, created = tandem("certificate", "create", "cli7-ca", "--cert", str(bundle))
    assert code == 0, created
    code, pool = tandem("pool", "update", "cli7-st", "--tls", "--tls-ca", "cli7-ca", "--tls-server-name", "M.example")
    assert (code, pool["tls"]) == (0, {"verify": True, "ca": "cli7-ca", "server_name": "m.example"})
    code, pool = tandem("pool", "update", "cli7-st", "--tls", "--tls-no-verify")
    assert (code, pool["tls"]) == (0, {"verify": False, "ca": None, "server_name": None})
    code, error = tandem("pool", "update", "cli7-st", "--tls-server-name", "m.example")
    assert code == 1 and "go with --tls" in str(error)
    code, error = tandem("pool", "update", "cli7-st", "--tls")
    assert code == 1 and error["error"]["target"] == "tls.ca"
    code, error = tandem("pool", "create", "cli7-tls", "--tls", "--tls-ca", "cli7-absent")
    assert code == 1 and error["error"]["target"] == "tls.ca"
    code, pool = tandem("pool", "update", "cli7-st", "--no-tls")
    assert (code, pool["tls"]) == (0, None)
    code, error = tandem("virtual", "create", "cli7-bundle", "--address", "192.0.2.81", "--port", "443",
                         "--protocol", "https", "--certificate", "cli7-ca")
    assert code == 1 and error["error"]["target"] == "certificates.0"
