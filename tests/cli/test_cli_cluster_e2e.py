"""End to end: `tandem lab up --devices 3` forms cluster `lab`, then `tandem cluster ...` grows, shrinks,
syncs and tears it down. Real `tandem serve` processes over real TLS, driven by `python -m tandem`.

Each lab picks a random 127.x.y.0/24 block and a free port pair (management and peer), so parallel
runs do not collide. The tests of a module-scoped lab run in order.
"""

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from cli_helpers import LabRun

from waiting import wait_until

TIMEOUT = 10.0


@dataclass
class Lab(LabRun):
    def trust(self, name: str) -> dict:
        client = self.client(name)
        try:
            return client.trust()
        finally:
            client.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with Lab.started(tmp_path_factory.mktemp("tandem-cluster-lab"), devices=3) as lab:
        yield lab


def in_sync(status: dict, members: set[str]) -> bool:
    return (status["status"] == "In Sync" and {m["name"] for m in status["members"]} == members
            and all(m["status"] == "In Sync" for m in status["members"]))


ALL = {"dev-1", "dev-2", "dev-3"}


def test_lab_up_forms_cluster_lab(lab):
    assert lab.state()["device_group"] == "lab"
    out = lab.up.stdout
    assert "device group lab (sync-failover, partition Common): In Sync" in out
    for name in ALL:
        assert name in out
    assert "forming cluster lab" in lab.up.stderr
    domains = {lab.trust(name)["domain_id"] for name in ALL}
    assert len(domains) == 1
    assert {d["name"] for d in lab.trust("dev-3")["devices"]} == ALL


def test_cluster_status_in_json_and_as_tables(lab):
    status = lab.json("cluster", "status")
    assert (status["name"], status["type"], status["status"]) == ("lab", "sync-failover", "In Sync")
    assert in_sync(status, ALL), status
    assert all(m["connected"] for m in status["members"])
    assert status["conflicts"] == []
    assert in_sync(lab.json("--device", "dev-3", "cluster", "status", "lab"), ALL)
    assert [g["name"] for g in lab.json("cluster", "list")] == ["lab"]

    table = lab.run("cluster", "status")
    assert table.returncode == 0, table.stderr
    assert "In Sync" in table.stdout and "dev-3" in table.stdout and "last commits" in table.stdout
    missing = lab.run("cluster", "status", "nope")
    assert missing.returncode == 1 and missing.stderr.startswith("error: ")


def test_a_write_reaches_every_member(lab):
    lab.json("pool", "create", "app", "--member", "10.0.0.1:80")
    for name in ("dev-2", "dev-3"):
        wait_until(lambda name=name: lab.run("--device", name, "pool", "show", "app").returncode == 0,
                   TIMEOUT, f"pool app on {name}", retry=())
    wait_until(lambda: in_sync(lab.json("cluster", "status"), ALL), TIMEOUT, "lab In Sync again", retry=())
    status = lab.json("--device", "dev-3", "cluster", "status")
    dev1 = next(m for m in status["members"] if m["name"] == "dev-1")
    assert dev1["last_commit"].get("dev-1", 0) >= 1


def test_cluster_sync(lab):
    job = lab.json("cluster", "sync", "lab", "--from", "dev-2")
    assert job["state"] == "succeeded", job
    wait_until(lambda: in_sync(lab.json("cluster", "status"), ALL), TIMEOUT, "lab In Sync after the sync", retry=())
    table = lab.run("cluster", "sync", "lab", "--from", "dev-1")
    assert table.returncode == 0, table.stderr
    assert "synced device group lab from dev-1" in table.stdout
    wrong = lab.run("cluster", "sync", "lab", "--from", "dev-9")
    assert wrong.returncode == 1 and wrong.stderr.startswith("error: ")


def test_remove_a_device(lab):
    refused = lab.run("cluster", "remove-device", "lab", "dev-1")
    assert refused.returncode == 1 and "root" in refused.stderr

    status = lab.json("cluster", "remove-device", "lab", "dev-3")
    assert in_sync(status, {"dev-1", "dev-2"}), status
    assert [d["name"] for d in lab.trust("dev-3")["devices"]] == ["dev-3"]
    assert {d["name"] for d in lab.trust("dev-1")["devices"]} == {"dev-1", "dev-2"}
    assert lab.json("--device", "dev-3", "cluster", "list") == []
    # dev-3 keeps its configuration
    assert lab.json("--device", "dev-3", "pool", "show", "app")["name"] == "app"


def test_teardown(lab):
    result = lab.json("cluster", "teardown", "lab")
    assert result == {"name": "lab", "devices": ["dev-1", "dev-2"], "torn_down": True}
    domains = set()
    for name in sorted(ALL):
        trust = lab.trust(name)
        assert [d["name"] for d in trust["devices"]] == [name]
        domains.add(trust["domain_id"])
        assert lab.json("--device", name, "cluster", "list") == []
    assert len(domains) == 3
    status = lab.run("cluster", "status")
    assert status.returncode == 1 and "has no device group" in status.stderr


def test_create_grow_shrink_teardown_from_urls_and_lab_names(tmp_path_factory):
    with Lab.started(tmp_path_factory.mktemp("tandem-cluster-lab"), "--no-cluster", devices=3) as lab:
        assert lab.state()["device_group"] is None
        assert "device group" not in lab.up.stdout
        assert [d["name"] for d in lab.trust("dev-2")["devices"]] == ["dev-2"]
        dev2 = lab.device("dev-2")
        created = lab.run("--output", "json", "cluster", "create", "pair", "--type", "sync-only",
                          "--device", "dev-1", "--device", dev2["url"])
        assert created.returncode == 0, created.stderr
        status = json.loads(created.stdout)
        assert (status["name"], status["type"]) == ("pair", "sync-only")
        assert in_sync(status, {"dev-1", "dev-2"})
        assert "adds dev-2" in created.stderr
        assert {d["name"] for d in lab.trust("dev-3")["devices"]} == {"dev-3"}
        again = lab.run("cluster", "create", "pair")
        assert again.returncode == 1
        assert "error: device group 'pair' already exists on dev-1" in again.stderr
        assert "creating device group" not in again.stderr  # refused before changing anything
        assert {d["name"] for d in lab.trust("dev-3")["devices"]} == {"dev-3"}

        lab.json("pool", "create", "before-3")
        added = lab.run("cluster", "add-device", "pair", "dev-3")
        assert added.returncode == 0, added.stderr
        assert "added dev-3 to cluster pair" in added.stdout
        assert in_sync(lab.json("--device", "dev-3", "cluster", "status"), ALL)
        assert lab.json("--device", "dev-3", "pool", "show", "before-3")["name"] == "before-3"

        removed = lab.json("cluster", "remove-device", "pair", lab.device("dev-3")["url"])
        assert in_sync(removed, {"dev-1", "dev-2"})
        assert [d["name"] for d in lab.trust("dev-3")["devices"]] == ["dev-3"]

        torn = lab.run("cluster", "teardown", "pair")
        assert torn.returncode == 0, torn.stderr
        assert "tore down cluster pair" in torn.stdout
        for name in ("dev-1", "dev-2"):
            assert [d["name"] for d in lab.trust(name)["devices"]] == [name]
