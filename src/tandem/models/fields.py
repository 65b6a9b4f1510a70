"""Field types shared by every resource: names, addresses, ports, references."""

import functools
import ipaddress
import re
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
NAME_RE = re.compile(NAME_PATTERN)

Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
"""An object name: letters, digits, `_ . -`, starting with a letter or digit, at most 63 characters.
No slashes, no `..` prefix, no spaces: names are safe in URLs and file paths."""

Port = Annotated[int, Field(ge=1, le=65535, strict=True)]
Description = Annotated[str, StringConstraints(max_length=255)]


INTERFACE_NAME_RE = re.compile(r"(?!\.\.?\Z)[\x21-\x7e]{1,15}")
"""A Linux interface name as an IPv6 scope may hold: 1 to 15 printable ASCII characters, not `.` nor `..`
(`/`, `:` and `%` are refused apart)."""


@functools.lru_cache(maxsize=1 << 16)
def _normalize_address(value: str) -> str:
    """`value` as an address in its compressed form (ValueError if it is none). Remembered: an agent checks
    each endpoint's address several times (its Service, then each pool it lands in), and parsing took a
    fifth of the agent's time (bench/agent.py, initial_10k_s)."""
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 or IPv6 address") from None
    scope = getattr(address, "scope_id", None)
    if scope is not None and (not INTERFACE_NAME_RE.fullmatch(scope) or any(c in scope for c in "/:%")):
        raise ValueError(f"{value!r} has a scope that is not an interface name (1-15 printable characters, "
                         "no '/', ':' or '%')")
    return address.compressed


IPAddress = Annotated[str, StringConstraints(strict=True, max_length=64), AfterValidator(_normalize_address)]
"""An IPv4 or IPv6 address, stored in its compressed form; an IPv6 one may carry a scope (`fe80::1%eth0`),
which must be an interface name."""


def _check_reference(value: str) -> str:
    parts = value.split("/")
    if len(parts) == 1 and NAME_RE.fullmatch(value):
        return value
    if len(parts) == 3 and parts[0] == "" and NAME_RE.fullmatch(parts[1]) and NAME_RE.fullmatch(parts[2]):
        return value
    raise ValueError(f"{value!r} is not a name or a /partition/name reference")


Reference = Annotated[str, StringConstraints(strict=True, max_length=130), AfterValidator(_check_reference)]
"""A reference to another object: `name` (same partition) or `/partition/name`."""


def resolve_reference(partition: str, reference: str) -> tuple[str, str]:
    """The (partition, name) a reference made from `partition` points at."""
    if reference.startswith("/"):
        _, ref_partition, name = reference.split("/")
        return ref_partition, name
    return partition, reference


DNS_LABEL_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
HTTPS_URL_RE = re.compile(r"https://(?P<host>\[[^\]/]*\]|[^\[\]/:]*)(?::(?P<port>[0-9]{1,5}))?/?")


def parse_https_url(value: str) -> tuple[str, int]:
    """`https://HOST[:PORT][/]` into its host (a bracketed IPv6 address without brackets) and port (443 if
    none); ValueError unless HOST is an IPv4 address, a bracketed IPv6 address or a DNS name (labels of 1 to 63
    letters, digits and `-`) and PORT is 1-65535."""
    match = HTTPS_URL_RE.fullmatch(value)
    if match is None:
        raise ValueError(f"{value!r} is not https://HOST[:PORT]")
    host, port = match["host"], int(match["port"] or 443)
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is out of range 1-65535")
    if host.startswith("["):
        try:
            address = ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
        if address.scope_id is not None:
            raise ValueError(f"{host!r} has a scope, which a URL's IPv6 address may not have")
        return str(address), port
    labels = host.split(".")
    if re.fullmatch("[0-9]+", labels[-1]):  # a number last: an IPv4 address or nothing
        try:
            return str(ipaddress.IPv4Address(host)), port
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv4 address") from None
    if len(host) > 253 or not all(DNS_LABEL_RE.fullmatch(label) for label in labels):
        raise ValueError(f"{host!r} is not a host name (labels of 1-63 letters, digits and '-')")
    return host, port


def _check_https_url(value: str) -> str:
    parse_https_url(value)
    return value


HttpsUrl = Annotated[str, StringConstraints(strict=True, max_length=300), AfterValidator(_check_https_url)]
"""`https://HOST[:PORT]`, as `parse_https_url` checks it."""


def member_key(address: str, port: int) -> str:
    """The identifier of a pool member inside its pool: `address:port` (IPv6 in brackets)."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def parse_member_key(key: str) -> tuple[str, int]:
    """Split `address:port` (or `[v6]:port`) into a normalized address and a port; ValueError if malformed."""
    return parse_host_port(key)


def host_port(address: str, port: int) -> str:
    """`ADDR:PORT` (IPv6 as `[ADDR]:PORT`): the form `parse_host_port` reads."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def parse_host_port(value: str) -> tuple[str, int]:
    """`ADDR:PORT` (IPv6 as `[ADDR]:PORT`) into a normalized address and a port; ValueError if malformed."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"{value!r} is not ADDR:PORT")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is out of range 1-65535")
    return _normalize_address(host.removeprefix("[").removesuffix("]")), port
