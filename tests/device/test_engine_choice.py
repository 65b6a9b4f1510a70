"""`tandem serve --engine auto|haproxy|builtin`: the engine chosen once by the management process, shown by
`GET /api/device`, handed to the data plane process; HAProxy asked for but missing stops the start."""

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from devices import free_port
from tandem._version import __version__
from tandem.dataplane.choice import BUILTIN, EngineChoice, EngineUnavailable, choose, haproxy_version
from tandem.dataplane.haproxy_shards import shard_of
from waiting import wait_until

HAPROXY = shutil.which("haproxy")


def dataplane_arguments(pid: int) -> list[str]:
    """The arguments of the data plane process started by management process `pid` (empty: none yet)."""
    for child in children(pid):
        try:
            args = [a.decode() for a in Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0") if a]
        except OSError:
            continue
        if "tandem.dataplane.daemon" in args:
            return args
    return []


def option(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def started_with(device) -> list[str]:
    assert device.process is not None
    wait_until(lambda: dataplane_arguments(device.process.pid), timeout=30, what="the data plane process")
    return dataplane_arguments(device.process.pid)


def test_builtin_engine_when_asked(device_factory):
    device = device_factory("dev-1", extra_args=["--engine", "builtin"])
    with device.client() as client:
        assert client.device()["engine"] == {"name": "builtin", "version": __version__}
        args = started_with(device)
        assert (option(args, "--engine"), option(args, "--runtime-dir")) == (
            "builtin", str(device.data_dir / "run" / "haproxy"))
        serving = wait_until(lambda: client.request("GET", "/api/dataplane"), timeout=30, what="the data plane",
                             retry=lambda error: getattr(error, "status_code", None) == 503)  # not answering yet
        assert serving["process"]["restarts"] == 0  # it runs the engine it was given
        assert serving["engine"] == {"name": "builtin", "version": __version__, "restarts": 0, "events": []}


@pytest.mark.skipif(HAPROXY is None, reason="no haproxy on PATH")
def test_auto_takes_haproxy_when_on_path(device_factory):
    device = device_factory("dev-1", extra_args=["--engine", "auto"])
    version = haproxy_version(HAPROXY)
    with device.client() as client:
        assert client.device()["engine"] == {"name": "haproxy", "version": version}
    assert version[0].isdigit() and "." in version
    args = started_with(device)
    assert (option(args, "--engine"), option(args, "--runtime-dir"), option(args, "--binary")) == (
        "haproxy", str(device.data_dir / "run" / "haproxy"), HAPROXY)
    pid_file = device.data_dir / "run" / "haproxy" / str(shard_of("/Common/v")) / "haproxy.pid"  # its shard's
    with device.client() as client:
        client.request("POST", "/api/virtuals", json={"name": "v", "address": "127.0.0.1", "port": free_port()})
        wait_until(lambda: client.request("GET", "/api/dataplane")["virtuals"].get("/Common/v", {}).get("listening"),
                   timeout=30, what="HAProxy serving", retry=lambda error: getattr(error, "status_code", None) == 503)
        master = int(pid_file.read_text())
        os.kill(master, signal.SIGKILL)  # started again at once, and the device says so
        wait_until(lambda: client.request("GET", "/api/dataplane")["engine"]["restarts"] == 1, timeout=5,
                   what="HAProxy started again")
        engine = client.request("GET", "/api/dataplane")["engine"]
    assert (engine["name"], engine["version"]) == ("haproxy", version)
    assert [(e["kind"], e["message"]) for e in engine["events"]] == [
        ("restarted", f"haproxy (pid {master}) exited with -9: started again (restart 1)")]
    master = wait_until(lambda: int(pid_file.read_text()) != master and int(pid_file.read_text()), timeout=5,
                        what="the new HAProxy's pid")
    # the master writes its pid before it forks its worker: wait for both
    haproxy = wait_until(lambda: len(found := {master, *children(master)}) >= 2 and found, timeout=5,
                         what="the new HAProxy's master and worker")
    assert all(Path(f"/proc/{pid}").exists() for pid in haproxy)
    device.kill()  # kill -9 of the device's daemon: its HAProxy goes with it, nothing left serving
    wait_until(lambda: not any(alive(pid) for pid in haproxy), timeout=5, what="HAProxy gone with its device")


def children(pid: int) -> set[int]:
    """The processes whose parent is `pid`."""
    found = set()
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and int((proc / "stat").read_text().rpartition(")")[2].split()[1]) == pid:
                found.add(int(proc.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting for its parent)."""
    try:
        return (Path(f"/proc/{pid}") / "stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def test_haproxy_asked_but_missing_stops_the_start(tmp_path):
    path = os.pathsep.join(d for d in os.environ.get("PATH", "").split(os.pathsep)
                           if d and not (Path(d) / "haproxy").exists())
    data_dir = tmp_path / "dev-1"
    done = subprocess.run(
        [sys.executable, "-m", "tandem", "serve", "--name", "dev-1", "--data-dir", str(data_dir),
         "--listen", f"127.0.0.1:{free_port()}", "--engine", "haproxy"],
        env=dict(os.environ, PATH=path, TANDEM_ADMIN_PASSWORD="lab-admin-pass"),
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip() == ("tandem serve: --engine haproxy: no haproxy binary on PATH (install the "
                                   "distribution's haproxy package, or use --engine builtin)")
    assert not data_dir.exists()  # refused before anything was written


def fake_haproxy(directory: Path, script: str) -> str:
    directory.mkdir()
    binary = directory / "haproxy"
    binary.write_text(f"#!/bin/sh\n{script}\n")
    binary.chmod(0o755)
    return str(binary)


def test_choose(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    assert choose("builtin") == choose("auto") == BUILTIN == EngineChoice("builtin", __version__, None)
    with pytest.raises(EngineUnavailable, match="no haproxy binary on PATH"):
        choose("haproxy")
    with pytest.raises(EngineUnavailable, match="unknown engine 'nginx'"):
        choose("nginx")  # type: ignore[arg-type]

    good = fake_haproxy(tmp_path / "good", 'echo "HAProxy version 2.9.1-1~bpo12+1 2024/01/31 - https://haproxy.org/"'
                                           '; echo "Status: stable branch"')
    monkeypatch.setenv("PATH", str(tmp_path / "good"))
    assert choose("auto") == choose("haproxy") == EngineChoice("haproxy", "2.9.1", good)
    assert choose("builtin") == BUILTIN

    fake_haproxy(tmp_path / "broken", "echo 'segfault' >&2; exit 139")
    monkeypatch.setenv("PATH", str(tmp_path / "broken"))
    assert choose("auto") == BUILTIN  # logged, and served by the builtin engine
    with pytest.raises(EngineUnavailable, match="did not tell a version"):
        choose("haproxy")


def test_choose_nftables(tmp_path, monkeypatch):
    """The kernel engine only when asked for: it needs nft on PATH and root; auto never takes it."""
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    with pytest.raises(EngineUnavailable, match="no nft binary on PATH"):
        choose("nftables")
    directory = tmp_path / "nft"
    directory.mkdir()
    binary = directory / "nft"
    binary.write_text('#!/bin/sh\necho "nftables v1.0.6 (Lester Gooch #5)"\n')
    binary.chmod(0o755)
    monkeypatch.setenv("PATH", str(directory))
    assert choose("auto") == BUILTIN
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(EngineUnavailable, match="only by root"):
        choose("nftables")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert choose("nftables") == EngineChoice("nftables", "1.0.6", str(binary))
