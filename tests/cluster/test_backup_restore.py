"""Backup and restore (the BIG-IP UCS workflow): a member's data directory destroyed and restored from its archive
while the other member serves; it comes back into its trust domain and nothing either made is lost."""

import json
import shutil
from pathlib import Path

import httpx
import pytest
from cli_helpers import run_tandem, subprocess_env
from cluster_helpers import Cluster, Node, check, error_of, pool_names, wait_job

from devices import ADMIN_PASSWORD, free_port
from waiting import wait_until

PASSPHRASE = "backup passphrase 1"


def tandem(node: Node, *args: str, ok: bool = True) -> str:
    device = node.device
    result = run_tandem("--url", device.url, "--fingerprint", device.fingerprint, *args,
                        env=subprocess_env(TANDEM_PASSWORD=ADMIN_PASSWORD, COLUMNS="200"))
    assert (result.returncode == 0) == ok, (result.returncode, result.stdout, result.stderr)
    return result.stdout if ok else result.stderr


def restore(*args: str, ok: bool = True) -> str:
    result = run_tandem("restore", *args, env=subprocess_env(COLUMNS="200"))
    assert (result.returncode == 0) == ok, (result.returncode, result.stdout, result.stderr)
    return result.stdout if ok else result.stderr


def create_pool(node: Node, name: str) -> None:
    check(node.api.post("/api/pools", json={"name": name, "members": [{"address": "10.9.0.1", "port": 80}]}), 201)


def last_commits(node: Node) -> dict[str, int]:
    """The last commit of each origin that `node` has, as its group status says."""
    return next(m for m in node.status()["members"] if m["name"] == node.name)["last_commit"]


@pytest.fixture(scope="module")
def pair(module_cluster_factory) -> Cluster:
    cluster = module_cluster_factory()
    cluster.start("dev-1", "dev-2", proxied=True)
    cluster.form()
    return cluster


def test_a_member_destroyed_and_restored_while_the_other_serves(pair: Cluster, tmp_path: Path) -> None:
    dev1, dev2 = pair["dev-1"], pair["dev-2"]
    create_pool(dev2, "before-backup")
    pair.wait_converged()
    secret = tmp_path / "passphrase"
    secret.write_text(PASSPHRASE + "\n")
    archive = tmp_path / "dev-2.backup"
    shown = tandem(dev2, "backup", "--file", str(archive), "--passphrase-file", str(secret))
    assert "backup written to" in shown and archive.stat().st_mode & 0o777 == 0o600
    assert "exists" in tandem(dev2, "backup", "--file", str(archive), "--passphrase-file", str(secret), ok=False)

    # dev-2 commits after its backup; dev-1 has those commits, the archive does not.
    create_pool(dev2, "after-backup")
    pair.wait_converged()

    numbered = last_commits(dev1)["dev-2"]
    running = restore(str(archive), "--data-dir", str(dev2.device.data_dir), "--passphrase-file", str(secret),
                      "--force", ok=False)
    assert "runs on" in running, running
    second = run_tandem("serve", "--name", "dev-2", "--data-dir", str(dev2.device.data_dir), "--listen",
                        f"127.0.0.1:{free_port()}", env=subprocess_env(), timeout=30)
    assert second.returncode != 0 and "a device runs on" in second.stderr, second

    # The host is lost: dev-2's data directory is gone. dev-1 goes on serving and taking changes.
    dev2.kill()
    shutil.rmtree(dev2.device.data_dir)
    create_pool(dev1, "while-down")
    assert "before-backup" in pool_names(dev1.config())

    refused = restore(str(archive), "--data-dir", str(dev2.device.data_dir), "--passphrase-file", str(tmp_path / "no"),
                      ok=False)
    assert "does not exist" in refused and not dev2.device.data_dir.exists()
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase\n")
    refused = restore(str(archive), "--data-dir", str(dev2.device.data_dir), "--passphrase-file", str(wrong), ok=False)
    assert "passphrase is wrong" in refused and not dev2.device.data_dir.exists()

    done = json.loads(restore("-o", "json", str(archive), "--data-dir", str(dev2.device.data_dir),
                              "--passphrase-file", str(secret)))
    assert (done["device"], done["fingerprint"]) == ("dev-2", dev2.device.fingerprint)
    assert "holds device 'dev-2'" in restore(str(archive), "--data-dir", str(dev2.device.data_dir),
                                             "--passphrase-file", str(secret), ok=False)

    # Restored while cut off from dev-1: a change made now waits (its number may be taken by "after-backup").
    pair.cut()
    dev2.start()
    create_pool(dev2, "after-restore")

    def held() -> dict:
        me = next(m for m in dev2.status()["members"] if m["name"] == "dev-2")
        return me if me["pending_changes"] and "restored from a backup" in me["message"] else {}

    wait_until(held, 5, "dev-2's own change held after its restore", detail=dev2.status)
    job = wait_job(dev2.api, dev2.api.post("/api/device-groups/dg/sync", json={"from": "dev-2"}))
    assert job["state"] == "failed" and "restored from a backup" in str(job["error"]), job
    pair.heal()

    # Once linked again: dev-2 has every change, dev-1 has dev-2's new one; both agree and are In Sync.
    pair.wait_converged()
    pair.wait_in_sync()
    assert last_commits(dev1)["dev-2"] == numbered + 1, "dev-2's new change took a number of its own"
    assert {"before-backup", "after-backup", "while-down", "after-restore"} <= pool_names(dev1.config())
    assert all(m["message"] == "" for m in dev2.status()["members"]), dev2.status()
    create_pool(dev2, "later")
    pair.wait_converged()


def test_only_admins_take_backups_and_the_passphrase_is_checked(pair: Cluster) -> None:
    dev1 = pair["dev-1"]
    check(dev1.api.post("/api/users", json={"name": "watcher", "role": "auditor", "password": "watcher-pass"}), 201)
    login = check(dev1.api.post("/api/auth/login", json={"username": "watcher", "password": "watcher-pass"}), 200)
    refused = httpx.post(f"{dev1.device.url}/api/backup", json={"passphrase": PASSPHRASE}, verify=False,
                         headers={"Authorization": f"Bearer {login.json()['token']}"})
    assert refused.status_code == 403, refused.text
    short = dev1.api.post("/api/backup", json={"passphrase": "short"})
    assert short.status_code == 422 and error_of(short)["target"] == "passphrase", short.text
    answer = check(dev1.api.post("/api/backup", json={"passphrase": PASSPHRASE}), 200)
    assert answer.headers["content-type"] == "application/x-tar"
    assert PASSPHRASE.encode() not in answer.content and b"BEGIN PRIVATE KEY" not in answer.content

    def audited() -> list[tuple[str, int]]:  # the trail is written once the answer is sent
        entries = check(dev1.api.get("/api/audit", params={"action": "/api/backup"}), 200).json()["records"]
        return [(e["user"], e["status"]) for e in entries]

    wait_until(lambda: audited()[:3] == [("admin", 200), ("admin", 422), ("watcher", 403)], 3,
               "the backups in the audit trail", detail=audited)
