"""A tiny HTTP backend for the lab's demo pool: `python -m tandem.lab.backends --name backend-1
--listen 127.0.0.1:0 --port-file FILE`.

Every GET (or HEAD) gets `200` and the body `NAME` then `host: HOSTNAME` (two lines), so that
`curl` through the virtual server shows which backend answered. With port 0 it picks a free port;
the port it listens on is written to `--port-file` once it accepts connections.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys
import tempfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def body_of(name: str) -> bytes:
    return f"{name}\nhost: {socket.gethostname()}\n".encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def _handler(name: str) -> type[BaseHTTPRequestHandler]:
    body = body_of(name)

    class Handler(BaseHTTPRequestHandler):
        def version_string(self) -> str:
            return "tandem-lab-backend"

        def _answer(self, send_body: bool) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Backend", name)
            self.end_headers()
            if send_body:
                self.wfile.write(body)

        def do_GET(self) -> None:
            self._answer(True)

        def do_HEAD(self) -> None:
            self._answer(False)

        def log_message(self, format: str, *args: object) -> None:  # the monitor asks every second: no log
            pass

    return Handler


def _write_port(path: Path, port: int) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".port-", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(f"{port}\n")
    os.replace(tmp, path)


def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not ADDRESS:PORT")
    return host.strip("[]"), int(port)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tandem.lab.backends", description=__doc__.split("\n")[0])
    parser.add_argument("--name", required=True, help="What to answer, e.g. backend-1.")
    parser.add_argument("--listen", type=_listen, default=("127.0.0.1", 0), help="ADDRESS:PORT (port 0: any free)")
    parser.add_argument("--port-file", type=Path, help="Where to write the port once listening.")
    args = parser.parse_args(argv)
    address, port = args.listen
    server_class = _Server
    if ":" in address:
        server_class = type("_Server6", (_Server,), {"address_family": socket.AF_INET6})
    try:
        server = server_class((address, port), _handler(args.name))
    except OSError as exc:
        print(f"{args.name}: cannot listen on {address}:{port}: {exc}", file=sys.stderr)
        return 1
    bound = server.server_address[1]
    if args.port_file is not None:
        _write_port(args.port_file, bound)
    print(f"{args.name} listening on {address}:{bound}", flush=True)
    signal.signal(signal.SIGTERM, _interrupt)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever(poll_interval=0.5)
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
