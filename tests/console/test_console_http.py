"""The console's protections seen from HTTP, on a real device: every page but sign-in needs a session, the
cookie's attributes, the strict Content-Security-Policy and other headers, CSRF and origin checks on every
write, an auditor's write refused by the API, the API's validation error at the form's field, and the
session ended by sign-out and by the user's deletion, the live stream's parts, the traffic page's partition
filter and pages."""

import html
import re
import time
from collections.abc import Callable, Iterator
from contextlib import closing, suppress

import httpx
import pytest
from api_http import session

from devices import RunningDevice, free_port
from tandem.console.live import OVERVIEW_PARTS
from tandem.console.views import TRAFFIC_PAGE

CSRF = re.compile(r'"X-CSRF-Token": "([0-9a-f]{64})"')


def browser_like(device: RunningDevice) -> httpx.Client:
    """A client that sends what a browser sends with its POSTs: the page's Origin."""
    return httpx.Client(base_url=device.url, verify=False, timeout=30, follow_redirects=False,
                        headers={"Origin": device.url})


def signed_in(device: RunningDevice, username: str = "admin", password: str | None = None) -> tuple[httpx.Client, str]:
    """A client holding a console session, and the session's CSRF token from its overview page."""
    client = browser_like(device)
    answer = client.post("/ui/login", data={"username": username, "password": password or device.admin_password})
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/", answer.text
    page = client.get("/ui/")
    assert page.status_code == 200, page.text
    found = CSRF.search(page.text)
    assert found, page.text[:500]
    return client, found.group(1)


@pytest.fixture(scope="module")
def device(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDevice]:
    """One device for the module (it takes peering offers), with an auditor."""
    device = RunningDevice(name="console", data_dir=tmp_path_factory.mktemp("console") / "console",
                           extra_args=["--intercluster-listen", f"127.0.0.1:{free_port()}"]).start()
    with closing(session(device)) as admin:
        created = admin.post("/api/users", json={"name": "auditor-1", "role": "auditor", "password": "auditor-pass-1"})
        assert created.status_code == 201, created.text
    yield device
    device.stop()


def test_pages_and_streams_need_a_session(device: RunningDevice) -> None:
    client = browser_like(device)
    for path in ("/ui/", "/ui/traffic", "/ui/pools/Common/web", "/ui/virtuals/Common/www"):
        answer = client.get(path)
        assert (answer.status_code, answer.headers.get("location")) == (303, "/ui/login"), path
    unsigned = client.get("/ui/stream/overview")
    assert (unsigned.status_code, unsigned.text) == (200, "event: signed-out\ndata: \n\n")
    assert client.get("/").headers.get("location") == "/ui/"
    htmx = client.post("/ui/actions/device/offline", headers={"HX-Request": "true"})
    assert (htmx.status_code, htmx.headers.get("HX-Redirect")) == (401, "/ui/login")
    assert client.get("/ui/login").status_code == 200
    assert client.get("/ui/static/htmx.min.js").status_code == 200


def test_the_session_cookie_and_the_headers(device: RunningDevice) -> None:
    client = browser_like(device)
    answer = client.post("/ui/login", data={"username": "admin", "password": device.admin_password})
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith("__Secure-tandem_console=")
    for attribute in ("HttpOnly", "Secure", "SameSite=strict", "Path=/ui"):
        assert attribute.lower() in cookie.lower(), cookie
    page = client.get("/ui/")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe" not in csp
    assert page.headers["x-frame-options"] == "DENY" and page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cache-control"] == "no-store"
    assert re.search(r"<script(?![^>]*\bsrc=)", page.text) is None, "an inline script"
    assert re.search(r"\son[a-z]+=", page.text) is None, "an inline event handler"


