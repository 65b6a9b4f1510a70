"""A device keeps what it acknowledged: across restarts and kill -9 at any moment."""

import os
import stat
import threading
import time

import httpx
from api_http import session

from devices import RunningDevice


def test_first_start_creates_identity_and_admin_and_restart_keeps_them(device_factory):
    device = device_factory("dev-1")
    key = device.data_dir / "identity" / "key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(device.data_dir.stat().st_mode) == 0o700
    fingerprint = device.fingerprint
    api = session(device)
    device_id = api.get("/api/device").json()["id"]
    assert api.post("/api/pools", json={"name": "kept"}).status_code == 201
    auditor = {"name": "aud", "role": "auditor", "password": "aud-password"}
    assert api.post("/api/users", json=auditor).status_code == 201
    device.admin_password = "a-different-password"  # ignored: the admin exists already
    device.restart()
    assert device.fingerprint == fingerprint
    api = session(device, password="lab-admin-pass")
    assert api.get("/api/device").json()["id"] == device_id
    assert api.get("/api/pools/Common/kept").status_code == 200
    assert session(device, "aud", "aud-password").get("/api/pools").status_code == 200
    log = device.log_path.read_text()
    assert "lab-admin-pass" not in log


def test_generated_admin_password_goes_to_a_private_file_and_never_to_the_log(tmp_path, monkeypatch):
    monkeypatch.delenv("TANDEM_ADMIN_PASSWORD", raising=False)
    device = RunningDevice("gen", tmp_path / "gen", admin_password="")
    try:
        device.start()
        password_file = device.data_dir / "admin-password"
        assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
        password = password_file.read_text().strip()
        assert len(password) >= 16
        assert session(device, password=password).get("/api/device").status_code == 200
        assert password not in device.log_path.read_text()
    finally:
        device.stop()


def test_admin_password_file_option(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("from-a-file-123\n")
    device = RunningDevice("pwf", tmp_path / "pwf", admin_password="",
                           extra_args=["--admin-password-file", str(secret)])
    try:
        device.start()
        assert session(device, password="from-a-file-123").get("/api/device").status_code == 200
        assert not (device.data_dir / "admin-password").exists()
    finally:
        device.stop()


def test_a_data_dir_belongs_to_one_device(device_factory, tmp_path):
    device = device_factory("dev-1")
    device.stop()
    impostor = RunningDevice("dev-2", device.data_dir, port=device.port)
    try:
        impostor.start()
        raise AssertionError("a device started on another device's data dir")
    except RuntimeError as error:
        assert "holds device 'dev-1'" in str(error)


def test_every_acknowledged_write_survives_kill_9_during_a_stream_of_writes(device):
    """Writers add members as fast as they can; the daemon is killed with -9 mid-stream. Every member
    whose create was answered 201 must be there after restart."""
    api = session(device)
    assert api.post("/api/pools", json={"name": "stream"}).status_code == 201
    token = api.headers["Authorization"]
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(worker: int) -> None:
        client = httpx.Client(base_url=device.url, verify=False, headers={"Authorization": token}, timeout=5)
        i = 0
        while not stop.is_set():
            address = f"10.{worker}.{i // 256}.{i % 256}"
            try:
                response = client.post("/api/pools/Common/stream/members", json={"address": address, "port": 80})
            except httpx.HTTPError:
                return  # the daemon died under us: that write was never acknowledged
            if response.status_code == 201:
                with lock:
                    acknowledged.append(f"{address}:80")
            i += 1

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    device.kill()
    stop.set()
    for thread in threads:
        thread.join()
    assert len(acknowledged) > 100, "the writers barely wrote: the test proves nothing"
    device.start()
    api = session(device)
    stored = set()
    page = api.get("/api/pools/Common/stream/members", params={"limit": 10000}).json()
    stored.update(f"{m['address']}:{m['port']}" for m in page["records"])
    missing = set(acknowledged) - stored
    assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {sorted(missing)[:3]}"
    log = api.get("/api/device").json()["last_commit_id"]
    assert log >= len(acknowledged)


def test_commit_ids_increase_and_every_write_is_one_commit(device):
    api = session(device)
    first = api.get("/api/device").json()["last_commit_id"]
    api.post("/api/pools", json={"name": "a", "members": [{"address": "10.0.0.1", "port": 80},
                                                          {"address": "10.0.0.2", "port": 80}]})
    after_pool = api.get("/api/device").json()["last_commit_id"]
    assert after_pool == first + 1  # the pool, its member list included: one commit
    api.post("/api/pools", json={"name": "b", "monitor": "missing"})  # refused: no commit
    assert api.get("/api/device").json()["last_commit_id"] == after_pool
    device.kill()
    device.start()
    api = session(device)
    api.post("/api/pools", json={"name": "c"})
    assert api.get("/api/device").json()["last_commit_id"] == after_pool + 1
    assert os.path.exists(device.data_dir / "tandem.db")
