#!/usr/bin/env python3
"""Failover benchmark: how long the floating address takes to answer again after the active device dies,
beside keepalived (VRRP) measured the same way on the same kind of topology in the same run.

The lab (tests/netns/netlab.py) is the one of the reference script keepalived-takeover (`common.ANCHORS`): a bridge
namespace and three hosts on veth, addresses in 198.18.0.0/15; the two routers are Tandem devices
(`tandem serve --addresses linux`), a first in HA order, each proxying the virtual server
198.18.0.100:8080 to a local backend that answers the host's name. Each run, as the anchor: a active
and settled, the client host polls the virtual address (TCP connect + read, 50 ms timeouts, every
5 ms) and the active host fails at a random phase of the heartbeats (link down, then its processes
killed with -9); the sample is the time from the failure to the first answer from b. Then a comes
back as a rebooted host, b hands the traffic group back (force standby) and the next run starts.

Runs with detection at its default (adaptive, failover/detector.py) at heartbeat intervals of 0.2 s (the
default), 0.05 s and 1 s, each beside keepalived at the same advert interval. Then the stress run: Tandem and
keepalived on the same two hosts at 0.2 s, a CPU hog on each, the link between them losing 5 % of the heartbeats
and adverts and holding each 20 +/- 20 ms (tests/netns/impair.py: this kernel has no netem) for 5 minutes;
every transition either makes is spurious. Before it, the gateway runs: a gateway tracker (host d, every 0.2 s) on
the traffic group, a's route to it cut (a blackhole route), b active once it outscored a for the score hold
(0.5 s). Needs root, iproute2 and keepalived (apt-get install keepalived;
without it the keepalived figures are null). Progress on stderr; last, one JSON line: takeover_median_s,
takeover_p99_s, fast_takeover_median_s, fast_takeover_p99_s, slow_takeover_median_s, detect_median_s and
fast_detect_median_s (failure to b's transition to active, the rest being the data plane, the gratuitous ARP and
the client's polling), keepalived_median_s, keepalived_fast_median_s, keepalived_slow_median_s,
ratio_vs_keepalived (ours at 0.2 s / keepalived at advert 0.2 s), fast_ratio_vs_keepalived,
slow_ratio_vs_keepalived, spurious_transitions, keepalived_spurious_transitions, gateway_takeover_s (a's tracker
down to b active: median; gateway_takeover_max_s), gateway_detect_s (the cut to a's tracker down), runs, machine.

    .venv/bin/python bench/failover.py [--runs 20] [--slow-runs 6] [--gateway-runs 5] [--stress-seconds 300]
                                       [--no-keepalived]
"""

import argparse
import importlib.machinery
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

from common import anchor, machine, percentile

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "netns"))

import impair  # noqa: E402
import netlab  # noqa: E402

