"""The file source: a folder of YAML or JSON files, each holding one service (or a list of them).

    name: web                 # the service (key file/web)
    address: 10.9.0.1         # or none: one is taken from the address pool of its traffic group
    port: 80                  # or ports: [80, 443]
    protocol: tcp
    members: ["10.1.0.1:8080", {address: 10.1.0.2, port: 8080}]
    monitor: {type: http, path: /health}
    lb_method: round-robin
    traffic_group: traffic-group-1

A file is read again when it changes. A file that is not valid YAML/JSON, or a service in it that
misses a field, is reported and skipped: the services it held before stay as they were.
"""

import asyncio
import logging
from pathlib import Path
from typing import Any

import watchfiles
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tandem.agents.service import Member, Report, Service, ServicePort
from tandem.models.fields import IPAddress, Name, Port, parse_host_port
from tandem.models.resources import DEFAULT_LB_METHOD, DEFAULT_TRAFFIC_GROUP, MonitorSettings

SUFFIXES = (".yaml", ".yml", ".json")
MAX_FILE = 4 << 20

log = logging.getLogger("tandem.agent.files")


class FileService(BaseModel):
    """One service as a file gives it."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    address: IPAddress | None = None
    address_pool: Name | None = None
    """Take the address from the pool of this traffic group (sets traffic_group)."""
    port: Port | None = None
    ports: list[Port] | None = Field(None, min_length=1, max_length=64)
    protocol: str = "tcp"
    members: list[Member] = Field(default_factory=list, max_length=100_000)
    monitor: MonitorSettings | None = None
    lb_method: str = DEFAULT_LB_METHOD
    traffic_group: Name = DEFAULT_TRAFFIC_GROUP

    @field_validator("members", mode="before")
    @classmethod
    def _member_strings(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [dict(zip(("address", "port"), parse_host_port(m), strict=True)) if isinstance(m, str) else m
                    for m in value]
        return value

    def service(self) -> Service:
        ports = self.ports or ([self.port] if self.port else [])
        if not ports:
            raise ValueError("port: give port or ports")
        return Service.model_validate({
            "key": f"file/{self.name}", "address": self.address,
            "traffic_group": self.address_pool or self.traffic_group,
            "ports": [ServicePort.model_validate({"port": p, "protocol": self.protocol, "members": self.members})
                      for p in ports],
            "monitor": self.monitor, "lb_method": self.lb_method})


def parse(text: str) -> list[Service]:
    """The services of one file; ValueError naming the problem."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ValueError(f"not valid YAML or JSON: {error}") from None
    items = data if isinstance(data, list) else [data]
    services = []
    for index, item in enumerate(items):
        where = f"item {index}: " if isinstance(data, list) else ""
        if not isinstance(item, dict):
            raise ValueError(f"{where}a service is a mapping of fields")
        try:
            services.append(FileService.model_validate(item).service())
        except ValidationError as error:
            first = error.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "service"
            raise ValueError(f"{where}{field}: {first['msg']}") from None
        except ValueError as error:
            raise ValueError(f"{where}{error}") from None
    return services


class FileSource:
    """Services from the files of a folder, kept up to date as files change."""

    kind = "file"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._by_file: dict[Path, list[Service]] = {}
        self.errors: dict[str, str] = {}
        """Problems by file name (those files' last good services stay)."""

    @property
    def services(self) -> dict[str, Service]:
        out: dict[str, Service] = {}
        for file in sorted(self._by_file):
            for service in self._by_file[file]:
                if service.key in out:
                    self.errors[file.name] = f"service {service.key} is also defined in another file: ignored here"
                    continue
                out[service.key] = service
        return out

    @property
    def present(self) -> set[str]:
        """Every service key the source holds (those of files with a problem keep their last good form)."""
        return set(self.services)

    def take_changed(self) -> None:
        """Files are few: every reconcile compares every service."""
        return None

    def _read(self, file: Path) -> None:
        if not file.exists():
            self._by_file.pop(file, None)
            self.errors.pop(file.name, None)
            return
        try:
            if file.stat().st_size > MAX_FILE:
                raise ValueError(f"larger than {MAX_FILE} bytes")
            self._by_file[file] = parse(file.read_text())
            self.errors.pop(file.name, None)
        except (OSError, UnicodeDecodeError, ValueError) as error:
            self.errors[file.name] = str(error)
            log.warning("%r: %r (its services stay as they were)", str(file), str(error))

    def load(self) -> None:
        for file in sorted(self.path.iterdir()) if self.path.is_dir() else []:
            if file.suffix in SUFFIXES and file.is_file():
                self._read(file)

    async def run(self, changed: asyncio.Event) -> None:
        """Read the folder, then every file again as it changes; set `changed` each time."""
        self.load()
        changed.set()
        async for batch in watchfiles.awatch(self.path, debounce=20, step=10, recursive=False):
            for _, name in batch:
                file = Path(name)
                if file.suffix in SUFFIXES:
                    self._read(file)
            changed.set()

    async def report(self, key: str, report: Report) -> None:
        """Files have nowhere to write back: problems go to the log and to the agent's status."""
        if report.problem:
            log.warning("%r: %r", key, report.problem)
