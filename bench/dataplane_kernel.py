#!/usr/bin/env python3
"""Kernel-engine benchmark, in network namespaces (tests/netns/kernellab.py: a client, a device routing between
the client's network and the backends', a backends host): the same load to the backend reached directly (routed
by the device, no translation; its second address) and through the device's virtual server (a pool of its first
address), each engine side by side in one run, alternating for ROUNDS rounds; figures are medians.

- nftables engine (the kernel translating, `NftablesEngine`), builtin engine (Tandem's proxy, here in this
  process's event loop: bench/dataplane.py measures it in its own process with uvloop) and HAProxy engine
  (`HaproxyEngine`, its own processes), each serving its own virtual server (ports 80, 81, 82) of one member,
  nginx on the backends host;
- HTTP over keep-alive connections (wrk -c CONNS) and over a new connection per request (`Connection: close`);
- UDP requests and answers (a small client keeping WINDOW datagrams in flight, the backends host answering
  each with its name) to the member directly and through the nftables engine's UDP virtual server;
- the CPU time of this process, which runs the nftables engine, per request served by the kernel (≈ 0: the
  kernel translates, Tandem only writes the rules);
- wrk's failed requests while the ruleset changes CHANGES times under load (weights and methods over two
  members, a second virtual server coming and going);
- with conntrackd installed: a `tandem serve --engine nftables` pair (tests/netns/netlab.py) whose traffic group
  mirrors connections; MIRROR_CONNECTIONS TCP connections open through it, the active device killed (-9) and
  each connection asked to go on, MIRROR_RUNS times (the killed device back as the standby in between).

Prints progress on stderr and, last, one JSON line: nft_ratio, nft_newconn_ratio, nft_cpu_us_per_request,
udp_ratio, ruleset_change_failed (of requests_during_changes), builtin_ratio, builtin_newconn_ratio,
haproxy_ratio, haproxy_newconn_ratio, each engine's and direct's rps (`X_rps`), mirrored_survival (the mean share
of connections that kept going over the runs; its minimum beside it; null without conntrackd), rounds, seconds,
connections, machine.

    .venv/bin/python bench/dataplane_kernel.py [--seconds 5] [--rounds 3] [--connections 50] [--changes 50]
                                               [--mirror-runs 10] [--mirror-connections 100]
    (as root; apt-get install nftables conntrackd nginx-light wrk haproxy)
"""

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import machine
from traffic import read_wrk, wrk_command

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "netns"))

import netlab  # noqa: E402
from kernellab import BACKEND, BACKEND_PORT, MEMBERS, VIP, KernelLab  # noqa: E402

from tandem.dataplane.engine import BuiltinEngine, ServedMember, ServedPool, ServedVirtual  # noqa: E402
from tandem.dataplane.haproxy_engine import HaproxyEngine  # noqa: E402
from tandem.dataplane.nftables_engine import NftablesEngine  # noqa: E402

HTTP_PORT = 80
"""nginx's port on each backend address."""
PORTS = {"nftables": 80, "builtin": 81, "haproxy": 82}
UDP_PORT = 53
WINDOW = 32
NGINX = """worker_processes 1; pid {work}/nginx.pid; error_log {work}/nginx.err; daemon on;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 1000000;
  client_body_temp_path {work}; proxy_temp_path {work}; fastcgi_temp_path {work}; uwsgi_temp_path {work};
  scgi_temp_path {work};
  server {{ listen {first}:{port}; listen {second}:{port}; default_type text/plain; return 200 "ok\\n"; }} }}
"""


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def member_pool(name: str, port: int, weights: tuple[int, ...] = (1,), lb_method: str = "round-robin") -> ServedPool:
    members = tuple(ServedMember(address, port, weight=weight)
                    for address, weight in zip(MEMBERS.values(), weights, strict=False))
    return ServedPool("Common", name, lb_method=lb_method, members=members)


def virtuals(nft_weights: tuple[int, ...] = (1,), lb_method: str = "round-robin", udp: bool = True,
             extra: bool = False) -> list[ServedVirtual]:
    """The nftables engine's virtual servers: tcp to nginx, udp to the backends' answering servers."""
    out = [ServedVirtual("Common", "web", VIP, PORTS["nftables"], member_pool("web", HTTP_PORT, nft_weights,
                                                                              lb_method))]
    if udp:
        out.append(ServedVirtual("Common", "dns", VIP, UDP_PORT, member_pool("dns", BACKEND_PORT), protocol="udp"))
    if extra:
        out.append(ServedVirtual("Common", "extra", VIP, 8080, member_pool("extra", HTTP_PORT)))
    return out


def wrk_in(lab: KernelLab, url: str, seconds: int, connections: int, close: bool = False):
    command = ["ip", "netns", "exec", lab.names["client"],
               *wrk_command(url, seconds, connections, ("Connection: close",) if close else ())]
    return read_wrk(subprocess.run(command, capture_output=True, text=True, check=True).stdout, url)


