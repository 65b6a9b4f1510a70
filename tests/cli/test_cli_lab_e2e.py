"""End to end: a real two-device lab (separate `tandem serve` processes over HTTPS) driven by
`python -m tandem` in subprocesses. No mocks: real processes, real sockets, real TLS.

Each run picks a random 127.x.y.1 block and a free port, so parallel runs do not collide.
The tests of this module run in order against one lab.
"""

import json
import shutil
import stat
from pathlib import Path

import pytest
from cli_helpers import LabRun, free, gone

from waiting import wait_until

try:
    from tandem.daemon import serve as _serve  # noqa: F401

    DAEMON = True
except ImportError:  # the daemon is written in parallel
    DAEMON = False

pytestmark = pytest.mark.skipif(not DAEMON, reason="tandem.daemon.serve is not available yet")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    lab_dir = tmp_path_factory.mktemp("tandem-lab")
    # --no-demo: this module is about devices and objects; tests/cli/test_cli_failover_e2e.py covers the demo
    with LabRun.started(lab_dir, "--dir", str(lab_dir), "--no-demo") as lab:
        yield lab


def test_lab_up_prints_urls_fingerprints_and_password_files(lab):
    state = lab.state()
    assert [d["name"] for d in state["devices"]] == ["dev-1", "dev-2"]
    second = lab.base.rsplit(".", 1)[0] + ".2"
    assert [d["url"] for d in state["devices"]] == [f"https://{lab.base}:{lab.port}", f"https://{second}:{lab.port}"]
    for device in state["devices"]:
        assert device["name"] in lab.up.stdout
        assert device["url"] in lab.up.stdout
        assert device["fingerprint"] in lab.up.stdout
        assert device["password_file"] in lab.up.stdout
        assert Path(device["data_dir"]) == lab.dir / device["name"]
        password_file = Path(device["password_file"])
        assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
        assert Path(device["log"]).exists()
        assert not gone(device["pid"])


def test_lab_up_again_is_refused(lab):
    result = lab.run("lab", "up", "--devices", "2", "--address-base", lab.base, "--port", str(lab.port))
    assert result.returncode == 1
    assert "already up" in result.stderr


def test_device_show_uses_the_lab(lab):
    device = lab.json("device", "show")
    assert device["name"] == "dev-1"
    assert device["fingerprint"] == lab.device("dev-1")["fingerprint"]
    assert lab.json("--device", "dev-2", "device", "show")["name"] == "dev-2"


def test_explicit_url_fingerprint_and_password_file(lab):
    dev2 = lab.device("dev-2")
    device = lab.json("--url", dev2["url"], "--fingerprint", dev2["fingerprint"], "--password-file",
                      dev2["password_file"], "device", "show")
    assert device["name"] == "dev-2"
    password = Path(dev2["password_file"]).read_text().strip()
    env_device = lab.json("--url", dev2["url"], "--fingerprint", dev2["fingerprint"], "device", "show",
                          TANDEM_PASSWORD=password)
    assert env_device["id"] == device["id"]


def test_wrong_fingerprint_is_refused(lab):
    dev1 = lab.device("dev-1")
    result = lab.run("--url", dev1["url"], "--fingerprint", ":".join(["00"] * 32), "--password-file",
                     dev1["password_file"], "device", "show")
    assert result.returncode == 1
    assert result.stderr.startswith("error: ")
    assert "fingerprint" in result.stderr
    assert "Traceback" not in result.stderr


def test_wrong_password_is_refused(lab, tmp_path):
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")
    result = lab.run("--password-file", str(wrong), "pool", "list")
    assert result.returncode == 1
    assert result.stderr.startswith("error: ")


