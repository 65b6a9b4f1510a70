"""Field types shared by every resource: names, addresses, ports, references."""

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


def _normalize_address(value: str) -> str:
    try:
        return ipaddress.ip_address(value).compressed
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 or IPv6 address") from None


IPAddress = Annotated[str, StringConstraints(strict=True, max_length=64), AfterValidator(_normalize_address)]
"""An IPv4 or IPv6 address, stored in its compressed form."""


def _check_reference(value: str) -> str:
    parts = value.split("/")
    if len(parts) == 1 and NAME_RE.match(value):
        return value
    if len(parts) == 3 and parts[0] == "" and NAME_RE.match(parts[1]) and NAME_RE.match(parts[2]):
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


def member_key(address: str, port: int) -> str:
    """The identifier of a pool member inside its pool: `address:port` (IPv6 in brackets)."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def parse_member_key(key: str) -> tuple[str, int]:
    """Split `address:port` (or `[v6]:port`) into a normalized address and a port; ValueError if malformed."""
    return parse_host_port(key)


def parse_host_port(value: str) -> tuple[str, int]:
    """`ADDR:PORT` (IPv6 as `[ADDR]:PORT`) into a normalized address and a port; ValueError if malformed."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"{value!r} is not ADDR:PORT")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is out of range 1-65535")
    return _normalize_address(host.removeprefix("[").removesuffix("]")), port
