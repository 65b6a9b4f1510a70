"""Three file agents sharing one folder with their leases in etcd (the distribution's etcd-server, started
here), with real devices: a killed agent's share is written again within its lease, a paused one (SIGSTOP
past its lease) loses its share and takes one back when it resumes, and the killed agent's services never
have two writers."""

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from agent_helpers import AgentProcess, address_pool, agent_objects, assert_one_writer_at_a_time
from cluster_helpers import Cluster

from devices import free_port
from waiting import wait_until

SERVICES = 24
LEASE_TTL = 2.0

pytestmark = pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd is not installed (apt-get install "
                                "etcd-server; .ci/run does)")


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A one-member etcd on loopback; its client URL."""
    work = tmp_path_factory.mktemp("etcd")
    client, peer = free_port(), free_port()
    url = f"http://127.0.0.1:{client}"
    process = subprocess.Popen(
        ["etcd", "--data-dir", str(work / "data"), "--listen-client-urls", url, "--advertise-client-urls", url,
         "--listen-peer-urls", f"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls",
         f"http://127.0.0.1:{peer}", "--initial-cluster", f"default=http://127.0.0.1:{peer}"],
        stdout=(work / "etcd.log").open("wb"), stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: httpx.post(f"{url}/v3/kv/range", json={"key": "eA=="}).status_code == 200, 20,
                   "etcd to answer")
        yield url
    finally:
        process.terminate()
        process.wait(10)


def publish(folder: Path, members: int) -> None:
    for i in range(SERVICES):
        (folder / f"svc{i}.json").write_text(json.dumps({
            "name": f"svc{i}", "port": 80, "members": [f"10.7.{i}.{m}:8080" for m in range(1, members + 1)]}))


def served(lab: Cluster, members: int) -> bool:
    pools = agent_objects(lab.nodes[-1], "pools")
    return len(pools) == SERVICES and all(len(p["members"]) == members for p in pools.values())


def owners(url: str) -> dict[str, int]:
    """Services owned per live agent, from what each publishes in its lease in etcd."""
    import base64

    prefix = "/tandem/leases/tandem-test-agent-"
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    kvs = httpx.post(f"{url}/v3/kv/range", json={"key": base64.b64encode(prefix.encode()).decode(),
                                                  "range_end": base64.b64encode(end.encode()).decode()}).json()
    out = {}
    for kv in kvs.get("kvs") or []:
        value = json.loads(base64.b64decode(kv["value"]))
        if value["renewed"] + value["ttl"] > time.time():
            out[base64.b64decode(kv["key"]).decode().removeprefix(prefix)] = value["data"].get("owned", 0)
    return out


def test_three_file_agents_on_etcd_survive_kill_and_pause(lab: Cluster, etcd: str, tmp_path: Path) -> None:
    folder = tmp_path / "services"
    folder.mkdir()
    pool, _ = address_pool()
    args = ["--source", "file", "--path", str(folder), "--lease-store", "etcd", "--etcd-endpoint", etcd]
    agents = {host: AgentProcess(lab, host, tmp_path, args, pool, lease_ttl=LEASE_TTL).start()
              for host in ("a", "b", "c")}
    try:
        publish(folder, 1)
        wait_until(lambda: served(lab, 1), 30, "every service served")
        wait_until(lambda: sorted(owners(etcd)) == ["a", "b", "c"] and sum(owners(etcd).values()) == SERVICES
                   and all(owners(etcd).values()), 15, "the services shared by three agents",
                   detail=lambda: owners(etcd))

        agents["b"].kill()
        killed = time.monotonic()
        publish(folder, 2)
        wait_until(lambda: served(lab, 2), LEASE_TTL + 10, "every change written after b's death")
        assert time.monotonic() - killed < LEASE_TTL + 3

        os.killpg(agents["c"].process.pid, signal.SIGSTOP)
        try:
            wait_until(lambda: sorted(owners(etcd)) == ["a"], LEASE_TTL + 5, "c's lease to run out",
                       detail=lambda: owners(etcd))
            publish(folder, 3)
            wait_until(lambda: served(lab, 3), 15, "a alone writes everything")
        finally:
            os.killpg(agents["c"].process.pid, signal.SIGCONT)
        wait_until(lambda: sorted(owners(etcd)) == ["a", "c"] and all(owners(etcd).values()), 15,
                   "c to take a share again", detail=lambda: owners(etcd))
        publish(folder, 1)
        wait_until(lambda: served(lab, 1), 15, "changes written by both")
        assert_one_writer_at_a_time([agents["a"], agents["b"]])  # c wrote before and after its pause: by design
        for path in folder.iterdir():
            path.unlink()
        wait_until(lambda: not agent_objects(lab.nodes[-1], "virtuals"), 20, "the services removed")
    finally:
        for agent in agents.values():
            agent.stop()