def test_pool_create_member_add_and_list(lab):
    pool = lab.json("pool", "create", "web", "--lb-method", "round-robin", "--member", "10.0.0.1:80")
    assert pool["name"] == "web" and pool["partition"] == "Common"
    assert [(m["address"], m["port"]) for m in pool["members"]] == [("10.0.0.1", 80)]

    member = lab.json("pool", "member", "add", "web", "10.0.0.2:8080")
    assert (member["address"], member["port"], member["enabled"]) == ("10.0.0.2", 8080, True)

    pools = lab.json("pool", "list")
    assert isinstance(pools, list)
    web = next(p for p in pools if p["name"] == "web")
    assert sorted((m["address"], m["port"]) for m in web["members"]) == [("10.0.0.1", 80), ("10.0.0.2", 8080)]

    assert [p["name"] for p in lab.json("pool", "list", "--filter", "name=we*")] == ["web"]
    assert lab.json("pool", "list", "--filter", "name=nothing*") == []
    members = lab.json("pool", "member", "list", "web")
    assert len(members) == 2

    table = lab.run("pool", "list")
    assert table.returncode == 0
    assert "web" in table.stdout and "round-robin" in table.stdout


def test_update_sends_only_the_options_given(lab):
    pool = lab.json("pool", "update", "web", "--lb-method", "least-connections")
    assert pool["lb_method"] == "least-connections"
    assert len(pool["members"]) == 2  # untouched
    monitor = lab.json("monitor", "create", "hc", "--type", "http", "--path", "/health")
    assert (monitor["type"], monitor["path"], monitor["expected_status"]) == ("http", "/health", 200)
    assert lab.json("monitor", "update", "hc", "--interval", "2")["path"] == "/health"
    assert lab.json("pool", "update", "web", "--monitor", "hc")["monitor"] == "hc"
    assert lab.json("pool", "show", "web")["lb_method"] == "least-connections"
    tcp = lab.json("monitor", "update", "hc", "--type", "tcp")
    assert (tcp["type"], tcp["path"], tcp["expected_status"], tcp["interval"]) == ("tcp", None, None, 2)


def test_member_disable_enable_remove(lab):
    assert lab.json("pool", "member", "disable", "web", "10.0.0.2:8080")["enabled"] is False
    assert lab.json("pool", "member", "enable", "web", "10.0.0.2:8080")["enabled"] is True
    lab.json("pool", "member", "remove", "web", "10.0.0.2:8080")
    assert [(m["address"], m["port"]) for m in lab.json("pool", "member", "list", "web")] == [("10.0.0.1", 80)]


def test_virtual_create(lab):
    virtual = lab.json("virtual", "create", "vs-web", "--address", "10.1.1.1", "--port", "443", "--pool", "web")
    assert (virtual["address"], virtual["port"], virtual["pool"], virtual["enabled"]) == ("10.1.1.1", 443, "web",
                                                                                          True)
    assert lab.json("virtual", "update", "vs-web", "--disable")["enabled"] is False
    assert [v["name"] for v in lab.json("virtual", "list", "--partition", "Common")] == ["vs-web"]


def test_bad_address_names_the_field(lab):
    result = lab.run("virtual", "create", "vs-bad", "--address", "999.1.1.1", "--port", "80")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: ")
    assert "(target: address)" in result.stderr
    assert "Traceback" not in result.stderr

    result = lab.run("--output", "json", "pool", "member", "add", "web", "10.0.0.300:80")
    assert result.returncode == 1
    error = json.loads(result.stderr)["error"]
    assert error["target"] == "address"
    assert error["code"] == "validation_error"


def test_conflict_and_not_found(lab):
    result = lab.run("pool", "create", "web")
    assert result.returncode == 1
    assert result.stderr.startswith("error: ")
    result = lab.run("--output", "json", "pool", "show", "nope")
    assert result.returncode == 1
    assert json.loads(result.stderr)["error"]["code"] == "not_found"


