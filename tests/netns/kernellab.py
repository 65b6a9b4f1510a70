"""A routed topology for the kernel engine's tests: a client, a device, and a backends host, each in a network
namespace of its own, the device routing between the client's network (10.71.0.0/24) and the backends'
(10.72.0.0/24).

    client 10.71.0.2 ── eth0 │ device 10.71.0.1 (+ the virtual address 10.71.0.100) │ 10.72.0.1 ── backends
                                                                                       10.72.0.11, 10.72.0.12

The device's `NftablesEngine` runs in this process, on an event loop of its own whose thread entered the
device's namespace (the `nft` it runs are that namespace's). Each backend address serves tcp and udp on
`BACKEND_PORT`, answering `NAME CLIENT-ADDRESS` (tcp: to every line it reads, until the client closes; udp: to
every datagram), so a client reads which member it reached and from which address the member saw it come.
Root, iproute2 and nft are needed.
"""

import asyncio
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from netlab import Namespace, kill_group, sh

T = TypeVar("T")

CLIENT, DEVICE, DEVICE_BACKSIDE, VIP = "10.71.0.2", "10.71.0.1", "10.72.0.1", "10.71.0.100"
MEMBERS = {"m1": "10.72.0.11", "m2": "10.72.0.12"}
BACKEND_PORT = 9000

BACKEND = """
import socket, sys, threading
name, address, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
def serve_tcp(connection, peer):
    with connection, connection.makefile("rb") as lines:
        for _ in lines:
            connection.sendall(f"{name} {peer[0]}\\n".encode())
listener = socket.socket(); listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind((address, port)); listener.listen(256)
datagrams = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); datagrams.bind((address, port))
def serve_udp():
    while True:
        _, peer = datagrams.recvfrom(2048)
        datagrams.sendto(f"{name} {peer[0]}".encode(), peer)
threading.Thread(target=serve_udp, daemon=True).start()
while True:
    connection, peer = listener.accept()
    threading.Thread(target=serve_tcp, args=(connection, peer), daemon=True).start()
"""

_labs = itertools.count(1)


def unavailable() -> str | None:
    """Why the kernel lab cannot run here (None: it can)."""
    if os.geteuid() != 0:
        return "network namespaces and nftables need root"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


class KernelLab:
    """The three namespaces, the backends, and an event loop in the device's namespace."""

    def __init__(self) -> None:
        prefix = f"tk{os.getpid()}x{next(_labs)}"
        self.names = {role: f"{prefix}{role}" for role in ("client", "device", "backends")}
        self.client = Namespace(self.names["client"])
        self._device = Namespace(self.names["device"])
        self.backends: dict[str, subprocess.Popen] = {}
        self.loop = asyncio.new_event_loop()

    def build(self) -> "KernelLab":
        names = self.names
        for name in names.values():
            sh("ip", "netns", "add", name)
            sh("ip", "-n", name, "link", "set", "lo", "up")
        sh("ip", "link", "add", "eth0", "netns", names["client"], "type", "veth", "peer", "name", "front",
           "netns", names["device"])
        sh("ip", "link", "add", "eth0", "netns", names["backends"], "type", "veth", "peer", "name", "back",
           "netns", names["device"])
        for name, link, addresses in ((names["client"], "eth0", [CLIENT]), (names["device"], "front", [DEVICE, VIP]),
                                      (names["device"], "back", [DEVICE_BACKSIDE]),
                                      (names["backends"], "eth0", list(MEMBERS.values()))):
            for address in addresses:
                sh("ip", "-n", name, "addr", "add", f"{address}/24", "dev", link)
            sh("ip", "-n", name, "link", "set", link, "up")
        sh("ip", "-n", names["client"], "route", "add", "default", "via", DEVICE)
        sh("ip", "-n", names["backends"], "route", "add", "default", "via", DEVICE_BACKSIDE)
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=names["device"])
        for name in MEMBERS:
            self.start_backend(name)
        self._device.submit(self.loop.run_forever)
        return self

    def start_backend(self, name: str) -> None:
        self.backends[name] = subprocess.Popen(
            ["ip", "netns", "exec", self.names["backends"], sys.executable, "-c", BACKEND, name, MEMBERS[name],
             str(BACKEND_PORT)], start_new_session=True)
        self.client.run(_until_listening, MEMBERS[name])  # (the client reaches the backends through the device)

    def stop_backend(self, name: str) -> None:
        kill_group(self.backends.pop(name), signal.SIGKILL)

    def on_device(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run `coroutine` on the device's event loop (in its namespace), waited for."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def nft(self, *arguments: str) -> str:
        return sh("nft", *arguments, ns=self.names["device"]).stdout

    def close(self) -> None:
        for name in list(self.backends):
            self.stop_backend(name)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._device.close()
        self.client.close()
        for name in self.names.values():
            sh("ip", "netns", "del", name, check=False)


def _until_listening(address: str) -> None:
    for _ in range(200):
        try:
            socket.create_connection((address, BACKEND_PORT), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"no backend listening on {address}:{BACKEND_PORT}")


def ask_tcp(address: str = VIP, port: int = 80, timeout: float = 2.0) -> tuple[str, str]:
    """One new connection, one line: (the member's name, the client address it saw)."""
    with socket.create_connection((address, port), timeout=timeout) as connection:
        connection.sendall(b"hello\n")
        name, seen = connection.makefile("rb").readline().decode().split()
    return name, seen


def ask_udp(address: str = VIP, port: int = 53, timeout: float = 2.0) -> tuple[str, str]:
    """One datagram from a new source port, its answer: (the member's name, the client address it saw)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as datagrams:
        datagrams.settimeout(timeout)
        datagrams.sendto(b"hello", (address, port))
        name, seen = datagrams.recv(2048).decode().split()
    return name, seen
