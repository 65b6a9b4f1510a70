"""The SDK's keep-alive connection pool against a small local HTTP server (no tandem daemon)."""

import http.server
import json
import threading
import time
from collections.abc import Iterator

import pytest

from backends import http_server
from tandem.sdk import Client, TandemError, transport


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    connections: list[int]
    paths: list[str]

    def setup(self) -> None:
        super().setup()
        self.connections.append(1)

    def _reply(self, body: dict, *, close: bool = False, drop: bool = False) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        if close:
            self.send_header("connection", "close")
        self.end_headers()
        self.wfile.write(data)
        if drop:  # close after answering, without saying so: an idle keep-alive connection going away
            self.close_connection = True

    def _handle(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        self.paths.append(f"{self.command} {self.path}")
        if self.path.endswith("/slow"):
            time.sleep(1.0)
        self._reply({"path": self.path, "body": body.decode()}, close=self.path.endswith("/close"),
                    drop=self.path.endswith("/drop"))

    do_GET = do_POST = do_DELETE = _handle

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, list[int], list[str]]]:
    connections: list[int] = []
    paths: list[str] = []
    with http_server(type("Handler", (_Handler,), {"connections": connections, "paths": paths})) as url:
        yield url, connections, paths


def test_one_keep_alive_connection(server: tuple[str, list[int], list[str]]) -> None:
    url, connections, _ = server
    with Client(url, token="t") as client:
        for _ in range(20):
            assert client.request("GET", "/api/ok")["path"] == "/api/ok"
        assert client.request("POST", "/api/ok", json={"a": 1})["body"] == '{"a":1}'
        client.close()
    assert len(connections) == 1


def test_connection_close_and_silent_drop_reconnect(server: tuple[str, list[int], list[str]]) -> None:
    url, connections, _ = server
    client = Client(url, token="t")
    client.request("GET", "/api/close")
    client.request("GET", "/api/drop")
    time.sleep(0.1)
    assert client.request("POST", "/api/ok", json={})["path"] == "/api/ok"
    client.close()
    assert len(connections) == 3


def test_stale_connection_is_retried_only_when_safe(
    server: tuple[str, list[int], list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _, paths = server
    monkeypatch.setattr(transport, "_dropped", lambda sock: False)  # miss the drop: hit the race
    client = Client(url, token="t")
    client.request("GET", "/api/drop")
    time.sleep(0.1)
    assert client.request("GET", "/api/ok")["path"] == "/api/ok"  # retried on a new connection
    client.request("GET", "/api/drop")
    time.sleep(0.1)
    with pytest.raises(TandemError) as err:
        client.request("POST", "/api/ok", json={})  # not retried: it might have been applied
    assert err.value.code == "connection_error"
    client.close()
    assert paths.count("POST /api/ok") == 0


def test_timeout_is_a_connection_error(server: tuple[str, list[int], list[str]]) -> None:
    url, _, _ = server
    client = Client(url, token="t", timeout=0.2)
    with pytest.raises(TandemError) as err:
        client.request("GET", "/api/slow")
    assert err.value.code == "connection_error"
    assert "timed out" in err.value.message and url in err.value.message
    assert client.request("GET", "/api/slow", timeout=3)["path"] == "/api/slow"
    client.close()


def test_url_prefix_and_query(server: tuple[str, list[int], list[str]]) -> None:
    url, _, paths = server
    client = Client(url + "/device1/", token="t")
    client.request("GET", "/api/pools", params={"name": "web*", "limit": 5})
    client.request("GET", "/api/pools?limit=5&after=x", params={"fields": "name"})
    client.request("DELETE", "/api/ok")
    client.close()
    assert paths == ["GET /device1/api/pools?name=web%2A&limit=5",
                     "GET /device1/api/pools?limit=5&after=x&fields=name",
                     "DELETE /device1/api/ok"]


def test_threads_share_one_client(server: tuple[str, list[int], list[str]]) -> None:
    url, connections, paths = server
    client = Client(url, token="t")
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(25):
                client.request("GET", "/api/ok")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    client.close()
    assert not errors
    assert len(paths) == 100 and len(connections) <= 4