def test_partition_and_user_with_their_own_login(lab, tmp_path):
    assert lab.json("partition", "create", "tenant1", "--description", "first")["description"] == "first"
    password_file = tmp_path / "bob"
    password_file.write_text("bob-password-1\n")
    user = lab.json("user", "create", "bob", "--role", "manager", "--partition", "tenant1",
                    "--password-file", str(password_file))
    assert (user["name"], user["role"], user["partitions"]) == ("bob", "manager", ["tenant1"])
    assert "password" not in user or user["password"] is None

    # a password piped on stdin (no terminal): never on the command line
    created = lab.run("--output", "json", "user", "create", "carol", "--role", "auditor",
                      input="carol-password-1\n")
    assert created.returncode == 0, created.stderr

    whoami_pools = lab.json("--username", "bob", "--password-file", str(password_file), "partition", "list")
    assert {"Common", "tenant1"} <= {p["name"] for p in whoami_pools}
    denied = lab.run("--username", "carol", "pool", "create", "nope", TANDEM_PASSWORD="carol-password-1")
    assert denied.returncode == 1
    assert denied.stderr.startswith("error: ")
    lab.json("user", "delete", "carol")
    names = [u["name"] for u in lab.json("user", "list")]
    assert "bob" in names and "carol" not in names


def test_jobs(lab):
    from tandem.sdk import Partition

    for name in ("bulk-1", "bulk-2"):
        lab.json("partition", "create", name)
    client = lab.client("dev-1")
    try:
        job = Partition.delete_collection(connection=client, name="bulk-*")
    finally:
        client.close()
    jobs = lab.json("job", "list")
    assert job.id in [j["id"] for j in jobs]
    shown = lab.json("job", "show", job.id, "--wait", "5")
    assert (shown["id"], shown["state"]) == (job.id, "succeeded")
    table = lab.run("job", "show", job.id)
    assert table.returncode == 0 and "succeeded" in table.stdout
    assert not {"bulk-1", "bulk-2"} & {p["name"] for p in lab.json("partition", "list")}


def test_lab_status(lab):
    status = lab.json("lab", "status")
    assert [(d["name"], d["alive"], d["health"]) for d in status] == [("dev-1", True, "ok"), ("dev-2", True, "ok")]
    default = "haproxy" if shutil.which("haproxy") else "builtin"  # lab up's default engine: auto
    assert [d["engine"].split(" ")[0] for d in status] == [default, default]
    table = lab.run("lab", "status")
    assert table.returncode == 0
    assert "dev-2" in table.stdout and "running" in table.stdout


def test_lab_kill_and_start(lab):
    # something written to dev-2 before it is killed must survive the kill
    lab.json("--device", "dev-2", "partition", "create", "before-kill")
    pid = lab.device("dev-2")["pid"]
    fingerprint = lab.device("dev-2")["fingerprint"]

    killed = lab.run("lab", "kill", "dev-2")
    assert killed.returncode == 0, killed.stderr
    assert gone(pid)
    status = {d["name"]: d for d in lab.json("lab", "status")}
    assert status["dev-1"]["alive"] is True
    assert status["dev-2"]["alive"] is False
    unreachable = lab.run("--device", "dev-2", "device", "show")
    assert unreachable.returncode == 1
    assert unreachable.stderr.startswith("error: ")
    assert lab.run("lab", "kill", "dev-2").returncode == 1  # not running

    started = lab.run("lab", "start", "dev-2")
    assert started.returncode == 0, started.stderr
    assert lab.device("dev-2")["pid"] != pid
    assert lab.device("dev-2")["fingerprint"] == fingerprint  # same identity, same data dir
    assert "before-kill" in [p["name"] for p in lab.json("--device", "dev-2", "partition", "list")]
    assert lab.run("lab", "start", "dev-2").returncode == 1  # already running


def test_lab_down_stops_everything(lab):
    pids = [d["pid"] for d in lab.state()["devices"]]
    result = lab.run("lab", "down")
    assert result.returncode == 0, result.stderr
    wait_until(lambda: all(gone(pid) for pid in pids), 5, "the lab's devices to exit")
    assert not (lab.dir / "lab.json").exists()
    assert (lab.dir / "dev-1").is_dir()  # data kept without --purge
    status = lab.run("lab", "status")
    assert status.returncode == 1
    assert "no lab is up" in status.stderr
    for port_owner in (lab.base, lab.base.rsplit(".", 1)[0] + ".2"):
        assert free(port_owner, lab.port)
