#!/usr/bin/env python3
"""Failover under load (the load run of the failover benchmark): a pair of devices in network namespaces at
the default timers (heartbeats every 0.2 s, 1.0 s timeout; the lab of tests/netns/netlab.py), a active,
b standby, a client host in front of the virtual server 198.18.0.100:8080.

While 10,000-operation batches are applied back to back on the active (monitors created, pools using
them created, the pools deleted, the monitors deleted, again):

1. for --seconds: a single pool created every 50 ms beside them, the client asking the virtual server
   every 0.1 s (it must always be the active that answers), and b's network namespace capturing the
   active's heartbeats off the wire (AF_PACKET, kernel timestamps) to time the gaps between them;
2. then, for half as long, the client's requests per second at full speed (8 at a time, a connection
   each), against the same measured idle for --idle seconds in between.

The lab's backends and client stand for other hosts: they run at the data plane's priority (netlab).
Needs root and iproute2. Progress on stderr; last, one JSON line: heartbeat_gap_max_ms and
heartbeat_gap_p99_ms (gaps between the active's heartbeats arriving at the standby, phase 1),
heartbeats, heartbeats_sent_late (by the active's own clock: over half an interval late), false_dead
(times the standby judged the live active dead), load_transitions (transitions on either device, both
phases), create_p50_under_batch_ms / create_p99_under_batch_ms (the single creates), creates, batches,
batch_median_s, dataplane_idle_rps, dataplane_under_batch_rps, dataplane_under_batch_ratio, unanswered
(requests answered by nobody or by the standby, both phases), machine.

    .venv/bin/python bench/load.py [--seconds 60] [--idle 10]
"""

import argparse
import ctypes
import itertools
import json
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import machine, percentile

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "netns"))

import netlab  # noqa: E402

BATCH = 10_000
CREATE_EVERY = 0.05
POLL = 0.1
ETH_P_ALL = 0x0003
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SO_ATTACH_FILTER = 26
_FILTERS: list = []


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def count(lab: netlab.Lab, seconds: float, concurrency: int = 8) -> subprocess.Popen:
    """The client host counting answers of the virtual server for `seconds`, `concurrency` requests at a time
    (a process of its own)."""
    return subprocess.Popen(["ip", "netns", "exec", lab.ns["c"].name, sys.executable, str(Path(netlab.__file__)),
                             "--count", str(seconds), "--concurrency", str(concurrency)],
                            stdout=subprocess.PIPE, text=True)


def poll(lab: netlab.Lab, seconds: float) -> subprocess.Popen:
    """The client host asking the virtual server about every `POLL` seconds, one request at a time."""
    return subprocess.Popen(["ip", "netns", "exec", lab.ns["c"].name, sys.executable, str(Path(netlab.__file__)),
                             "--count", str(seconds), "--concurrency", "1", "--pause", str(POLL)],
                            stdout=subprocess.PIPE, text=True)


def counted(process: subprocess.Popen) -> dict[str, int]:
    out, _ = process.communicate()
    return json.loads(out)


def heartbeat_filter(source: str, port: int) -> bytes:
    """A classic BPF program (struct sock_fprog) keeping only IPv4 UDP frames from `source` to `port`: the
    capture sees the heartbeats alone, not the sync traffic that would overflow its buffer."""
    source_ip = struct.unpack("!I", socket.inet_aton(source))[0]
    program = [  # (code, jt, jf, k)
        (0x28, 0, 0, 12), (0x15, 0, 7, 0x0800),   # ldh [12]; ethertype IPv4, else drop
        (0x30, 0, 0, 23), (0x15, 0, 5, 17),       # ldb [23]; protocol UDP, else drop
        (0x20, 0, 0, 26), (0x15, 0, 3, source_ip),  # ld [26]; source address, else drop
        (0xB1, 0, 0, 14),                          # ldxb 4*([14]&0xf): the IP header's length
        (0x48, 0, 0, 16), (0x15, 0, 1, port),     # ldh [x+16]: the UDP destination port, else drop
        (0x06, 0, 0, 65535), (0x06, 0, 0, 0),     # accept; drop
    ]
    code = b"".join(struct.pack("HBBI", *instruction) for instruction in program)
    buffer = ctypes.create_string_buffer(code)
    _FILTERS.append(buffer)  # the kernel copies it at attach time; keep it alive until then
    return struct.pack("HL", len(program), ctypes.addressof(buffer))


def capture_heartbeats(source: str, port: int, seconds: float) -> list[float]:
    """Arrival times (the kernel's receive timestamps, in seconds) of UDP datagrams from `source` to `port`
    on eth0 (run inside a namespace): however late this thread reads them."""
    arrivals = []
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)) as raw:
        raw.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, heartbeat_filter(source, port))
        raw.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        raw.bind(("eth0", 0))
        raw.settimeout(0.1)
        wanted = socket.inet_aton(source)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                frame, ancillary, _, _ = raw.recvmsg(2048, 64)
            except TimeoutError:
                continue
            if frame[12:14] != b"\x08\x00" or frame[23] != 17 or frame[26:30] != wanted:  # IPv4, UDP, from source
                continue
            header = (frame[14] & 0x0F) * 4
            (destination,) = struct.unpack("!H", frame[14 + header + 2:14 + header + 4])
            stamps = [data for level, kind, data in ancillary if (level, kind) == (socket.SOL_SOCKET, SO_TIMESTAMPNS)]
            if destination == port and stamps:
                seconds_part, nanoseconds = struct.unpack("qq", stamps[0][:16])
                arrivals.append(seconds_part + nanoseconds / 1e9)
    return arrivals


