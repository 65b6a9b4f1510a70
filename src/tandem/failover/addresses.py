"""Address providers: put a traffic group's floating addresses on this host, and take them off.

`loopback` needs no privilege: every 127.0.0.0/8 address is already local on Linux, so there is
nothing to add (the lab's default). `linux` adds the address to an interface through netlink
(pyroute2) and announces it so that neighbours send to this host at once: gratuitous ARP for IPv4,
unsolicited neighbour advertisements for IPv6 (added without duplicate address detection, which would keep
it unusable for a second: the address is this device's by the failover rule).
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
IFA_F_NODAD = 0x02
ALL_NODES = "ff02::1"


class AddressProvider(Protocol):
    """Blocking calls: the failover process runs them in a worker thread."""

    shares_host: bool
    """The devices share one network stack (the lab on loopback): a standby must not listen on the floating
    addresses, the active device would share its connections with it."""

    def add(self, address: str) -> None: ...

    def remove(self, address: str) -> None: ...

    def announce(self, address: str) -> None: ...


class LoopbackAddresses:
    """Addresses in 127.0.0.0/8 (or ::1): local already, nothing to do but check."""

    shares_host = True

    def add(self, address: str) -> None:
        if not ipaddress.ip_address(address).is_loopback:
            raise ValueError(f"{address} is not a loopback address: the loopback provider serves 127.0.0.0/8 only")

    def remove(self, address: str) -> None:
        pass

    def announce(self, address: str) -> None:
        pass


class LinuxAddresses:
    """Addresses on a Linux interface (host prefix), announced by gratuitous ARP or unsolicited neighbour
    advertisements. Needs CAP_NET_ADMIN and CAP_NET_RAW."""

    shares_host = False

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
                ipr.addr("add", index=self._index, address=address, prefixlen=ip.max_prefixlen,
                         **({"flags": IFA_F_NODAD} if ip.version == 6 else {}))
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
        """Gratuitous ARP (request and reply forms) or unsolicited neighbour advertisements, a few times:
        neighbours update their caches."""
        mac = bytes.fromhex(Path(f"/sys/class/net/{self.interface}/address").read_text().strip().replace(":", ""))
        if ipaddress.ip_address(address).version == 6:
            self._advertise(address, mac)
            return
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

    def _advertise(self, address: str, mac: bytes) -> None:
        """Unsolicited neighbour advertisements (RFC 4861 7.2.6) to all nodes: override set, this interface's
        link-layer address; the kernel computes the ICMPv6 checksum."""
        target = ipaddress.IPv6Address(address).packed
        advert = struct.pack("!BBHI", 136, 0, 0, 0x20000000) + target + struct.pack("!BB", 2, 1) + mac
        with contextlib.closing(socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)) as raw:
            raw.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
            raw.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, self._index)
            for _ in range(GARP_COUNT):
                raw.sendto(advert, (ALL_NODES, 0, 0, self._index))


def provider(kind: str, interface: str | None) -> AddressProvider:
    """The provider `tandem serve --addresses` names."""
    if kind == "loopback":
        return LoopbackAddresses()
    if kind == "linux":
        if not interface:
            raise ValueError("the linux address provider needs --interface")
        return LinuxAddresses(interface)
    raise ValueError(f"unknown address provider {kind!r}: loopback or linux")
