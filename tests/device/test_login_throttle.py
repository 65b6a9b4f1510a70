"""Failed logins back off per (user, source address) and per source address; unknown users cost what known ones do.

Each test logs in from its own loopback source addresses (127.0.0.0/8 all reach the device), so that the
back-off of one test does not hold back another on the shared device.
"""

import base64
import statistics
import time

import httpx
import pytest
from api_http import error_of, session

from tandem.auth.throttle import BASE_DELAY, FREE_FAILURES, SOURCE_FREE_FAILURES
from waiting import wait_until


def client_from(device, address: str) -> httpx.Client:
    """A client whose connections leave from `address`."""
    return httpx.Client(base_url=device.url, timeout=30,
                        transport=httpx.HTTPTransport(verify=False, local_address=address))


def login(client: httpx.Client, username: str, password: str) -> httpx.Response:
    return client.post("/api/auth/login", json={"username": username, "password": password})


def basic(username: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


def logins(admin: httpx.Client) -> dict:
    return admin.get("/api/device").json()["logins"]


def assert_throttled(response: httpx.Response) -> int:
    """The Retry-After (seconds) of a 429 answer."""
    assert response.status_code == 429, response.text
    assert error_of(response)["code"] == "too_many_requests"
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= BASE_DELAY
    return retry_after


@pytest.fixture(scope="module")
def admin(shared_device):
    return session(shared_device)


@pytest.fixture
def user(admin, request):
    """A user of this test alone (a backing-off admin would hold back the other tests)."""
    name = request.node.name.removeprefix("test_")[:40].replace("_", "-")
    created = admin.post("/api/users", json={"name": name, "role": "auditor", "password": f"{name}-pass"})
    assert created.status_code == 201, created.text
    return name, f"{name}-pass"


def test_wrong_passwords_back_off_for_that_source_but_not_for_the_user_elsewhere(shared_device, admin, user):
    name, password = user
    attacker, elsewhere = client_from(shared_device, "127.0.0.2"), client_from(shared_device, "127.0.0.3")
    before = logins(admin)
    for _ in range(FREE_FAILURES):
        assert login(attacker, name, "wrong-password").status_code == 401
    assert_throttled(login(attacker, name, "wrong-password"))
    assert_throttled(login(attacker, name, password))  # even the right password, from there, for now
    after = logins(admin)
    assert after["failed"] - before["failed"] == FREE_FAILURES
    assert after["throttled"] - before["throttled"] == 2 and after["backing_off"] >= 1
    assert login(elsewhere, name, password).status_code == 200
    assert login(attacker, "admin", shared_device.admin_password).status_code == 200  # another user from there

    wait_until(lambda: login(attacker, name, password).status_code == 200, timeout=30,
               what="the right password accepted once the back-off is over")
    assert login(attacker, name, "wrong-password").status_code == 401  # the success cleared the record


def test_wrong_basic_credentials_back_off_and_tokens_do_not(shared_device, admin, user):
    name, password = user
    attacker, elsewhere = client_from(shared_device, "127.0.0.4"), client_from(shared_device, "127.0.0.5")
    token = login(attacker, name, password).json()["token"]
    for _ in range(FREE_FAILURES):
        assert attacker.get("/api/auth/whoami", headers=basic(name, "wrong-password")).status_code == 401
    assert_throttled(attacker.get("/api/auth/whoami", headers=basic(name, "wrong-password")))
    assert_throttled(login(attacker, name, password))  # Basic and login count together
    assert attacker.get("/api/auth/whoami", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert elsewhere.get("/api/auth/whoami", headers=basic(name, password)).status_code == 200


def test_a_source_guessing_many_users_backs_off_and_is_logged_once(shared_device, admin):
    attacker = client_from(shared_device, "127.0.0.6")
    for i in range(SOURCE_FREE_FAILURES):
        assert login(attacker, f"nobody-{i}", "wrong-password").status_code == 401
    for i in range(3):
        assert_throttled(login(attacker, f"someone-{i}", "wrong-password"))
    assert_throttled(login(attacker, "admin", shared_device.admin_password))
    assert login(client_from(shared_device, "127.0.0.7"), "admin", shared_device.admin_password).status_code == 200
    line = "failed logins for source 127.0.0.6;"
    wait_until(lambda: line in shared_device.log_tail(200), timeout=10, what="the back-off logged")
    time.sleep(0.5)
    assert shared_device.log_tail(200).count(line) == 1


def test_a_throttled_user_name_is_logged_escaped(shared_device):
    attacker = client_from(shared_device, "127.0.0.8")
    for _ in range(FREE_FAILURES):
        assert login(attacker, "evil\nname", "wrong-password").status_code == 401
    assert_throttled(login(attacker, "evil\nname", "wrong-password"))
    line = "failed logins for user 'evil\\nname' from 127.0.0.8;"
    wait_until(lambda: line in shared_device.log_tail(200), timeout=10, what="the back-off logged")
    assert "evil\nname" not in shared_device.log_tail(200)


def test_an_unknown_user_costs_what_a_wrong_password_does(shared_device, user):
    name, _ = user
    client = client_from(shared_device, "127.0.0.9")

    def seconds(username: str) -> float:
        start = time.perf_counter()
        assert login(client, username, "wrong-password").status_code == 401
        return time.perf_counter() - start

    known = statistics.median(seconds(name) for _ in range(3))
    unknown = statistics.median(seconds("no-such-user") for _ in range(3))
    assert unknown > known / 4, (known, unknown)  # before: 1-2 ms against 150-300 ms
