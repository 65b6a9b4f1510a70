"""The file source: services in a folder reach both devices, traffic follows, bad files change nothing."""

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from agent_helpers import AgentProcess, address_pool, agent_objects, wait_virtuals
from cli_helpers import run_tandem, subprocess_env
from cluster_helpers import Cluster, check

from backends import Backend, ask
from devices import ADMIN_PASSWORD
from waiting import wait_until


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "services"
    path.mkdir()
    return path


@pytest.fixture
def agent(lab: Cluster, folder: Path, tmp_path: Path) -> Iterator[AgentProcess]:
    pool, _ = address_pool()
    process = AgentProcess(lab, "host-a", tmp_path, ["--source", "file", "--path", str(folder)], pool).start()
    yield process
    for path in folder.iterdir():
        path.unlink()
    wait_virtuals(lab, set())  # the next test starts from an empty partition: the agent removes what is gone
    process.stop()


def write(folder: Path, name: str, spec: dict | str) -> None:
    (folder / f"{name}.yaml").write_text(spec if isinstance(spec, str) else json.dumps(spec))


def test_services_from_files_are_served_and_follow_changes(lab: Cluster, folder: Path, agent: AgentProcess) -> None:
    one, two = Backend("one"), Backend("two")
    write(folder, "web", {"name": "web", "port": 18080, "members": [f"127.0.0.1:{one.port}"],
                          "monitor": {"type": "tcp", "interval": 0.2, "timeout": 1}})
    wait_virtuals(lab, {"file_web-18080"})
    virtual = agent_objects(lab.nodes[1], "virtuals")["file_web-18080"]
    address = virtual["address"]
    assert address.startswith("127.") and virtual["description"] == "managed by tandem agent test: file/web"
    wait_until(lambda: ask(address, 18080) == "one", 15, "traffic through the virtual server")

    write(folder, "web", {"name": "web", "port": 18080, "members": [f"127.0.0.1:{two.port}"],
                          "monitor": {"type": "tcp", "interval": 0.2, "timeout": 1}})
    wait_until(lambda: ask(address, 18080) == "two", 15, "traffic to the new member")
    assert agent_objects(lab.nodes[0], "virtuals")["file_web-18080"]["address"] == address, "the address stays"

    (folder / "web.yaml").unlink()
    wait_virtuals(lab, set())
    assert agent_objects(lab.nodes[0], "pools") == {} and agent_objects(lab.nodes[0], "monitors") == {}
    one.shutdown()
    two.shutdown()


def test_a_bad_file_is_reported_and_changes_nothing(lab: Cluster, folder: Path, agent: AgentProcess) -> None:
    write(folder, "a", {"name": "a", "port": 18081, "members": ["127.0.0.1:9"]})
    write(folder, "b", {"name": "b", "port": 18082, "members": ["127.0.0.1:9"]})
    wait_virtuals(lab, {"file_a-18081", "file_b-18082"})
    write(folder, "a", "name: a\nport: [not a port")
    write(folder, "c", {"name": "c", "members": ["127.0.0.1:9"]})
    write(folder, "d", {"name": "d", "port": 18084, "protocol": "sctp"})
    write(folder, "e", {"name": "e", "port": 18085, "members": ["127.0.0.1:9"]})
    wait_virtuals(lab, {"file_a-18081", "file_b-18082", "file_e-18085"})
    status = httpx.get(f"http://127.0.0.1:{agent.metrics_port}/healthz", timeout=5)
    assert status.status_code == 200
    metrics = httpx.get(f"http://127.0.0.1:{agent.metrics_port}/metrics", timeout=5).text
    assert "tandem_agent_reconciles_total" in metrics and "tandem_agent_objects_written_total" in metrics

    def lease() -> dict:
        return check(lab.nodes[0].api.get("/api/leases/apps/tandem-test-agent-host-a"), 200).json()

    mine = wait_until(lambda: (found := lease())["data"].get("owned") == 3 and found, 5, "the agent's status",
                      detail=lease)
    assert not mine["expired"]
    assert sorted(mine["data"]["source_errors"]) == ["a.yaml", "c.yaml", "d.yaml"], mine["data"]
    assert "not valid YAML" in mine["data"]["source_errors"]["a.yaml"]

    device = lab.nodes[0].device
    shown = run_tandem("--url", device.url, "--fingerprint", device.fingerprint, "-o", "json", "agent", "status",
                       "--partition", "apps", env=subprocess_env(TANDEM_PASSWORD=ADMIN_PASSWORD))
    assert shown.returncode == 0, shown.stderr
    [row] = json.loads(shown.stdout)
    assert row["host_id"] == "host-a" and row["alive"] and row["leader"] and row["owned"] == 3, row
    # `agent status` shows the source errors (a file that is not YAML, a service missing its port, ...) and counts them
    assert sorted(row["source_errors"]) == ["a.yaml", "c.yaml", "d.yaml"] and row["problem_count"] == 3, row
    assert row["source_errors"]["a.yaml"].startswith("not valid YAML")
    assert row["source_errors"]["c.yaml"] == "port: give port or ports"
    table = run_tandem("--url", device.url, "--fingerprint", device.fingerprint, "agent", "status", "--partition",
                       "apps", env=subprocess_env(TANDEM_PASSWORD=ADMIN_PASSWORD, COLUMNS="400"))
    assert table.returncode == 0, table.stderr
    assert "source errors" in table.stdout and "c.yaml: port: give port or ports" in table.stdout, table.stdout
    assert "a.yaml: not valid YAML" in table.stdout and "d.yaml: " in table.stdout, table.stdout
