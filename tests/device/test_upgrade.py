"""Upgrades: a data directory written by the release before (tests/fixtures/release-e56e4f3: `tandem serve` of
commit e56e4f3, a partition, a monitor, pools, a virtual server and a manager made through its API, its store
checkpointed into one file) opens under this release: the store is brought to the present layout, and the device
keeps its identity, objects and users, and takes new writes."""

import shutil
import sqlite3
from pathlib import Path

import httpx
import pytest

from devices import RunningDevice
from tandem.store.database import SCHEMA_VERSION

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "release-e56e4f3" / "old-1"
OLD_ID = "8d93738b-b52f-4c4f-986a-68c0ad8e4b65"


@pytest.fixture
def old_device(tmp_path: Path):
    data_dir = tmp_path / "old-1"
    shutil.copytree(FIXTURE, data_dir)
    for path in [data_dir, *data_dir.rglob("*")]:  # as a restore would leave it (git keeps no modes)
        path.chmod(0o700 if path.is_dir() else 0o600)
    with sqlite3.connect(data_dir / "tandem.db") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 0  # the layout of before it was kept
        assert "kind" not in {row[1] for row in db.execute("PRAGMA table_info(events)")}
    device = RunningDevice(name="old-1", data_dir=data_dir, admin_password="fixture-admin-pass", extra_args=[
        "--engine", "builtin"]).start()
    yield device
    device.stop()


def test_a_data_directory_of_the_release_before_opens_migrated_with_everything_in_it(old_device):
    admin = httpx.Client(base_url=old_device.url, verify=False, auth=("admin", "fixture-admin-pass"))
    info = admin.get("/api/device").json()
    assert (info["id"], info["fingerprint"]) == (OLD_ID, old_device.fingerprint)
    pool = admin.get("/api/pools/Common/web").json()
    assert pool["monitor"] == "tcp-1" and [m["port"] for m in pool["members"]] == [9001, 9002]
    assert admin.get("/api/virtuals/Common/www").json()["pool"] == "web"
    assert admin.get("/api/pools/tenant-a/app").status_code == 200
    manager = httpx.Client(base_url=old_device.url, verify=False, auth=("ops", "ops-password-1"))
    assert manager.post("/api/pools", json={"partition": "tenant-a", "name": "new"}).status_code == 201
    assert admin.get("/api/device").json()["last_commit_id"] > info["last_commit_id"]
    assert admin.get("/api/failover/events").json()["records"] == []
    with sqlite3.connect(old_device.data_dir / "tandem.db") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert "kind" in {row[1] for row in db.execute("PRAGMA table_info(events)")}
