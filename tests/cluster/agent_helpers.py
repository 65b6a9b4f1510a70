"""Agents under test: `tandem agent run` processes against a 2-device cluster on loopback."""

import os
import random
import re
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from cluster_helpers import Cluster, check

from devices import free_port
from waiting import wait_until

PARTITION = "apps"
WRITE = re.compile(r"^(\S+ \S+) tandem\.agent INFO instance (\S+) wrote \d+ objects of services (.*)$")
"""An agent's log line saying what it wrote."""
ENVIRONMENT = "test"
TG = "traffic-group-1"
AGENT_USER, AGENT_PASSWORD = "agent", "agent-password"


def setup_cluster(cluster: Cluster) -> None:
    """Two devices in a sync-failover group syncing Common and `apps`, a traffic group, and the agent's `manager`
    user limited to `apps` (made on dev-1: users are the trust domain's), valid on both."""
    cluster.start("dev-1", "dev-2")
    one = cluster.nodes[0]
    check(one.api.post("/api/partitions", json={"name": PARTITION}), 201)
    cluster.form(partitions=["Common", PARTITION], heartbeat_interval=0.2, heartbeat_timeout=1.0)
    check(one.api.post("/api/traffic-groups", json={"name": TG, "device_group": "dg", "ha_order": ["dev-1", "dev-2"]}),
          201)
    check(one.api.post("/api/users", json={"name": AGENT_USER, "role": "manager", "partitions": [PARTITION],
                                           "password": AGENT_PASSWORD}), 201)
    for node in cluster:
        wait_until(lambda node=node: httpx.post(f"{node.device.url}/api/auth/login", verify=False, json={
            "username": AGENT_USER, "password": AGENT_PASSWORD}).status_code == 200, 10,
            f"the agent's user valid on {node.name}")


def address_pool() -> tuple[str, str]:
    """A pool of loopback addresses for one test (random, so that tests do not collide); each agent hands
    out its own share of a pool, so the pool has room for every service on any one agent."""
    prefix = f"127.{random.randint(100, 250)}.{random.randint(0, 255)}"
    return f"{TG}={prefix}.10-{prefix}.250", prefix


@dataclass
class AgentProcess:
    """One `tandem agent run`; `kill()` is kill -9."""

    cluster: Cluster
    host_id: str
    log_dir: Path
    source_args: list[str]
    pool: str
    lease_ttl: float = 2.0
    devices: list[str] | None = None
    metrics_port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"agent-{self.host_id}.log"

    def start(self) -> "AgentProcess":
        urls = self.devices or [n.device.url for n in self.cluster]
        args = [sys.executable, "-m", "tandem", "--username", AGENT_USER, "--insecure", "agent", "run",
                *self.source_args, *[a for url in urls for a in ("--device", url)], "--partition", PARTITION,
                "--environment", ENVIRONMENT, "--host-id", self.host_id, "--lease-ttl", str(self.lease_ttl),
                "--address-pool", self.pool, "--metrics-listen", f"127.0.0.1:{self.metrics_port}"]
        env = dict(os.environ, TANDEM_PASSWORD=AGENT_PASSWORD)
        self.process = subprocess.Popen(args, stdout=self.log_path.open("ab"), stderr=subprocess.STDOUT, env=env,
                                        start_new_session=True)
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""


def agent_objects(node, kind: str) -> dict[str, dict[str, Any]]:
    """The objects of `kind` in the agents' partition on one device, by name."""
    body = check(node.api.get(f"/api/{kind}", params={"partition": PARTITION, "limit": 10_000}), 200).json()
    return {r["name"]: r for r in body["records"]}


def wait_virtuals(cluster: Cluster, names: set[str], timeout: float = 20.0) -> None:
    """Until every device holds exactly the virtual servers `names` in the partition."""
    for node in cluster:
        wait_until(lambda node=node: set(agent_objects(node, "virtuals")) == names, timeout,
                   f"virtual servers {sorted(names)} on {node.name}",
                   detail=lambda node=node: sorted(agent_objects(node, "virtuals")))


def writers(agents: list[AgentProcess]) -> dict[str, list[tuple[datetime, str]]]:
    """From the agents' logs: every write of every service, as (when, instance), in time order."""
    out: dict[str, list[tuple[datetime, str]]] = {}
    for agent in agents:
        for line in agent.log_path.read_text(errors="replace").splitlines():
            match = WRITE.match(line)
            if match:
                when = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f")
                for key in match[3].split():
                    out.setdefault(key, []).append((when, match[2]))
    return {key: sorted(writes) for key, writes in out.items()}


def dead_instances(agents: list[AgentProcess]) -> set[str]:
    """The agent instances (that wrote) no longer running: followed by another in their agent's log, or the last
    of an agent whose process ended."""
    dead: set[str] = set()
    for agent in agents:
        instances = list(dict.fromkeys(match[2] for line in agent.log_path.read_text(errors="replace").splitlines()
                                       if (match := WRITE.match(line))))
        dead |= set(instances[:-1])
        if instances and agent.process is not None and agent.process.poll() is not None:
            dead.add(instances[-1])
    return dead


def assert_one_writer_at_a_time(agents: list[AgentProcess]) -> None:
    """An agent instance never writes a service again once another instance wrote it after it, unless every
    instance that wrote it meanwhile is dead (a service goes back to its former writer when the one that took
    it over dies: still one writer at a time)."""
    dead = dead_instances(agents)
    for key, writes in writers(agents).items():
        since: dict[str, set[str]] = {}  # per instance that lost the service: the instances that wrote it since
        current = None
        for _, instance in writes:
            if instance != current:
                alive = since.pop(instance, set()) - dead
                assert not alive, f"{key}: {instance} wrote again after {alive} (alive): {writes}"
                for others in since.values():
                    others.add(instance)
                if current is not None:
                    since[current] = {instance}
                current = instance
