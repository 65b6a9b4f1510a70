"""Odd input refused whole, with a 422 naming the field: the URL of a device to trust, an IPv6 address's scope."""

import http.client
import http.server
import json
import ssl

import pytest
from api_http import error_of, session
from pydantic import ValidationError

from backends import fake_device
from tandem.agents.service import Member
from tandem.models import PoolMember, VirtualServer
from tandem.models.cluster import TrafficGroup

BAD_URLS = ["https://127.0.0.1:99999", "https://127.0.0.1:0", "https://]x", "https://a..b", "https://-a.example",
            "https://999.1.1.1", "https://[::1%25lo]", "https://[nope]:443", "https://a.example\n",
            f"https://{'a' * 64}.example", "https://a.example:443/path"]


@pytest.fixture(scope="module")
def api(shared_device):
    return session(shared_device)


def test_a_malformed_device_url_is_a_422_on_a_connection_kept_alive(shared_device, api):
    host, port = shared_device.url.removeprefix("https://").split(":")
    tls = ssl.create_default_context()
    tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
    connection = http.client.HTTPSConnection(host, int(port), context=tls, timeout=30)
    headers = {"Authorization": api.headers["Authorization"], "Content-Type": "application/json"}
    try:
        for url in BAD_URLS:  # one connection: a dropped one fails the next request
            body = json.dumps({"url": url, "username": "a", "password": "b"})
            connection.request("POST", "/api/trust/devices", body, headers)
            response = connection.getresponse()
            error = json.loads(response.read())["error"]
            assert (response.status, error["target"]) == (422, "url"), (url, error)
            assert not response.will_close, url
        connection.request("GET", "/api/health")
        assert connection.getresponse().status == 200
    finally:
        connection.close()
    assert api.get("/api/trust/devices").json()["num_records"] == 1


class _LoginWithoutToken(http.server.BaseHTTPRequestHandler):
    """Answers any login 200 with a body that is not JSON."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "4")
        self.end_headers()
        self.wfile.write(b"nope")

    def log_message(self, *args: object) -> None:
        pass


def test_a_device_answering_a_login_without_a_token_is_a_502(api, tmp_path):
    with fake_device(_LoginWithoutToken, tmp_path / "fake") as url:
        response = api.post("/api/trust/devices", json={"url": url, "username": "admin", "password": "x"})
    assert response.status_code == 502, response.text
    assert error_of(response)["target"] == "url" and "without a token" in error_of(response)["message"]


BAD_SCOPES = ["::1%\nforged log line", "::1%\x1b[31m", "fe80::1%eth0\n", "fe80::1%a b", "fe80::1%..",
              f"fe80::1%{'e' * 16}", "fe80::1%é"]


@pytest.mark.parametrize("address", BAD_SCOPES)
def test_an_address_scope_must_be_an_interface_name(api, address):
    writes = [("/api/pools", {"name": "scoped", "members": [{"address": address, "port": 80}]}, "members.0.address"),
              ("/api/virtuals", {"name": "scoped", "address": address, "port": 80, "enabled": False}, "address")]
    for path, body, target in writes:
        response = api.post(path, json=body)
        assert response.status_code == 422, (path, response.text)
        assert error_of(response)["target"] == target
        assert repr(address)[1:-1] in error_of(response)["message"]  # escaped, never raw
    assert api.post("/api/pools", json={"name": "scoped-p"}).status_code in (201, 409)
    member = api.post("/api/pools/Common/scoped-p/members", json={"address": address, "port": 80})
    assert (member.status_code, error_of(member)["target"]) == (422, "address")
    assert api.get("/api/virtuals?name=scoped").json()["num_records"] == 0


def test_an_address_with_an_interface_scope_is_accepted(api):
    pool = api.post("/api/pools", json={"name": "link-local", "members": [{"address": "FE80::1%eth0", "port": 80}]})
    assert pool.status_code == 201, pool.text
    assert pool.json()["members"][0]["address"] == "fe80::1%eth0"
    assert api.get("/api/pools/Common/link-local/members/[fe80::1%25eth0]:80").status_code == 200


@pytest.mark.parametrize("address", BAD_SCOPES)
def test_every_address_field_refuses_a_bad_scope(address):
    for build in (lambda: PoolMember(address=address, port=80),
                  lambda: VirtualServer(name="v", address=address, port=80),
                  lambda: TrafficGroup(name="tg", device_group="dg", addresses=[address]),
                  lambda: Member(address=address, port=80)):
        with pytest.raises(ValidationError, match="not an interface name"):
            build()
