"""A raw HTTP view of a device for tests of the API's own conventions (status codes, error bodies)."""

import httpx

from devices import RunningDevice


def session(device: RunningDevice, username: str = "admin", password: str | None = None) -> httpx.Client:
    """An httpx client logged in to `device` with a Bearer token."""
    client = httpx.Client(base_url=device.url, verify=False, timeout=30)
    response = client.post("/api/auth/login", json={"username": username,
                                                    "password": password or device.admin_password})
    assert response.status_code == 200, response.text
    client.headers["Authorization"] = f"Bearer {response.json()['token']}"
    return client


def error_of(response: httpx.Response) -> dict:
    """The `error` object of an error response, after checking its shape."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "target"}, body
    return body["error"]