def udp_rate(address: str, port: int, seconds: float) -> float:
    """Answers per second to datagrams sent to `address:port`, WINDOW in flight (in the calling thread's
    namespace)."""

    async def run() -> int:
        loop = asyncio.get_running_loop()
        answered = 0
        done = loop.time() + seconds

        class Client(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.DatagramTransport) -> None:
                self.transport = transport
                for _ in range(WINDOW):
                    transport.sendto(b"q")

            def datagram_received(self, data: bytes, addr: object) -> None:
                nonlocal answered
                answered += 1
                if loop.time() < done:
                    self.transport.sendto(b"q")

        transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=(address, port),
                                                           family=socket.AF_INET)
        await asyncio.sleep(seconds)
        transport.close()
        return answered

    return asyncio.run(run()) / seconds


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--mirror-runs", type=int, default=10)
    parser.add_argument("--mirror-connections", type=int, default=100)
    args = parser.parse_args()
    if os.geteuid() != 0 or not all(shutil.which(tool) for tool in ("nft", "nginx", "wrk", "haproxy")):
        raise SystemExit("needs root, nft, nginx, wrk and haproxy (apt-get install nftables nginx-light wrk haproxy)")
    lab = KernelLab().build()
    work = Path(tempfile.mkdtemp(prefix="tandem-bench-kernel-"))
    try:
        (work / "nginx.conf").write_text(NGINX.format(work=work, first=MEMBERS["m1"], second=MEMBERS["m2"],
                                                      port=HTTP_PORT))
        subprocess.run(["ip", "netns", "exec", lab.names["backends"], "nginx", "-c", str(work / "nginx.conf")],
                       check=True)
        nft = lab.on_device(_made(NftablesEngine))
        builtin = lab.on_device(_made(BuiltinEngine))
        haproxy = lab.on_device(_made(HaproxyEngine, work / "haproxy"))
        lab.on_device(nft.apply(virtuals()))
        lab.on_device(builtin.apply([ServedVirtual("Common", "b", VIP, PORTS["builtin"],
                                                   member_pool("b", HTTP_PORT))]))
        lab.on_device(haproxy.apply([ServedVirtual("Common", "h", VIP, PORTS["haproxy"],
                                                   member_pool("h", HTTP_PORT))]))
        # direct to the other address of the same nginx: the client's connections to a member direct and through
        # the virtual server would be one 4-tuple at the member, whose TIME_WAIT then refuses a SYN with the
        # other path's timestamps (PAWS: a 1 s retransmission)
        targets = {"direct": f"http://{MEMBERS['m2']}:{HTTP_PORT}/",
                   **{name: f"http://{VIP}:{port}/" for name, port in PORTS.items()}}
        keep_alive: dict[str, list[float]] = {name: [] for name in targets}
        new_connections: dict[str, list[float]] = {name: [] for name in targets}
        udp: dict[str, list[float]] = {"direct": [], "nftables": []}
        nft_cpu, nft_requests = 0.0, 0
        for round_number in range(args.rounds):
            progress(f"round {round_number + 1}/{args.rounds}")
            for name, url in targets.items():
                for close, results in ((False, keep_alive), (True, new_connections)):
                    before = cpu_seconds()
                    load = wrk_in(lab, url, args.seconds, args.connections, close)
                    if name == "nftables":
                        nft_cpu += cpu_seconds() - before
                        nft_requests += load.requests
                    results[name].append(load.rps)
            udp["direct"].append(lab.client.run(udp_rate, MEMBERS["m2"], BACKEND_PORT, float(args.seconds)))
            udp["nftables"].append(lab.client.run(udp_rate, VIP, UDP_PORT, float(args.seconds)))
        progress(f"{args.changes} ruleset changes under load")
        load = subprocess.Popen(["ip", "netns", "exec", lab.names["client"],
                                 *wrk_command(targets["nftables"], 600, args.connections)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1)
        for n in range(args.changes):
            lab.on_device(nft.apply(virtuals((1 + n % 3, 1), ("round-robin", "random", "source-hash")[n % 3],
                                             extra=n % 2 == 1)))
        time.sleep(1)
        os.kill(load.pid, 2)
        under_changes = read_wrk(load.communicate(timeout=30)[0], targets["nftables"])
        for engine in (nft, builtin, haproxy):
            lab.on_device(engine.stop_all(0))
        survival = None
        if shutil.which("conntrackd"):
            progress(f"{args.mirror_runs} takeovers of a pair mirroring {args.mirror_connections} connections")
            survival = mirrored_survival(args.mirror_runs, args.mirror_connections)
    finally:
        pid_file = work / "nginx.pid"
        if pid_file.exists():
            subprocess.run(["kill", pid_file.read_text().strip()], check=False)
        lab.close()
        shutil.rmtree(work, ignore_errors=True)

    def median(values: list[float]) -> float:
        return statistics.median(values)

    def ratio(results: dict[str, list[float]], name: str) -> float:
        return round(median(results[name]) / median(results["direct"]), 3)

    print(json.dumps({
        "nft_ratio": ratio(keep_alive, "nftables"), "nft_newconn_ratio": ratio(new_connections, "nftables"),
        "nft_cpu_us_per_request": round(nft_cpu / max(1, nft_requests) * 1e6, 3),
        "udp_ratio": ratio(udp, "nftables"),
        "ruleset_change_failed": under_changes.failed, "requests_during_changes": under_changes.requests,
        "builtin_ratio": ratio(keep_alive, "builtin"), "builtin_newconn_ratio": ratio(new_connections, "builtin"),
        "haproxy_ratio": ratio(keep_alive, "haproxy"), "haproxy_newconn_ratio": ratio(new_connections, "haproxy"),
        **{f"{name}_rps": round(median(values)) for name, values in keep_alive.items()},
        **{f"{name}_newconn_rps": round(median(values)) for name, values in new_connections.items()},
        "direct_udp_rps": round(median(udp["direct"])), "nft_udp_rps": round(median(udp["nftables"])),
        "mirrored_survival": round(statistics.mean(survival), 3) if survival else None,
        "mirrored_survival_min": round(min(survival), 3) if survival else None,
        "mirror_runs": args.mirror_runs, "mirror_connections": args.mirror_connections,
        "rounds": args.rounds, "seconds": args.seconds, "connections": args.connections,
        "changes": args.changes, "machine": machine(),
    }))


def mirrored_survival(runs: int, connections: int) -> list[float]:
    """Per run, the share of `connections` established TCP connections through a `tandem serve --engine nftables`
    pair mirroring them (netlab: devices a and b, client c, the member on d) that keep exchanging after kill -9
    of the active device; the killed one comes back as a standby before the next run (the active alternates)."""
    floating, address = "198.18.0.50", "198.18.0.100"
    shares = []
    with tempfile.TemporaryDirectory(prefix="tandem-bench-mirror-") as work:
        lab = netlab.Lab(Path(work), engine="nftables", others=("d",))
        with netlab.formed(lab, addresses=(floating,)) as lab:
            backend = subprocess.Popen(["ip", "netns", "exec", lab.ns["d"].name, sys.executable, "-c", BACKEND, "m1",
                                        netlab.ADDR["d"], "9001"], start_new_session=True)
            try:
                api = lab.a.api
                for host in ("a", "b"):
                    netlab.sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=lab.ns[host].name)
                    netlab.sh("sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_loose=0", ns=lab.ns[host].name)
                netlab.check(api.patch(f"/api/traffic-groups/{netlab.TRAFFIC_GROUP}", json={"mirroring": True}), 200)
                netlab.check(api.post("/api/pools", json={"name": "members", "members": [
                    {"address": netlab.ADDR["d"], "port": 9001}]}), 201)
                netlab.check(api.post("/api/virtuals", json={
                    "name": "tcp", "address": address, "port": 80, "pool": "members", "snat": "automap",
                    "traffic_group": netlab.TRAFFIC_GROUP}), 201)
                lab.wait_in_sync()
                active, standby = "a", "b"
                for run in range(runs):
                    survived = _takeover(lab, lab.hosts[active], lab.hosts[standby], address, connections)
                    shares.append(survived / connections)
                    progress(f"    run {run + 1}: {survived} of {connections} connections kept going")
                    lab.recover(active)
                    active, standby = standby, active
            finally:
                netlab.kill_group(backend)
    return shares


