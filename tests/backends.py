"""Tiny real backends for tests, a client that asks them (or a virtual server in front of them), and an
HTTP(S) server for a handler class."""

import contextlib
import http.server
import socket
import socketserver
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

from tandem.trust.identity import load_or_create


class Backend(socketserver.ThreadingTCPServer):
    """A backend on `host` (127.0.0.1) and `port` (a free one) that answers every connection with its name."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, name: str, host: str = "127.0.0.1", port: int = 0) -> None:
        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.sendall(name.encode())

        super().__init__((host, port), Handler)
        self.port = self.server_address[1]
        threading.Thread(target=self.serve_forever, daemon=True).start()


def ask(address: str, port: int, timeout: float = 0.2) -> str | None:
    """What answers at address:port (None: nothing did within `timeout`)."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(64).decode() or None
    except OSError:
        return None


@contextlib.contextmanager
def http_server(handler: type[http.server.BaseHTTPRequestHandler], tls: ssl.SSLContext | None = None
                ) -> Iterator[str]:
    """`handler` served on 127.0.0.1 (a free port) from a thread, over TLS with the server context `tls`;
    yields the base URL (`http://127.0.0.1:PORT`, or https). Shut down when the block ends."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def fake_device(handler: type[http.server.BaseHTTPRequestHandler], directory: Path) -> Iterator[str]:
    """`handler` served over HTTPS with a device identity of its own (`dev-9`, kept in `directory`), as a
    device that answers admission wrongly would; yields its https URL."""
    identity = load_or_create(directory, "dev-9", ["127.0.0.1"])
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(identity.cert_path, identity.key_path)
    with http_server(handler, tls) as url:
        yield url


def named_http(name: str) -> type[http.server.BaseHTTPRequestHandler]:
    """A handler answering every GET with `name` (and the path asked for, after a space)."""

    class Named(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = f"{name} {self.path}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return Named
