"""Failover of an HTTPS virtual server on a real network: two `tandem serve --engine haproxy` devices and a
client in network namespaces (see `netlab.py`). The virtual server terminates TLS on the floating address
198.18.0.100:443 with a certificate from a CA the test makes; the client verifies it (CA, SNI name). The
active device's `tandem serve` process is killed with -9 (its link stays up): its HAProxy goes with it,
the standby takes over, and HTTPS answers again from the standby, with the same certificate.

Needs root, iproute2 and HAProxy (skipped otherwise; CI runs as root).
"""

import contextlib
import http.client
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from netlab import TRAFFIC_GROUP, VIP, Host, Lab, available, check, formed, kill_group, outside_host

from pki import TestCA
from waiting import wait_until

pytestmark = pytest.mark.skipif(available() is not None or shutil.which("haproxy") is None,
                                reason=available() or "needs the haproxy binary")

INTERVAL, TIMEOUT = 0.2, 1.0
"""The default heartbeat timers."""
MARGIN = 2.0
"""Slack over the heartbeat timeout for a loaded machine (as in test_netns_failover.py), here also for
the new active's HAProxy reload and a TLS handshake."""
HTTPS_PORT = 443
HTTP_BACKEND_PORT = 9001
SNI = "secure.test"


@dataclass(frozen=True)
class Answer:
    """What one HTTPS request through the virtual server got: when, which host's backend, which certificate
    (or what went wrong)."""

    at: float
    host: str | None
    fingerprint: str | None
    error: str | None = None


def https_get(context: ssl.SSLContext, timeout: float = 0.5) -> Answer:
    """One verified HTTPS request to the virtual server (from the calling namespace), SNI `secure.test`."""
    host = fingerprint = error = None
    connection = http.client.HTTPConnection(VIP, HTTPS_PORT, timeout=timeout)
    try:
        connection.sock = context.wrap_socket(socket.create_connection((VIP, HTTPS_PORT), timeout=timeout),
                                              server_hostname=SNI)
        served = connection.sock.getpeercert(binary_form=True)
        fingerprint = x509.load_der_x509_certificate(served).fingerprint(hashes.SHA256()).hex(":") if served else None
        connection.request("GET", "/", headers={"Host": SNI})
        response = connection.getresponse()
        body = response.read().decode()
        if response.status == 200:
            host = body.split("\n", 1)[0]
        else:
            error = f"status {response.status}"
    except (OSError, http.client.HTTPException) as failed:
        error = f"{type(failed).__name__}: {failed}"
    finally:
        connection.close()
    return Answer(time.monotonic(), host, fingerprint, error)


def poll(context: ssl.SSLContext, until: str, seconds: float) -> list[Answer]:
    """HTTPS requests every 10 ms until `until` answers (or `seconds` pass): every answer, in order."""
    answers: list[Answer] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        answers.append(https_get(context))
        if answers[-1].host == until:
            break
        time.sleep(0.01)
    return answers


def haproxy_pids(host: Host) -> list[int]:
    """The HAProxy processes (master and workers) of `host`'s device: their command line names its data dir."""
    pids = []
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            command = (proc / "cmdline").read_bytes()
            if proc.name.isdigit() and b"haproxy" in command.split(b"\0")[0] and str(host.data_dir).encode() in command:
                pids.append(int(proc.name))
    return pids


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """The lab formed with HAProxy on both devices, each with an HTTP backend on 127.0.0.1:9001 that answers
    its host's name. Always torn down; the devices' logs are printed (shown when the test fails)."""
    backends: list[subprocess.Popen] = []
    with formed(Lab(tmp_path, interval=INTERVAL, timeout=TIMEOUT, engine="haproxy"), log_lines=60) as lab:
        try:
            for host in lab.hosts.values():
                backends.append(subprocess.Popen(
                    ["ip", "netns", "exec", host.ns.name, sys.executable, "-m", "tandem.lab.backends", "--name",
                     host.name, "--listen", f"127.0.0.1:{HTTP_BACKEND_PORT}"], stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL, start_new_session=True, preexec_fn=outside_host))
            yield lab
        finally:
            for backend in backends:
                kill_group(backend)


def test_https_virtual_server_fails_over_with_its_certificate(lab: Lab) -> None:
    ca = TestCA()
    issued = ca.issue(SNI, SNI)
    context = ssl.create_default_context(cadata=ca.pem)
    context.verify_flags &= ~ssl.VERIFY_X509_STRICT  # the test CA's leaves carry no key identifiers
    a, b = lab.a, lab.b
    assert [h.api.get("/api/device").json()["engine"]["name"] for h in (a, b)] == ["haproxy", "haproxy"]
    check(a.api.post("/api/certificates", json={"name": "secure", "certificate": issued.chain, "key": issued.key}),
          201)
    check(a.api.post("/api/pools", json={"name": "tls-web", "members": [
        {"address": "127.0.0.1", "port": HTTP_BACKEND_PORT}]}), 201)
    check(a.api.post("/api/virtuals", json={
        "name": "secure", "address": VIP, "port": HTTPS_PORT, "protocol": "https", "pool": "tls-web",
        "certificates": ["secure"], "traffic_group": TRAFFIC_GROUP}), 201)

    # Before: a serves HTTPS with the configured certificate; b (standby) holds no address, serves nothing.
    before = lab.ns["c"].run(poll, context, "a", 15)
    assert before[-1].host == "a", f"HTTPS never answered from a: {before[-3:]}\n{lab.describe()}"
    assert before[-1].fingerprint == issued.fingerprint
    assert [lab.ns["c"].run(https_get, context).host for _ in range(3)] == ["a"] * 3
    assert haproxy_pids(a) and VIP not in b.addresses()

    # kill -9 of a's `tandem serve` process alone (link up, its other processes left to follow it), while
    # the client polls over HTTPS.
    polling = lab.ns["c"].submit(poll, context, "b", TIMEOUT + MARGIN + 5)
    time.sleep(0.3)
    assert a.daemon is not None
    killed_at = time.monotonic()
    a.daemon.send_signal(signal.SIGKILL)
    answers = polling.result()
    left = haproxy_pids(a)
    after_kill = [x for x in answers if x.at > killed_at]
    timeline = [(round(x.at - killed_at, 3), x.host or x.error) for x in after_kill]
    assert answers[-1].host == "b", f"HTTPS never answered from b: {timeline[-5:]}\n{lab.describe()}"
    takeover = answers[-1].at - killed_at
    assert takeover < TIMEOUT + MARGIN, f"HTTPS answered from b after {takeover:.2f} s: {timeline}\n{lab.describe()}"
    assert answers[-1].fingerprint == issued.fingerprint

    # a's HAProxy went with its device; b is active, holds the address and serves with the same certificate.
    wait_until(lambda: not haproxy_pids(a), 5, "a's HAProxy to exit with its device", lambda: haproxy_pids(a))
    group = b.traffic_group()
    assert (group["state"], group["active_device"]) == ("active", "b"), group
    assert VIP in b.addresses() and VIP not in a.addresses()
    later = [lab.ns["c"].run(https_get, context) for _ in range(5)]
    assert [(x.host, x.fingerprint) for x in later] == [("b", issued.fingerprint)] * 5
    stats = check(b.api.get("/api/virtuals/Common/secure/stats"), 200).json()
    assert stats["listening"] is True and stats["connections_total"] >= 5, stats
    print(f"HTTPS takeover {takeover:.3f} s; a's HAProxy processes left then: {left}; answers after the kill: "
          f"{timeline}", file=sys.stderr)