def _takeover(lab: netlab.Lab, active: netlab.Host, standby: netlab.Host, address: str, connections: int) -> int:
    """`connections` opened through `active`, known to `standby`; `active` killed: how many keep going."""
    netlab.wait_until(lambda: _mirrors(active, standby), 30, "both devices mirroring")
    opened = [lab.ns["c"].run(socket.create_connection, (address, 80), 2.0) for _ in range(connections)]
    try:
        for connection in opened:
            connection.settimeout(3.0)
            _exchange(connection)
        netlab.wait_until(lambda: _mirroring(standby).get("external", 0) >= connections, 10,
                          "the connections known to the standby")
        lab.fail(active.name)
        netlab.wait_until(lambda: standby.traffic_group()["state"] == "active", 10, "the standby active")
        return sum(_exchange(connection) for connection in opened)
    finally:
        for connection in opened:
            connection.close()


def _exchange(connection: socket.socket) -> bool:
    """One line sent and its answer read on an open connection."""
    try:
        connection.sendall(b"ping\n")
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = connection.recv(64)
            if not chunk:
                return False
            answer += chunk
        return answer.startswith(b"m1 ")
    except OSError:
        return False


def _mirroring(host: netlab.Host) -> dict:
    [group] = host.api.get("/api/failover/status").json()["traffic_groups"]
    return group["mirroring"] or {}


def _mirrors(active: netlab.Host, standby: netlab.Host) -> bool:
    return (active.traffic_group()["state"] == "active" and standby.traffic_group()["state"] == "standby"
            and all(_mirroring(host).get("running") for host in (active, standby)))


async def _made(engine_class, *arguments):
    """An engine made on the device's event loop (asyncio objects bind to the loop that makes them)."""
    return engine_class(*arguments)


if __name__ == "__main__":
    main()
