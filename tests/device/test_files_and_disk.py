"""A device's files are private whatever the umask, and a full disk refuses writes cleanly (507), keeps
reads going and recovers by itself once there is room again."""

import contextlib
import errno
import os
import sqlite3
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_http import error_of, session

from devices import RunningDevice
from waiting import wait_until

PRIVATE_FILES = ("tandem.db", "tandem.db-wal", "tandem.db-shm", "identity/key.pem", "identity/cert.pem")
PRIVATE_DIRS = (".", "identity", "run")
DISK_SIZE = "8m"
MEMBERS = [{"address": f"10.0.{i // 200}.{i % 200 + 1}", "port": 80} for i in range(40)]
"""Members of each pool the full-disk test writes: a few KiB a write, so the disk fills in a few hundred."""


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def modes(data_dir: Path) -> dict[str, int]:
    return {name: stat.S_IMODE((data_dir / name).stat().st_mode) for name in (*PRIVATE_DIRS, *PRIVATE_FILES)}


PRIVATE = {**dict.fromkeys(PRIVATE_DIRS, 0o700), **dict.fromkeys(PRIVATE_FILES, 0o600)}


def test_store_and_identity_are_private_whatever_the_umask_and_made_so_at_start(tmp_path):
    device = RunningDevice("private", tmp_path / "private")
    try:
        with umask(0):  # the widest: every file the daemon creates without an explicit mode is world-writable
            device.start()
        assert session(device).post("/api/pools", json={"name": "p"}).status_code == 201
        assert modes(device.data_dir) == PRIVATE
        device.stop()
        # a data directory of an earlier version, or loosened by hand: made private again at start
        for name in PRIVATE_DIRS:
            (device.data_dir / name).chmod(0o755)
        for name in PRIVATE_FILES:
            (device.data_dir / name).chmod(0o644)
        with umask(0):
            device.start()
        assert session(device).post("/api/pools", json={"name": "q"}).status_code == 201
        assert modes(device.data_dir) == PRIVATE
    finally:
        device.stop()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of `DISK_SIZE` mounted for the test (root only), unmounted after it."""
    if os.geteuid() != 0:
        pytest.skip("filling a disk needs a small tmpfs, and mounting one needs root (CI runs as root)")
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE}", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "--lazy", str(mount_point)], check=False)


@pytest.fixture
def device_on_small_disk(small_disk: Path) -> Iterator[RunningDevice]:
    """A device whose data directory is the whole small disk (its log is outside it)."""
    device = RunningDevice("full", small_disk)
    try:
        yield device.start()
    finally:
        device.stop()


def fill(disk: Path) -> Path:
    """Fill `disk` to the last byte with one file; returns the file."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError as error:
            assert error.errno == errno.ENOSPC, error
    return filler


def test_a_full_disk_refuses_writes_with_507_keeps_reads_and_recovers_without_a_gap(device_on_small_disk):
    device = device_on_small_disk
    api = session(device)  # one connection throughout: any connection the device drops fails the test
    device_id = api.get("/api/device").json()["id"]
    group = {"name": "g", "type": "sync-only", "members": [device.name]}  # its partition's writes get sequence numbers
    assert api.post("/api/device-groups", json=group).status_code == 201

    def create(n: int):
        return api.post("/api/pools", json={"name": f"p{n}", "description": "x" * 255, "members": MEMBERS})

    acknowledged = [n for n in range(3) if create(n).status_code == 201]
    assert acknowledged == [0, 1, 2]
    filler = fill(device.data_dir)
    refused = None
    for n in range(3, 3000):  # the WAL's free room takes a few more before the disk says no
        response = create(n)
        if response.status_code != 201:
            refused = n, response
            break
        acknowledged.append(n)
    assert refused is not None, "every write succeeded on a full disk"
    n, response = refused
    assert response.status_code == 507, response.text
    assert error_of(response)["code"] == "insufficient_storage"
    assert "nothing was changed" in error_of(response)["message"]
    for _ in range(3):  # still refused cleanly, not a 500 once the first failure left the store in a bad state
        assert create(n).status_code == 507

    # the WAL cannot be copied into the database meanwhile: the checkpoint thread tries again later
    db_file = device.data_dir / "tandem.db"
    wait_until(lambda: "cannot copy the WAL into the database" in device.log_path.read_text(), 30,
               "a checkpoint refused by the full disk")
    size_when_full = db_file.stat().st_size

    # reads go on, and so do logins (their token, a queued write, is refused: the writer goes on)
    other = session(device)
    assert other.get(f"/api/pools/Common/p{acknowledged[-1]}").status_code == 200
    assert api.get(f"/api/pools/Common/p{n}").status_code == 404
    assert api.get("/api/pools", params={"fields": "name"}).status_code == 200

    # room again: writes succeed at once, without a restart
    filler.unlink()
    for m in range(n, n + 5):
        response = create(m)
        assert response.status_code == 201, response.text
        acknowledged.append(m)
    assert other.delete(f"/api/pools/Common/p{acknowledged.pop(0)}").status_code == 204
    wait_until(lambda: db_file.stat().st_size > size_when_full, 30, "the WAL copied into the database again")
    assert "Traceback" not in device.log_path.read_text()

    # the commit sequence has no gap, and every acknowledged write is there
    device.stop()
    with contextlib.closing(sqlite3.connect(device.data_dir / "tandem.db")) as db:
        seqs = [seq for (seq,) in db.execute("SELECT seq FROM log WHERE scope = 'g' AND origin = ? ORDER BY id",
                                             (device_id,))]
        (applied,) = db.execute("SELECT seq FROM versions WHERE scope = 'g' AND origin = ?", (device_id,)).fetchone()
        pools = {name for (name,) in db.execute("SELECT name FROM objects WHERE kind = 'pools' AND deleted = 0")}
    assert seqs == list(range(1, len(seqs) + 1)) and applied == seqs[-1]
    assert pools == {f"p{m}" for m in acknowledged}