def test_a_write_needs_the_session_csrf_token_and_this_origin(device: RunningDevice) -> None:
    client, csrf = signed_in(device)
    pool = {"partition": "Common", "name": "csrf-pool"}
    assert client.post("/ui/actions/forms/pool", data=pool).status_code == 403
    assert client.post("/ui/actions/forms/pool", data=pool | {"_csrf": "0" * 64}).status_code == 403
    other_site = client.post("/ui/actions/forms/pool", data=pool | {"_csrf": csrf},
                             headers={"Origin": "https://elsewhere.example"})
    del client.headers["Origin"]  # a client that sends none: the CSRF token alone decides
    assert client.post("/ui/actions/forms/pool", data=pool).status_code == 403
    assert other_site.status_code == 403 and "another site" in other_site.text
    with closing(session(device)) as admin:
        assert admin.get("/api/pools/Common/csrf-pool").status_code == 404
    made = client.post("/ui/actions/forms/pool", data=pool | {"_csrf": csrf, "lb_method": "round-robin"})
    assert made.status_code == 200 and "created" in made.text, made.text
    with closing(session(device)) as admin:
        assert admin.get("/api/pools/Common/csrf-pool").status_code == 200


def test_the_api_validation_error_is_shown_at_its_field(device: RunningDevice) -> None:
    client, csrf = signed_in(device)
    answer = client.post("/ui/actions/forms/virtual", headers={"X-CSRF-Token": csrf},
                         data={"partition": "Common", "name": "bad-port", "address": "192.0.2.9", "port": "99999",
                               "protocol": "tcp", "enabled": "on"})
    assert answer.status_code == 422
    assert 'id="new-virtual-port-error"' in answer.text and 'aria-invalid="true"' in answer.text
    assert 'value="192.0.2.9"' in answer.text  # what was typed is kept
    bad_address = client.post("/ui/actions/forms/virtual", headers={"X-CSRF-Token": csrf},
                              data={"partition": "Common", "name": "bad-address", "address": "not-an-address",
                                    "port": "80", "protocol": "tcp"})
    assert bad_address.status_code == 422 and 'id="new-virtual-address-error"' in bad_address.text


def test_an_auditor_write_gets_the_api_refusal(device: RunningDevice) -> None:
    client, csrf = signed_in(device, "auditor-1", "auditor-pass-1")
    page = client.get("/ui/traffic").text
    assert "New pool" not in page and "hx-post" not in page
    answer = client.post("/ui/actions/device/offline", headers={"X-CSRF-Token": csrf})
    assert answer.status_code == 403 and "admins only" in answer.text
    forged = client.post("/ui/actions/forms/pool", headers={"X-CSRF-Token": csrf},
                         data={"partition": "Common", "name": "auditor-pool"})
    assert forged.status_code == 403 and "read-only access" in forged.text
    with closing(session(device)) as admin:
        trail = admin.get("/api/audit", params={"user": "auditor-1"}).json()["records"]
    assert any(r["status"] == 403 and r["target"] == "/api/pools" and r["source"] == "127.0.0.1" for r in trail), trail


def test_sign_out_ends_the_session(device: RunningDevice) -> None:
    client, csrf = signed_in(device)
    token = client.cookies.get("__Secure-tandem_console")
    answer = client.post("/ui/logout", data={"_csrf": csrf})
    assert (answer.status_code, answer.headers["location"]) == (303, "/ui/login")
    client.cookies.set("__Secure-tandem_console", token, path="/ui")
    assert client.get("/ui/").status_code == 303
    api = httpx.get(f"{device.url}/api/auth/whoami", headers={"Authorization": f"Bearer {token}"}, verify=False)
    assert api.status_code == 401


