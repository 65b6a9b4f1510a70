"""`tandem peer`: an offer, its acceptance with a passphrase file, a mirror, and the relationship's end,
run as separate processes against two lab clusters."""

import json
from pathlib import Path

from cli_helpers import run_tandem, subprocess_env
from cluster_helpers import check
from peering_helpers import Site

from devices import ADMIN_PASSWORD
from waiting import wait_until


def tandem(site: Site, *args: str, ok: bool = True, **env: str) -> str:
    device = site.nodes[0].device
    result = run_tandem("--url", device.url, "--fingerprint", device.fingerprint, *args,
                        env=subprocess_env(TANDEM_PASSWORD=ADMIN_PASSWORD, COLUMNS="200", **env))
    assert (result.returncode == 0) == ok, (result.returncode, result.stdout, result.stderr)
    return result.stdout if ok else result.stderr


def test_offer_accept_mirror_and_delete_from_the_command_line(sites: tuple[Site, Site], tmp_path: Path) -> None:
    a, b = sites
    made = json.loads(tandem(a, "-o", "json", "peer", "create", "--generate", "--expiry", "PT1H", "--name", "to-west"))
    passphrase = made["authentication"]["passphrase"]
    shown = tandem(a, "peer", "list")
    assert "to-west" in shown and "pending" in shown and passphrase not in shown

    secret = tmp_path / "passphrase"
    secret.write_text(passphrase + "\n")
    args = [arg for address in a.addresses for arg in ("--address", address)]
    accepted = tandem(b, "peer", "create", *args, "--passphrase-file", str(secret))
    assert "available" in accepted and "east" in accepted
    assert passphrase not in accepted, "a passphrase given is never shown back"

    refused = tandem(b, "peer", "create", "--passphrase-file", str(secret), ok=False)
    assert "a passphrase alone is not enough" in refused

    check(b.api.post("/api/partitions", json={"name": "dr"}), 201)
    check(b.api.post("/api/pools", json={"partition": "dr", "name": "app"}), 201)
    assert "mirroring dr to east" in tandem(b, "peer", "mirror", "dr", "--to", "east")
    wait_until(lambda: "dr/app" in a.nodes[1].config(["dr"])["pools"], 15, "dr mirrored to east")
    mirrors = json.loads(tandem(b, "-o", "json", "peer", "mirrors", "east"))
    assert [m["partition"] for m in mirrors] == ["dr"]
    tandem(b, "peer", "unmirror", "dr", "--to", "east")
    wait_until(lambda: a.peer()["mirrored_in"] == [], 10, "east to own its copy")
    check(a.api.post("/api/pools", json={"partition": "dr", "name": "local"}), 201)

    report = json.loads(tandem(a, "-o", "json", "peer", "delete", "to-west"))
    assert report["remote_removed"] is True
    assert json.loads(tandem(a, "-o", "json", "peer", "list")) == []