def batches() -> list[list[dict]]:
    monitors = [{"action": "create", "resource": "monitors", "name": f"m{i}", "body": {"type": "tcp"}}
                for i in range(BATCH)]
    pools = [{"action": "create", "resource": "pools", "name": f"p{i}", "body": {"monitor": f"m{i}"}}
             for i in range(BATCH)]
    return [monitors, pools, [{"action": "delete", "resource": "pools", "name": op["name"]} for op in pools],
            [{"action": "delete", "resource": "monitors", "name": op["name"]} for op in monitors]]


class Load:
    """10,000-operation batches back to back on the active (and, optionally, a single create every 50 ms)."""

    PLAN = itertools.count()
    """Where the batches are in their cycle (shared by the phases: each goes on where the last stopped)."""

    def __init__(self, lab: netlab.Lab, creates: bool) -> None:
        self.batch_api = netlab.Api(netlab.Namespace(lab.a.ns.name), lab.a.url, netlab.ADMIN_PASSWORD, timeout=120)
        self.create_api = netlab.Api(netlab.Namespace(lab.a.ns.name), lab.a.url, netlab.ADMIN_PASSWORD, timeout=120)
        self.batch_times: list[float] = []
        self.create_times: list[float] = []
        self._stop = threading.Event()
        self._workers = [threading.Thread(target=self._batches)]
        if creates:
            self._workers.append(threading.Thread(target=self._creates))
        self._created = itertools.count()

    def __enter__(self) -> "Load":
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join()

    def _batches(self) -> None:
        plan = batches()
        while not self._stop.is_set():
            i = next(self.PLAN)
            started = time.monotonic()
            netlab.check(self.batch_api.post("/api/batch", json={"operations": plan[i % 4]}), 200)
            self.batch_times.append(time.monotonic() - started)

    def _creates(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            netlab.check(self.create_api.post("/api/pools", json={"name": f"single-{next(self._created)}"}), 201)
            self.create_times.append(time.monotonic() - started)
            time.sleep(max(0.0, CREATE_EVERY - (time.monotonic() - started)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="of the first phase (the second: half)")
    parser.add_argument("--idle", type=float, default=10.0)
    args = parser.parse_args()
    if netlab.available() is not None:
        sys.exit(f"bench/load.py: {netlab.available()}")
    with tempfile.TemporaryDirectory(prefix="tandem-load-") as work, netlab.Lab(Path(work)) as lab:
        log("formed: a active, b standby")
        events_before = {name: len(lab.hosts[name].events()) for name in ("a", "b")}
        late_before = lab.a.failover()["heartbeat"]["late"]
        heartbeats = lab.b.ns.submit(capture_heartbeats, netlab.ADDR["a"], netlab.MGMT_PORT + 1, args.seconds)
        with Load(lab, creates=True) as first:
            polled = counted(poll(lab, args.seconds))
            arrivals = heartbeats.result()
        log(f"phase 1: {len(first.batch_times)} batches, {len(first.create_times)} creates, polled {polled}")
        idle = counted(count(lab, args.idle))
        log(f"idle: {idle}")
        with Load(lab, creates=False) as second:
            under_load = counted(count(lab, args.seconds / 2))
        log(f"phase 2: {len(second.batch_times)} batches, client {under_load}")
        events = {name: lab.hosts[name].events()[events_before[name]:] for name in ("a", "b")}
        late = lab.a.failover()["heartbeat"]["late"] - late_before
        log(f"events during the load: {events}")
        gaps = [(later - earlier) * 1000 for earlier, later in itertools.pairwise(arrivals)]
        creates = [t * 1000 for t in first.create_times]
        idle_rps = sum(idle.values()) / args.idle
        load_rps = under_load.get("a", 0) / (args.seconds / 2)
        figures = {
            "heartbeat_gap_max_ms": round(max(gaps), 1) if gaps else None,
            "heartbeat_gap_p99_ms": round(percentile(gaps, 0.99), 1) if len(gaps) > 100 else None,
            "heartbeats": len(arrivals),
            "heartbeats_sent_late": late,
            "false_dead": sum(1 for e in events["b"] if e["to_state"] == "active"),
            "load_transitions": len(events["a"]) + len(events["b"]),
            "create_p50_under_batch_ms": round(percentile(creates, 0.5), 1),
            "create_p99_under_batch_ms": round(percentile(creates, 0.99), 1),
            "creates": len(creates),
            "batches": len(first.batch_times) + len(second.batch_times),
            "batch_median_s": round(statistics.median(first.batch_times + second.batch_times), 3),
            "dataplane_idle_rps": round(idle_rps, 1),
            "dataplane_under_batch_rps": round(load_rps, 1),
            "dataplane_under_batch_ratio": round(load_rps / idle_rps, 3) if idle_rps else None,
            "unanswered": sum(n for host, n in {**polled, **under_load}.items() if host != "a"),
            "seconds": args.seconds,
            "machine": machine(),
        }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