def test_virtual_servers_and_pools_are_created_changed_and_deleted(device: RunningDevice) -> None:
    client, csrf = signed_in(device)
    write = {"X-CSRF-Token": csrf}
    made = client.post("/ui/actions/forms/pool", headers=write, data={"partition": "Common", "name": "crud-pool",
                                                                        "lb_method": "least-connections"})
    assert made.status_code == 200, made.text
    virtual = {"partition": "Common", "name": "crud-vs", "address": "127.0.77.1", "port": "8080",
               "protocol": "tcp", "pool": "crud-pool", "traffic_group": "traffic-group-1", "enabled": "on"}
    assert client.post("/ui/actions/forms/virtual", headers=write, data=virtual).status_code == 200
    page = client.get("/ui/virtuals/Common/crud-vs")
    assert page.status_code == 200 and 'value="127.0.77.1"' in page.text and "Delete virtual server" in page.text
    changed = client.post("/ui/actions/objects/virtual/Common/crud-vs", headers=write,
                          data=virtual | {"port": "8081", "description": "moved"})
    assert changed.status_code == 200 and "saved" in changed.text, changed.text
    refused = client.post("/ui/actions/objects/virtual/Common/crud-vs", headers=write, data=virtual | {"pool": "nope"})
    assert refused.status_code in (404, 409, 422) and 'id="virtual-form-pool-error"' in refused.text, refused.text
    with closing(session(device)) as admin:
        stored = admin.get("/api/virtuals/Common/crud-vs").json()
        assert (stored["port"], stored["description"], stored["pool"]) == (8081, "moved", "crud-pool")
    pool_page = client.get("/ui/pools/Common/crud-pool")
    assert pool_page.status_code == 200 and "least-connections" in pool_page.text
    pool = {"lb_method": "round-robin", "persistence": "source", "monitor": "", "description": "first"}
    assert client.post("/ui/actions/objects/pool/Common/crud-pool", headers=write, data=pool).status_code == 200
    assert client.post("/ui/actions/objects/pool/Common/crud-pool", headers=write,
                       data=pool | {"description": ""}).status_code == 200
    with closing(session(device)) as admin:
        stored_pool = admin.get("/api/pools/Common/crud-pool").json()
        assert (stored_pool["lb_method"], stored_pool["persistence"], stored_pool["description"]) == (
            "round-robin", "source", "")
    assert client.get("/ui/nothing/Common/crud-pool").status_code == 404
    in_use = client.post("/ui/actions/delete/pool/Common/crud-pool", headers=write)
    assert in_use.status_code == 409 and "crud-vs" in in_use.text  # the API refuses: a virtual server uses it
    gone = client.post("/ui/actions/delete/virtual/Common/crud-vs", headers=write)
    assert (gone.status_code, gone.headers.get("HX-Redirect")) == (200, "/ui/traffic")
    assert client.post("/ui/actions/delete/pool/Common/crud-pool", headers=write).status_code == 200
    assert client.get("/ui/pools/Common/crud-pool").status_code == 404


def test_members_are_added_drained_disabled_and_removed(device: RunningDevice) -> None:
    client, csrf = signed_in(device)
    write = {"X-CSRF-Token": csrf}
    assert client.post("/ui/actions/forms/pool", headers=write,
                       data={"partition": "Common", "name": "member-pool"}).status_code == 200
    added = client.post("/ui/actions/forms/member", headers=write,
                        data={"pool": "Common/member-pool", "address": "10.20.0.1", "port": "80", "state": "enabled"})
    assert added.status_code == 200 and "created" in added.text, added.text
    traffic = client.get("/ui/traffic").text
    assert 'data-member="10.20.0.1:80"' in traffic
    for state in ("drain", "disabled", "enabled"):
        answer = client.post("/ui/actions/members/Common/member-pool/10.20.0.1:80", headers=write,
                             data={"state": state})
        assert answer.status_code == 200, answer.text
        with closing(session(device)) as admin:
            assert admin.get("/api/pools/Common/member-pool/members/10.20.0.1:80").json()["state"] == state
    assert client.post("/ui/actions/members/Common/member-pool/10.20.0.1:80", headers=write,
                       data={"state": "sideways"}).status_code == 422
    removed = client.post("/ui/actions/members/Common/member-pool/10.20.0.1:80", headers=write,
                          data={"state": "delete"})
    assert removed.status_code == 200 and "removed" in removed.text
    with closing(session(device)) as admin:
        assert admin.get("/api/pools/Common/member-pool").json()["members"] == []


