"""A heartbeat link that loses and delays: a user-space relay between a host's veth and the lab's bridge.

This kernel has no `tc netem`. `impair(lab, host, ...)` takes the host's port off the bridge and puts a relay
(this module run as a script, in the switch namespace) between it and a new bridge port: every frame the
host sends or receives crosses the relay; UDP and VRRP (IP protocol 112) frames, the heartbeats of Tandem and
of keepalived, are each dropped with probability `loss` or held `delay` ± `jitter` seconds; the rest crosses
at once. The hosts' segmentation offloads are turned off (`gso_max_segs 1`), so that the relay reads frames
of the link's size, and the relay computes the TCP and UDP checksums the hosts leave to their veth.

    python impair.py --one IFACE --other IFACE --loss 0.05 --delay 0.02 --jitter 0.02 [--seed N]
"""

import argparse
import contextlib
import heapq
import random
import select
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import netlab

from tandem.failover.trackers import internet_checksum

ETH_P_ALL = 0x0003
IMPAIRED = (17, 112)
"""IP protocols impaired: UDP (Tandem's heartbeats) and VRRP (keepalived's adverts)."""


def _with_checksum(frame: bytes) -> bytes:
    """`frame` with its TCP or UDP checksum computed: a host's veth leaves it to the hardware (checksum offload),
    and a frame read and sent again by this relay would arrive with a wrong one."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00" or frame[23] not in (6, 17):
        return frame
    header = (frame[14] & 0x0F) * 4
    total = struct.unpack("!H", frame[16:18])[0]
    start, end = 14 + header, 14 + total
    at = start + (16 if frame[23] == 6 else 6)
    if end > len(frame) or at + 2 > end:
        return frame
    segment = frame[start:at] + b"\0\0" + frame[at + 2:end]
    pseudo = frame[26:34] + struct.pack("!BBH", 0, frame[23], len(segment))
    value = internet_checksum(pseudo + segment) or (0xFFFF if frame[23] == 17 else 0)
    return frame[:at] + struct.pack("!H", value) + frame[at + 2:]


def _impaired(frame: bytes) -> bool:
    return len(frame) > 23 and frame[12:14] == b"\x08\x00" and frame[23] in IMPAIRED


def _raw(interface: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((interface, 0))
    sock.setblocking(False)
    return sock


def relay(one: str, other: str, loss: float, delay: float, jitter: float, seed: int) -> None:
    """Forward frames between interfaces `one` and `other` for ever, impairing the heartbeats."""
    rng = random.Random(seed)
    first, second = _raw(one), _raw(other)
    across = {first: second, second: first}
    held: list[tuple[float, int, socket.socket, bytes]] = []
    number = 0
    while True:
        wait = max(0.0, held[0][0] - time.monotonic()) if held else None
        ready, _, _ = select.select([first, second], [], [], wait)
        for sock in ready:
            while True:
                try:
                    frame, address = sock.recvfrom(65535)
                except BlockingIOError:
                    break
                if address[2] == socket.PACKET_OUTGOING:  # what this relay sent
                    continue
                frame = _with_checksum(frame)
                if not _impaired(frame):
                    _send(across[sock], frame)
                elif rng.random() >= loss:
                    number += 1
                    due = time.monotonic() + max(0.0, delay + rng.uniform(-jitter, jitter))
                    heapq.heappush(held, (due, number, across[sock], frame))
        now = time.monotonic()
        while held and held[0][0] <= now:
            _, _, sock, frame = heapq.heappop(held)
            _send(sock, frame)


def _send(sock: socket.socket, frame: bytes) -> None:
    """Send a frame; one the interface cannot take now is lost, as on a full link."""
    with contextlib.suppress(BlockingIOError):
        sock.send(frame)


def _sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def impair(lab: netlab.Lab, host: str, loss: float, delay: float, jitter: float, seed: int = 1) -> subprocess.Popen:
    """Put the relay between `host` and the bridge of `lab` (a netlab.Lab); the relay process (kill it to stop)."""
    sw = lab.ns["sw"].name
    port, inner = netlab.BRIDGE_PORT[host], f"r{netlab.BRIDGE_PORT[host]}"
    for attached in lab.attached:
        _sh("ip", "-n", lab.ns[attached].name, "link", "set", "eth0", "gso_max_segs", "1")
    _sh("ip", "-n", sw, "link", "set", port, "nomaster")
    _sh("ip", "-n", sw, "link", "add", inner, "type", "veth", "peer", "name", f"{inner}b")
    _sh("ip", "-n", sw, "link", "set", f"{inner}b", "master", "br0")
    for interface in (inner, f"{inner}b"):
        _sh("ip", "-n", sw, "link", "set", interface, "up")
    return subprocess.Popen(["ip", "netns", "exec", sw, sys.executable, str(Path(__file__).resolve()), "--one", port,
                             "--other", inner, "--loss", str(loss), "--delay", str(delay), "--jitter", str(jitter),
                             "--seed", str(seed)], start_new_session=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", required=True)
    parser.add_argument("--other", required=True)
    parser.add_argument("--loss", type=float, default=0.0)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--jitter", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    netlab.outside_host()  # it stands for the network: ahead of the hosts' work
    relay(args.one, args.other, args.loss, args.delay, args.jitter, args.seed)


if __name__ == "__main__":
    main()
