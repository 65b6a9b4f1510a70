"""Address providers: put a traffic group's floating addresses on this host, and take them off.

`loopback` needs no privilege: every 127.0.0.0/8 address is already local on Linux, so there is
nothing to add (the lab's default). `linux` adds the address to an interface through netlink
(pyroute2) and announces it with gratuitous ARP so that neighbours send to this host at once.
"""

import contextlib
import errno
import ipaddress
import logging
import socket
import struct
from pathlib import Path
from typing import Protocol

log = logging.getLogger("tandem.addresses")

GARP_COUNT = 3


class AddressProvider(Protocol):
    """Blocking calls: the failover process runs them in a worker thread."""

    def add(self, address: str) -> None: ...

    def remove(self, address: str) -> None: ...

    def announce(self, address: str) -> None: ...


class LoopbackAddresses:
    """Addresses in 127.0.0.0/8 (or ::1): local already, nothing to do but check."""

    def add(self, address: str) -> None:
        if not ipaddress.ip_address(address).is_loopback:
            raise ValueError(f"{address} is not a loopback address: the loopback provider serves 127.0.0.0/8 only")

    def remove(self, address: str) -> None:
        pass

    def announce(self, address: str) -> None:
        pass


class LinuxAddresses:
    """Addresses on a Linux interface (host prefix), announced by gratuitous ARP. Needs CAP_NET_ADMIN."""

    def __init__(self, interface: str) -> None:
        from pyroute2 import IPRoute  # only where addresses move: it is slow to import

        self.interface = interface
        with IPRoute() as ipr:
            found = ipr.link_lookup(ifname=interface)
        if not found:
            raise ValueError(f"no interface {interface!r}")
        self._index = found[0]

    def add(self, address: str) -> None:
        from pyroute2 import IPRoute
        from pyroute2.netlink.exceptions import NetlinkError

        ip = ipaddress.ip_address(address)
        with IPRoute() as ipr:
            try:
                ipr.addr("add", index=self._index, address=address, prefixlen=ip.max_prefixlen)
            except NetlinkError as error:
                if error.code != errno.EEXIST:
                    raise
        self.announce(address)
        log.info("added %s to %s", address, self.interface)

    def remove(self, address: str) -> None:
        from pyroute2 import IPRoute
        from pyroute2.netlink.exceptions import NetlinkError

        ip = ipaddress.ip_address(address)
        with IPRoute() as ipr:
            try:
                ipr.addr("del", index=self._index, address=address, prefixlen=ip.max_prefixlen)
            except NetlinkError as error:
                if error.code not in (errno.EADDRNOTAVAIL, errno.ENOENT, errno.ESRCH):
                    raise
        log.info("removed %s from %s", address, self.interface)

    def announce(self, address: str) -> None:
        """Gratuitous ARP, request and reply forms, a few times: neighbours update their caches."""
        if ipaddress.ip_address(address).version != 4:
            return
        mac = bytes.fromhex(Path(f"/sys/class/net/{self.interface}/address").read_text().strip().replace(":", ""))
        ip = socket.inet_aton(address)
        broadcast = b"\xff" * 6
        frames = []
        for op, target_mac in ((1, b"\x00" * 6), (2, broadcast)):
            arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, op, mac, ip, target_mac, ip)
            frames.append(broadcast + mac + struct.pack("!H", 0x0806) + arp)
        with contextlib.closing(socket.socket(socket.AF_PACKET, socket.SOCK_RAW)) as raw:
            raw.bind((self.interface, 0))
            for _ in range(GARP_COUNT):
                for frame in frames:
                    raw.send(frame)


def provider(kind: str, interface: str | None) -> AddressProvider:
    """The provider `tandem serve --addresses` names."""
    if kind == "loopback":
        return LoopbackAddresses()
    if kind == "linux":
        if not interface:
            raise ValueError("the linux address provider needs --interface")
        return LinuxAddresses(interface)
    raise ValueError(f"unknown address provider {kind!r}: loopback or linux")
