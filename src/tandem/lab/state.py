"""The state of a lab: `DIR/lab.json`, written by `tandem lab up` and read by every command.

A lab is N devices on one host, each a `tandem serve` process with its own data directory
and loopback address. The other commands use the lab's devices when no `--url` is given.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

LAB_FILE = "lab.json"
DEFAULT_LAB_DIR = Path("/tmp/tandem-lab")


def default_lab_dir() -> Path:
    """`TANDEM_LAB_DIR` when set, else /tmp/tandem-lab."""
    value = os.environ.get("TANDEM_LAB_DIR")
    return Path(value) if value else DEFAULT_LAB_DIR


@dataclass
class LabDevice:
    name: str
    url: str
    listen: str
    fingerprint: str | None
    password_file: str
    pid: int | None
    data_dir: str
    log: str
    killed: bool | None = None
    """True after `tandem lab kill` (until `tandem lab start`): `lab status` says killed, not stopped."""
    engine: str | None = None
    """The data plane engine it runs (`tandem serve --engine`; None: the default, `DEFAULT_ENGINE`)."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabDevice:
        known = {k: data.get(k) for k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class LabBackend:
    """A demo HTTP backend of the lab (`python -m tandem.lab.backends`), a member of pool `web`."""

    name: str
    address: str
    port: int
    pid: int | None
    dir: str
    log: str
    port_file: str
    killed: bool | None = None

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}/"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabBackend:
        known = {k: data.get(k) for k in cls.__dataclass_fields__}
        known["port"] = int(known["port"] or 0)
        return cls(**known)


@dataclass
class LabState:
    dir: str
    address_base: str
    port: int
    devices: list[LabDevice] = field(default_factory=list)
    created_at: str = ""
    device_group: str | None = None
    """The device group `lab up` formed of the devices (None: no cluster)."""
    backends: list[LabBackend] = field(default_factory=list)
    """The demo backends `lab up` started with a cluster (none without)."""
    traffic_group: str | None = None
    """The traffic group of the demo virtual server (None: no demo)."""
    vip: str | None = None
    """The demo virtual server's ADDRESS:PORT (IPv6 as [ADDRESS]:PORT), None: no demo."""

    def backend(self, name: str) -> LabBackend | None:
        return next((b for b in self.backends if b.name == name), None)

    def device(self, name: str | None) -> LabDevice:
        """The device called `name`, or the first one; LookupError when there is no such device."""
        if not self.devices:
            raise LookupError("the lab has no devices")
        if name is None:
            return self.devices[0]
        for device in self.devices:
            if device.name == name:
                return device
        names = ", ".join(d.name for d in self.devices)
        raise LookupError(f"no device {name!r} in the lab (devices: {names})")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabState:
        return cls(
            dir=str(data.get("dir", "")),
            address_base=str(data.get("address_base", "")),
            port=int(data.get("port", 0)),
            devices=[LabDevice.from_dict(d) for d in data.get("devices", [])],
            created_at=str(data.get("created_at", "")),
            device_group=data.get("device_group") or None,
            backends=[LabBackend.from_dict(b) for b in data.get("backends") or []],
            traffic_group=data.get("traffic_group") or None,
            vip=data.get("vip") or None,
        )


def lab_file(lab_dir: Path) -> Path:
    return Path(lab_dir) / LAB_FILE


def load_lab(lab_dir: Path) -> LabState | None:
    """The lab recorded in `lab_dir`, or None when there is none (or the file is unreadable)."""
    path = lab_file(lab_dir)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"cannot read {path}: not a JSON object")
    return LabState.from_dict(data)


def save_lab(state: LabState) -> Path:
    """Write lab.json atomically (a reader never sees half a file)."""
    path = lab_file(Path(state.dir))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".lab-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(state.to_dict(), f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def remove_lab(lab_dir: Path) -> None:
    lab_file(lab_dir).unlink(missing_ok=True)