def test_the_overview_shows_agents_and_their_problems(device: RunningDevice) -> None:
    with closing(session(device)) as admin:
        held = admin.post("/api/leases/Common/tandem-files-agent-host-a/acquire", json={
            "holder": "host-a", "ttl": 60.0, "data": {"source": "file", "owned": 3, "problem_count": 1,
                                                       "problems": {"web-svc": "port 80 is taken by <api>"}}})
        assert held.status_code == 200, held.text
    client, _ = signed_in(device)
    page = client.get("/ui/").text
    assert "host-a" in page and "writes 3 services" in page
    assert "web-svc: port 80 is taken by &lt;api&gt;" in page  # escaped, as everything written by others


def test_a_peering_offer_shows_its_passphrase_once(device: RunningDevice) -> None:
    client, csrf = signed_in(device)
    offer = client.post("/ui/actions/peers/offer", headers={"X-CSRF-Token": csrf}, data={"name": "far-cluster"})
    assert offer.status_code == 200, offer.text
    passphrase = re.search(r'<code class="secret" id="secret">([^<]+)</code>', offer.text)
    assert passphrase and len(passphrase.group(1)) >= 20
    assert passphrase.group(1) not in client.get("/ui/").text
    with closing(session(device)) as admin:
        assert passphrase.group(1) not in admin.get("/api/cluster/peers", params={"fields": "**"}).text


def events_within(client: httpx.Client, path: str, seconds: float, during: Callable[[], object] | None = None
                  ) -> list[str]:
    """The names of the events a live stream sends within `seconds` (calling `during` once it is open)."""
    names = []
    deadline = time.monotonic() + seconds
    with client.stream("GET", path, timeout=httpx.Timeout(10, read=seconds)) as stream:
        assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
        if during is not None:
            during()
        with suppress(httpx.ReadTimeout):  # a quiet stream: nothing more within the time
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    names.append(line.removeprefix("event: "))
                if time.monotonic() > deadline:
                    break
    return names


def test_the_stream_sends_only_what_the_page_does_not_show(device: RunningDevice) -> None:
    client, csrf = signed_in(device)
    page = client.get("/ui/").text
    stream = re.search(r'sse-connect="(/ui/stream/overview\?shown=[^"]+)"', page)
    assert stream, page[:300]
    path = html.unescape(stream.group(1))
    assert events_within(client, path, 0.8) == []  # nothing changed since the page was rendered
    # the page's token serves once: a stream that reconnects (or an unknown token) gets every part
    assert set(events_within(client, path, 0.8)) == set(OVERVIEW_PARTS)
    assert set(events_within(client, "/ui/stream/overview?shown=bogus", 0.8)) == set(OVERVIEW_PARTS)
    path = html.unescape(re.search(r'sse-connect="([^"]+)"', client.get("/ui/").text).group(1))

    def offline() -> None:
        assert client.post("/ui/actions/device/offline", headers={"X-CSRF-Token": csrf}).status_code == 200

    try:
        assert "summary" in events_within(client, path, 1.5, during=offline)
    finally:
        client.post("/ui/actions/device/online", headers={"X-CSRF-Token": csrf})


def test_a_deleted_user_is_signed_out_of_pages_and_streams(device: RunningDevice) -> None:
    with closing(session(device)) as admin:
        assert admin.post("/api/users", json={"name": "leaving", "role": "admin",
                                              "password": "leaving-pass-1"}).status_code == 201
    client, _ = signed_in(device, "leaving", "leaving-pass-1")

    def delete_the_user() -> None:
        with closing(session(device)) as admin:
            assert admin.delete("/api/users/leaving").status_code == 204

    assert events_within(client, "/ui/stream/overview", 3.0, during=delete_the_user)[-1] == "signed-out"
    assert client.get("/ui/").headers.get("location") == "/ui/login"


