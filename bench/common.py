"""What every benchmark shares: the machine it ran on, process memory, and real devices to measure."""

import os
import platform
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from devices import RunningDevice

__all__ = ["RunningDevice", "anchor", "machine", "percentile", "rss_mb"]

ANCHORS = Path(os.environ.get("TANDEM_ANCHORS", Path(__file__).resolve().parents[2] / "shared" / "anchors"))
"""Where the reference measurements live (keepalived-takeover, haproxy-ratio): the directory named by
TANDEM_ANCHORS, else `shared/anchors` beside the checkout. Without them the reference figures are null."""


def anchor(name: str) -> Path:
    """The reference script `name` (it may not exist: the caller reports its figures as null)."""
    return ANCHORS / name


def machine() -> str:
    """A short description of this machine, to note beside the figures."""
    model = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    system = f"{platform.system()} {platform.release()}"
    return f"{os.cpu_count()} cores, {model}, {system}, Python {platform.python_version()}"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmRSS for pid {pid}")


def percentile(samples: list[float], fraction: float) -> float:
    """The `fraction` quantile (0.5 median, 0.99 p99) of the samples."""
    if fraction == 0.5:
        return statistics.median(samples)
    return statistics.quantiles(samples, n=100, method="inclusive")[round(fraction * 100) - 1]
