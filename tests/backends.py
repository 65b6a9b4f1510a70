"""Tiny real backends for tests, and a client that asks them (or a virtual server in front of them)."""

import socket
import socketserver
import threading


class Backend(socketserver.ThreadingTCPServer):
    """A backend on 127.0.0.1 (a free port) that answers every connection with its name."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, name: str) -> None:
        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.sendall(name.encode())

        super().__init__(("127.0.0.1", 0), Handler)
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