def test_the_traffic_page_filters_by_partition_and_pages(device: RunningDevice) -> None:
    with closing(session(device)) as admin:
        assert admin.post("/api/partitions", json={"name": "paged"}).status_code == 201
        operations = [{"action": "create", "resource": "virtuals", "partition": "paged", "name": f"vs-{i:03d}",
                       "body": {"address": "127.0.78.1", "port": 10000 + i, "enabled": False}}
                      for i in range(TRAFFIC_PAGE + 1)]
        assert admin.post("/api/batch", json={"operations": operations}).status_code == 200
    client, _ = signed_in(device)
    first = client.get("/ui/traffic", params={"partition": "paged"}).text
    assert first.count('data-virtual="/paged/') == TRAFFIC_PAGE and 'data-virtual="/Common/' not in first
    following = re.search(r'href="(/ui/traffic\?partition=paged&amp;after=[^"]+)"', first)
    assert following, "no next page"
    second = client.get(html.unescape(following.group(1))).text
    assert second.count('data-virtual="/paged/') == 1 and f"vs-{TRAFFIC_PAGE:03d}" in second
    assert "Next page" not in second
    everything = client.get("/ui/traffic").text
    assert '<option value="paged"' in everything and everything.count("data-virtual=") == TRAFFIC_PAGE


def test_what_the_console_refuses_before_reading_it(device: RunningDevice) -> None:
    client = browser_like(device)
    no_origin = httpx.post(f"{device.url}/ui/login", data={"username": "admin", "password": device.admin_password},
                           verify=False)
    assert no_origin.status_code == 403 and "Origin" in no_origin.text  # signing in from a page, not elsewhere
    big = client.post("/ui/login", content=b"username=" + b"a" * (65 * 1024),
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert big.status_code == 413
    not_a_form = client.post("/ui/login", json={"username": "admin"})
    assert not_a_form.status_code == 415
    chunked = client.post("/ui/login", content=iter([b"username=admin"]),
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert chunked.status_code == 411
    signed, csrf = signed_in(device)
    dotted = signed.post("/ui/actions/members/Common/web/%2E%2E", headers={"X-CSRF-Token": csrf},
                         data={"state": "delete"})
    assert dotted.status_code == 422 and "member" in dotted.text, dotted.text


def test_an_unticked_box_stays_unticked(device: RunningDevice) -> None:
    client, csrf = signed_in(device)
    write = {"X-CSRF-Token": csrf}
    off = {"partition": "Common", "name": "off-vs", "address": "127.0.79.1", "port": "99999", "protocol": "tcp"}
    refused = client.post("/ui/actions/forms/virtual", headers=write, data=off)  # no "enabled": unticked
    assert refused.status_code == 422 and 'name="enabled" checked' not in refused.text
    assert client.post("/ui/actions/forms/virtual", headers=write, data=off | {"port": "80"}).status_code == 200
    saved = client.post("/ui/actions/objects/virtual/Common/off-vs", headers=write, data=off | {"port": "81"})
    assert saved.status_code == 200 and 'name="enabled" checked' not in saved.text and 'value="81"' in saved.text
    with closing(session(device)) as admin:
        assert admin.get("/api/virtuals/Common/off-vs").json()["enabled"] is False


def test_odd_lease_data_does_not_break_the_overview(device: RunningDevice) -> None:
    with closing(session(device)) as admin:
        held = admin.post("/api/leases/Common/odd-agent/acquire", json={
            "holder": "odd-host", "ttl": 60.0, "data": {"source_errors": ["not", "a", "mapping"],
                                                         "problems": "nope", "problem_count": "x", "owned": "many"}})
        assert held.status_code == 200, held.text
    client, _ = signed_in(device)
    page = client.get("/ui/")
    assert page.status_code == 200 and "odd-host" in page.text
