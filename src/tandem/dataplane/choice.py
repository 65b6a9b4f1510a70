"""Which engine a device's data plane process runs (`tandem serve --engine`), chosen once by the
management process: HAProxy when its binary is on PATH (`auto`) or when asked (`haproxy`), the kernel's
nftables when asked (`nftables`: root and `nft` needed), else the builtin engine."""

import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import get_args

from tandem._version import __version__
from tandem.models.api import DEFAULT_ENGINE, EngineRequest

log = logging.getLogger("tandem.dataplane")

ENGINES: tuple[str, ...] = get_args(EngineRequest)
HAPROXY = "haproxy"
NFT = "nft"
VERSION_TIMEOUT = 10.0
"""Seconds `haproxy -v` may take."""
_VERSION = re.compile(r"\bversion\s+(\d+(?:\.\d+)+)", re.IGNORECASE)


class EngineUnavailable(Exception):
    """The engine asked for cannot run here: the message says why (one line)."""


@dataclass(frozen=True)
class EngineChoice:
    """The engine chosen: its name (`builtin`, `haproxy`, `nftables`), its version, and its binary (None:
    builtin)."""

    name: str
    version: str
    binary: str | None = None


BUILTIN = EngineChoice("builtin", __version__)


def choose(requested: EngineRequest = DEFAULT_ENGINE) -> EngineChoice:
    """The engine to run for `requested` (`auto`, `haproxy`, `builtin`); EngineUnavailable when HAProxy is
    asked for and cannot be run. `auto` takes the builtin engine when no `haproxy` is on PATH, or when the
    one found does not tell its version (logged)."""
    if requested not in ENGINES:
        raise EngineUnavailable(f"unknown engine {requested!r}: choose one of {', '.join(ENGINES)}")
    if requested == "builtin":
        return BUILTIN
    if requested == "nftables":
        return _nftables()
    binary = shutil.which(HAPROXY)
    if binary is None:
        if requested == "auto":
            return BUILTIN
        raise EngineUnavailable("--engine haproxy: no haproxy binary on PATH (install the distribution's "
                                "haproxy package, or use --engine builtin)")
    try:
        return EngineChoice(HAPROXY, haproxy_version(binary), binary)
    except EngineUnavailable as error:
        if requested == "haproxy":
            raise
        log.warning("%s; using the builtin engine", error)
        return BUILTIN


def _nftables() -> EngineChoice:
    """The nftables engine, if this device may run it: EngineUnavailable says why not."""
    from tandem.dataplane.nftables_engine import nft_version

    binary = shutil.which(NFT)
    if binary is None:
        raise EngineUnavailable("--engine nftables: no nft binary on PATH (install the distribution's nftables "
                                "package)")
    if os.geteuid() != 0:
        raise EngineUnavailable("--engine nftables: the kernel's NAT rules can be written only by root "
                                "(CAP_NET_ADMIN)")
    return EngineChoice("nftables", nft_version(binary), binary)


def haproxy_version(binary: str) -> str:
    """The version `binary -v` tells on its first line (`2.6.12` of `HAProxy version 2.6.12-1+deb12u3 ...`)."""
    try:
        done = subprocess.run([binary, "-v"], capture_output=True, text=True, errors="replace",
                              timeout=VERSION_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise EngineUnavailable(f"cannot run {binary} -v: {error}") from None
    first = (done.stdout.splitlines() or [""])[0]
    found = _VERSION.search(first)
    if done.returncode != 0 or found is None:
        raise EngineUnavailable(f"{binary} -v did not tell a version (exit status {done.returncode}): "
                                f"{first[:200]!r}")
    return found.group(1)
