"""The console's protections seen from HTTP, on a real device: every page but sign-in needs a session, the
cookie's attributes, the strict Content-Security-Policy and other headers, CSRF and origin checks on every
write, an auditor's write refused by the API, the API's validation error at the form's field, and the
session ended by sign-out and by the user's deletion."""

import re
from collections.abc import Iterator
from contextlib import closing

import httpx
import pytest
from api_http import session

from devices import RunningDevice

CSRF = re.compile(r'"X-CSRF-Token": "([0-9a-f]{64})"')


def browser_like(device: RunningDevice) -> httpx.Client:
    return httpx.Client(base_url=device.url, verify=False, timeout=30, follow_redirects=False)


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
def device(shared_device: RunningDevice) -> Iterator[RunningDevice]:
    with closing(session(shared_device)) as admin:
        created = admin.post("/api/users", json={"name": "auditor-1", "role": "auditor", "password": "auditor-pass-1"})
        assert created.status_code == 201, created.text
    yield shared_device


def test_pages_and_streams_need_a_session(device: RunningDevice) -> None:
    client = browser_like(device)
    for path in ("/ui/", "/ui/traffic", "/ui/pools/Common/web", "/ui/virtuals/Common/www"):
        answer = client.get(path)
        assert (answer.status_code, answer.headers.get("location")) == (303, "/ui/login"), path
    assert client.get("/ui/stream/overview").status_code == 204
    assert client.get("/").headers.get("location") == "/ui/"
    htmx = client.post("/ui/actions/device/offline", headers={"HX-Request": "true"})
    assert (htmx.status_code, htmx.headers.get("HX-Redirect")) == (401, "/ui/login")
    assert client.get("/ui/login").status_code == 200
    assert client.get("/ui/static/htmx.min.js").status_code == 200


def test_the_session_cookie_and_the_headers(device: RunningDevice) -> None:
    client = browser_like(device)
    answer = client.post("/ui/login", data={"username": "admin", "password": device.admin_password})
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith("tandem_console=")
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
    token = client.cookies.get("tandem_console")
    answer = client.post("/ui/logout", data={"_csrf": csrf})
    assert (answer.status_code, answer.headers["location"]) == (303, "/ui/login")
    client.cookies.set("tandem_console", token, path="/ui")
    assert client.get("/ui/").status_code == 303
    api = httpx.get(f"{device.url}/api/auth/whoami", headers={"Authorization": f"Bearer {token}"}, verify=False)
    assert api.status_code == 401