ANCHOR = anchor("keepalived-takeover")
CLIENT_DEADLINE = 10.0
"""Seconds the client polls before a run counts as failed (the timers are at most 1 s)."""
REBUILDS = 3
"""Times a lab that cannot be restored is built anew before the benchmark gives up."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def hand_back(lab: netlab.Lab) -> None:
    """After a came back: b hands the traffic group back to a (force standby), then clears its decline."""
    netlab.wait_until(lambda: lab.a.state() == "standby" and all(
        m["alive"] for m in lab.a.traffic_group()["members"]) and lab.b.state() == "active",
        20, "a back as standby beside an active b", lab.describe)
    netlab.check(lab.b.api.post(f"/api/failover/traffic-groups/{netlab.TRAFFIC_GROUP}/force-standby"), 200)
    lab.wait_roles("a", 20)
    netlab.check(lab.b.api.post("/api/failover/online"), 200)


def one_run(lab: netlab.Lab) -> tuple[float, float] | None:
    """One failure of a, as the anchor fails its master: the takeover time and, of it, the time b took to
    become active (its event's wall-clock stamp); None when b did not take over."""
    time.sleep(3 * lab.interval + 0.5)  # settled: b has heard a's heartbeats
    log(f"b's view of a's heartbeats: {lab.b.failover()['heartbeat'].get('peers', {}).get('a')}")
    client = subprocess.Popen(["ip", "netns", "exec", lab.ns["c"].name, sys.executable, netlab.__file__,
                               "--client", "b", "--deadline", str(CLIENT_DEADLINE)],
                              stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3 + random.uniform(0, lab.interval))  # the client is polling; fail at any phase
        failed_at, failed_wall = time.monotonic(), time.time()
        lab.fail("a")
        out, _ = client.communicate(timeout=CLIENT_DEADLINE + 10)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    if out.strip() == "timeout":
        log(f"run without takeover within {CLIENT_DEADLINE} s: {lab.describe()}")
        return None
    takeover = float(out) - failed_at  # one monotonic clock for every namespace
    became_active = next(e for e in reversed(lab.b.events()) if e["to_state"] == "active")
    return takeover, became_active["at"] - failed_wall


def measure(work: Path, interval: float, runs: int) -> tuple[list[float], list[float], int]:
    """`runs` failures at the heartbeat interval `interval` (detection at its default, adaptive): the takeover
    samples, the detection samples (failure to b active) and the number of runs without takeover."""
    samples: list[float] = []
    detections: list[float] = []
    failed = 0
    rebuilds = 0
    formed = False
    label = f"{interval} s"
    while len(samples) + failed < runs:
        lab = netlab.Lab(work / f"{interval}-{rebuilds}", interval=interval)
        try:
            lab.build()
            lab.start()
            lab.form()
            formed = True
            log(f"[{label}] lab formed ({lab.prefix})")
            while len(samples) + failed < runs:
                sample = one_run(lab)
                if sample is None:
                    failed += 1
                else:
                    samples.append(round(sample[0], 4))
                    detections.append(round(sample[1], 4))
                n = len(samples) + failed
                log(f"[{label}] run {n}/{runs}: " + ("no takeover" if sample is None else
                                                    f"{sample[0]:.3f} s (b active after {sample[1]:.3f} s)"))
                lab.recover("a")
                hand_back(lab)
        except (AssertionError, RuntimeError, OSError) as error:
            rebuilds += 1
            log(f"[{label}] lab failed: {error}")
            for host in lab.hosts.values():
                log(f"--- {host.name}.log (last lines)\n{host.log_tail(15)}")
            if not formed:
                raise SystemExit(f"the lab never formed at {label}: {error}") from None
            if rebuilds > REBUILDS:
                raise SystemExit(f"the lab failed {rebuilds} times at {label}; giving up") from None
        finally:
            lab.close()
    return samples, detections, failed


def keepalived(advert: float, runs: int) -> dict | None:
    """The anchor's figure at `advert`, or None when keepalived is missing or the anchor fails."""
    if shutil.which("keepalived") is None:
        log("keepalived is not installed (apt-get install keepalived): no reference figure")
        return None
    log(f"[keepalived advert {advert} s] {runs} runs")
    result = subprocess.run([sys.executable, str(ANCHOR), "--advert", str(advert), "--runs", str(runs)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        log(f"keepalived-takeover failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
        return None
    figure = json.loads(result.stdout.strip().splitlines()[-1])
    log(f"[keepalived advert {advert} s] median {figure['median_s']} s "
        f"({figure['min_s']}-{figure['max_s']}, {len(figure['samples'])} runs)")
    return figure


def summary(samples: list[float]) -> dict:
    if not samples:
        return {"median": None, "p99": None, "min": None, "max": None}
    return {"median": round(percentile(samples, 0.5), 4),
            "p99": round(percentile(samples, 0.99), 4) if len(samples) > 1 else samples[0],
            "min": min(samples), "max": max(samples)}


STRESS_VIP = "198.18.0.200"
"""keepalived's virtual address in the stress run (Tandem's is netlab.VIP)."""


def keepalived_conf(name: str, priority: int, advert: float) -> str:
    """The anchor's keepalived configuration, for the address `STRESS_VIP`."""
    loader = importlib.machinery.SourceFileLoader("keepalived_anchor", str(ANCHOR))
    anchor_module = types.ModuleType(loader.name)
    loader.exec_module(anchor_module)
    anchor_module.VIP = STRESS_VIP
    return anchor_module.keepalived_conf(name, priority, advert)


def spawn(lab: netlab.Lab, host: str, command: list[str], log_path: Path | None = None) -> subprocess.Popen:
    output = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115  (the child holds it)
    return subprocess.Popen(["ip", "netns", "exec", lab.ns[host].name, *command], stdout=output,
                            stderr=subprocess.STDOUT, start_new_session=True)


def keepalived_transitions(log_path: Path) -> int:
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    return text.count("Entering MASTER STATE") + text.count("Entering BACKUP STATE")


def stress(work: Path, interval: float, seconds: float, loss: float, delay: float, jitter: float,
           with_keepalived: bool = True) -> dict:
    """Tandem (heartbeats at `interval`, detection at its default) and keepalived (advert `interval`) on the same
    two hosts for `seconds`, each host running a CPU hog, the link between them losing `loss` of the heartbeats
    and adverts and holding each `delay` +/- `jitter` s: the transitions each made (none is called for)."""
    lab = netlab.Lab(work / "stress", interval=interval)
    started: list[subprocess.Popen] = []
    try:
        lab.build()
        lab.start()
        lab.form()
        with_keepalived = with_keepalived and shutil.which("keepalived") is not None and ANCHOR.exists()
        logs = {host: work / f"keepalived-{host}.log" for host in ("a", "b")}
        if with_keepalived:
            for host, priority in (("a", 150), ("b", 100)):
                conf = work / f"keepalived-{host}.conf"
                conf.write_text(keepalived_conf(host, priority, interval))
                started.append(spawn(lab, host, ["keepalived", "-n", "-l", "-D", "-P", "-f", str(conf), "-p",
                                                 str(work / f"ka-{host}.pid"), "-r", str(work / f"vrrp-{host}.pid")],
                                     logs[host]))
            netlab.wait_until(lambda: keepalived_transitions(logs["a"]) >= 1 and keepalived_transitions(logs["b"]) >= 1,
                              30, "keepalived master on a, backup on b")
            time.sleep(3)
        started.append(impair.impair(lab, "b", loss, delay, jitter))
        for host in ("a", "b"):
            started.append(spawn(lab, host, [sys.executable, "-c", "while True: pass"]))
        time.sleep(5)  # the relay in place (the link cut while it starts) and the hogs running: from now on, calm
        before = {host: keepalived_transitions(path) for host, path in logs.items()}
        since = time.time()
        log(f"[stress] {seconds:.0f} s: CPU hogs on a and b, the a-b link losing {loss:.0%} of heartbeats and "
            f"holding them {delay * 1000:.0f} +/- {jitter * 1000:.0f} ms")
        time.sleep(seconds)
        tandem = [event for host in (lab.a, lab.b) for event in host.events() if event["at"] >= since]
        for event in tandem:
            log(f"[stress] tandem transition: {event}")
        spurious_keepalived = (sum(keepalived_transitions(path) - before[host] for host, path in logs.items())
                               if with_keepalived else None)
        path_reports = lab.b.failover()["heartbeat"].get("peers", {})
        log(f"[stress] tandem: {len(tandem)} transitions, keepalived: {spurious_keepalived}; b's view of the path:"
            f" {path_reports}")
        return {"spurious_transitions": len(tandem), "keepalived_spurious_transitions": spurious_keepalived}
    finally:
        for process in started:
            netlab.kill_group(process)
        lab.close()


GATEWAY_TRACKER = {"type": "gateway", "target": netlab.ADDR["d"], "weight": 50, "interval": 0.2, "timeout": 0.2}
"""The tracker of the gateway run: host d, pinged every 0.2 s, down after 2 failed checks (its defaults)."""


def gateway_runs(work: Path, runs: int) -> tuple[list[float], list[float]]:
    """`runs` times: a's route to the gateway (host d) cut; the seconds from a's tracker going down to b active (the
    score hold, 0.5 s, included), and from the cut to the tracker going down (its detection)."""
    takeovers, detections = [], []
    lab = netlab.Lab(work / "gateway", others=("d",))
    try:
        lab.build()
        lab.start()
        lab.form()
        netlab.check(lab.a.api.patch(f"/api/traffic-groups/{netlab.TRAFFIC_GROUP}", json={
            "trackers": [GATEWAY_TRACKER], "score_hold": 0.5}), 200)
        a_ns, route = lab.ns["a"].name, f"{netlab.ADDR['d']}/32"
        for run in range(runs):
            netlab.wait_until(lambda: [t["up"] for t in lab.a.failover()["trackers"]] == [True]
                              and lab.a.state() == "active", 20, "a active with its gateway tracker up", lab.describe)
            time.sleep(1.0)
            cut = time.time()
            netlab.sh("ip", "-n", a_ns, "route", "add", "blackhole", route)
            netlab.wait_until(lambda: lab.b.state() == "active", 10, "b active once a lost its gateway", lab.describe)
            became_active = next(e for e in reversed(lab.b.events()) if e["to_state"] == "active")["at"]
            down_at = lab.a.failover()["trackers"][0]["changed_at"]
            takeovers.append(round(became_active - down_at, 4))
            detections.append(round(down_at - cut, 4))
            log(f"[gateway] run {run + 1}/{runs}: b active {takeovers[-1]:.3f} s after a's tracker went down "
                f"({detections[-1]:.3f} s after the cut)")
            netlab.sh("ip", "-n", a_ns, "route", "del", "blackhole", route)
            netlab.wait_until(lambda: [t["up"] for t in lab.a.failover()["trackers"]] == [True], 10,
                              "a's gateway tracker up again")
            netlab.check(lab.b.api.post(f"/api/failover/traffic-groups/{netlab.TRAFFIC_GROUP}/force-standby"), 200)
            lab.wait_roles("a", 20)
            netlab.check(lab.b.api.post("/api/failover/online"), 200)
    finally:
        lab.close()
    return takeovers, detections


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="failures at 0.2 s and at 0.05 s")
    parser.add_argument("--slow-runs", type=int, default=6, help="failures at 1 s")
    parser.add_argument("--stress-seconds", type=float, default=300.0)
    parser.add_argument("--gateway-runs", type=int, default=5)
    parser.add_argument("--no-keepalived", action="store_true", help="skip the keepalived reference")
    args = parser.parse_args()
    reason = netlab.available()
    if reason:
        raise SystemExit(f"bench/failover.py: {reason}")

    ours: dict[float, dict] = {}
    detect: dict[float, dict] = {}
    failed = 0
    ka: dict[float, dict | None] = {}
    with tempfile.TemporaryDirectory(prefix="tandem-bench-failover-") as work:
        for interval, runs in ((0.2, args.runs), (0.05, args.runs), (1.0, args.slow_runs)):
            samples, detections, missed = measure(Path(work), interval, runs)
            ours[interval], detect[interval], failed = summary(samples), summary(detections), failed + missed
            log(f"tandem {interval} s: median {ours[interval]['median']} s, p99 {ours[interval]['p99']} s "
                f"({ours[interval]['min']}-{ours[interval]['max']})")
            ka[interval] = None if args.no_keepalived else keepalived(interval, runs)
        gateway, gateway_detect = gateway_runs(Path(work), args.gateway_runs)
        calm = stress(Path(work), 0.2, args.stress_seconds, loss=0.05, delay=0.02, jitter=0.02,
                      with_keepalived=not args.no_keepalived)

    def ratio(interval: float) -> float | None:
        mine, reference = ours[interval]["median"], ka[interval]
        return round(mine / reference["median_s"], 2) if mine and reference else None

    print(json.dumps({
        "takeover_median_s": ours[0.2]["median"], "takeover_p99_s": ours[0.2]["p99"],
        "fast_takeover_median_s": ours[0.05]["median"], "fast_takeover_p99_s": ours[0.05]["p99"],
        "slow_takeover_median_s": ours[1.0]["median"],
        "detect_median_s": detect[0.2]["median"], "fast_detect_median_s": detect[0.05]["median"],
        "keepalived_median_s": ka[0.2]["median_s"] if ka[0.2] else None,
        "keepalived_fast_median_s": ka[0.05]["median_s"] if ka[0.05] else None,
        "keepalived_slow_median_s": ka[1.0]["median_s"] if ka[1.0] else None,
        "ratio_vs_keepalived": ratio(0.2), "fast_ratio_vs_keepalived": ratio(0.05),
        "slow_ratio_vs_keepalived": ratio(1.0),
        **calm, "stress_s": args.stress_seconds, "stress_impairment": {"loss": 0.05, "delay_ms": 20, "jitter_ms": 20},
        "gateway_takeover_s": summary(gateway)["median"], "gateway_takeover_max_s": summary(gateway)["max"],
        "gateway_detect_s": summary(gateway_detect)["median"], "score_hold_s": 0.5,
        "runs": args.runs, "slow_runs": args.slow_runs, "failed_runs": failed, "machine": machine(),
    }))


if __name__ == "__main__":
    main()
