#!/usr/bin/env python3
"""One builtin-engine virtual server in its own process, on uvloop where installed: the thing
bench/dataplane.py measures. Also a tiny keep-alive HTTP backend, for machines without nginx.

    .venv/bin/python bench/dataplane_runner.py proxy --listen 127.0.100.1:8080 --member 127.0.0.1:8081
    .venv/bin/python bench/dataplane_runner.py backend --listen 127.0.0.1:8081

Prints `ready` on stdout once listening; runs until SIGTERM/SIGINT.
"""

import argparse
import asyncio
import signal
import sys

from tandem.dataplane import Balancer, PoolStats, Stats, VirtualServerProxy
from tandem.models.fields import parse_host_port

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n"


class TinyHttp(asyncio.Protocol):
    """Answers every request head (GET, no body) on a keep-alive connection with `ok`."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        count = self.buffer.count(b"\r\n\r\n")
        if count:
            self.buffer = self.buffer.rpartition(b"\r\n\r\n")[2]
            self.transport.write(ANSWER * count)  # type: ignore[attr-defined]


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    host, port = parse_host_port(args.listen)
    if args.mode == "proxy":
        stats = Stats(pool=PoolStats())
        members = [(*parse_host_port(m), True) for m in args.member]
        balancer = Balancer(args.lb_method, members, connections=stats.pool.current)
        proxy = VirtualServerProxy("/Common/bench", host, port, balancer, stats)
        await proxy.start()
    else:
        server = await loop.create_server(TinyHttp, host, port, reuse_address=True, backlog=1024)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print("ready", flush=True)
    await stop.wait()
    if args.mode == "proxy":
        await proxy.stop(drain_timeout=1)
        print(stats.snapshot(), file=sys.stderr)
    else:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["proxy", "backend"])
    parser.add_argument("--listen", required=True, help="ADDR:PORT")
    parser.add_argument("--member", action="append", default=[], help="ADDR:PORT (proxy; repeatable)")
    parser.add_argument("--lb-method", default="round-robin", choices=["round-robin", "least-connections"])
    parser.add_argument("--asyncio", action="store_true", help="plain asyncio loop, not uvloop")
    args = parser.parse_args()
    if args.mode == "proxy" and not args.member:
        parser.error("proxy needs at least one --member")
    try:
        if args.asyncio:
            raise ImportError
        import uvloop
    except ImportError:
        asyncio.run(serve(args))
    else:
        uvloop.run(serve(args))


if __name__ == "__main__":
    main()
