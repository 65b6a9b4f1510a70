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

Runs at the default heartbeat timers (0.2 s interval / 1.0 s timeout) and at fast ones (0.05 / 0.25),
and keepalived at advert 0.2 s and 0.05 s. Needs root, iproute2 and keepalived
(apt-get install keepalived; without it the keepalived figures are null). Progress on stderr; last,
one JSON line: takeover_median_s, takeover_p99_s, fast_takeover_median_s, fast_takeover_p99_s,
detect_median_s and fast_detect_median_s (failure to b's transition to active, the rest being the
data plane, the gratuitous ARP and the client's polling), keepalived_median_s,
keepalived_fast_median_s, ratio_vs_keepalived (ours at 0.2 s / keepalived at advert 0.2 s),
fast_ratio_vs_keepalived, equal_takeover_median_s / equal_ratio_vs_keepalived (heartbeats at 0.2 s with
VRRP's own master-down interval as timeout: the same detection rule as keepalived), runs, machine.

    .venv/bin/python bench/failover.py [--runs 20] [--keepalived-runs N] [--no-keepalived]
"""

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import anchor, machine, percentile

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "netns"))

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


def measure(work: Path, interval: float, timeout: float, runs: int) -> tuple[list[float], list[float], int]:
    """`runs` failures at the given timers: the takeover samples, the detection samples (failure to b
    active) and the number of runs without takeover."""
    samples: list[float] = []
    detections: list[float] = []
    failed = 0
    rebuilds = 0
    formed = False
    label = f"{interval}/{timeout} s"
    while len(samples) + failed < runs:
        lab = netlab.Lab(work / f"{interval}-{timeout}-{rebuilds}", interval=interval, timeout=timeout)
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


VRRP_MASTER_DOWN_S = round(3 * 0.2 + (256 - 100) / 256 * 0.2, 3)
"""VRRP's master-down interval for the anchor's backup (priority 100) at advert 0.2 s: 3 adverts plus
the skew (RFC 5798). Heartbeats at 0.2 s with this timeout detect a failure as keepalived does."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="failures per timer setting")
    parser.add_argument("--keepalived-runs", type=int, help="runs of the keepalived anchor (default: --runs)")
    parser.add_argument("--no-keepalived", action="store_true", help="skip the keepalived reference")
    args = parser.parse_args()
    reason = netlab.available()
    if reason:
        raise SystemExit(f"bench/failover.py: {reason}")
    ka_runs = args.keepalived_runs or args.runs

    with tempfile.TemporaryDirectory(prefix="tandem-bench-failover-") as work:
        default, detect, default_failed = measure(Path(work), 0.2, 1.0, args.runs)
        fast, fast_detect, fast_failed = measure(Path(work), 0.05, 0.25, args.runs)
        equal, _, equal_failed = measure(Path(work), 0.2, VRRP_MASTER_DOWN_S, args.runs)
    ours, ours_fast, ours_equal = summary(default), summary(fast), summary(equal)
    log(f"tandem 0.2/{VRRP_MASTER_DOWN_S} s: median {ours_equal['median']} s, p99 {ours_equal['p99']} s")
    log(f"tandem 0.2/1.0 s: median {ours['median']} s, p99 {ours['p99']} s ({ours['min']}-{ours['max']})")
    log(f"tandem 0.05/0.25 s: median {ours_fast['median']} s, p99 {ours_fast['p99']} s "
        f"({ours_fast['min']}-{ours_fast['max']})")

    ka = ka_fast = None
    if not args.no_keepalived:
        ka = keepalived(0.2, ka_runs)
        ka_fast = keepalived(0.05, ka_runs)

    def ratio(ours_s: float | None, ref: dict | None) -> float | None:
        return round(ours_s / ref["median_s"], 2) if ours_s and ref else None

    print(json.dumps({
        "takeover_median_s": ours["median"],
        "takeover_p99_s": ours["p99"],
        "takeover_min_s": ours["min"],
        "takeover_max_s": ours["max"],
        "fast_takeover_median_s": ours_fast["median"],
        "fast_takeover_p99_s": ours_fast["p99"],
        "detect_median_s": summary(detect)["median"],
        "fast_detect_median_s": summary(fast_detect)["median"],
        "keepalived_median_s": ka["median_s"] if ka else None,
        "keepalived_fast_median_s": ka_fast["median_s"] if ka_fast else None,
        "ratio_vs_keepalived": ratio(ours["median"], ka),
        "fast_ratio_vs_keepalived": ratio(ours_fast["median"], ka_fast),
        "equal_takeover_median_s": ours_equal["median"],
        "equal_takeover_p99_s": ours_equal["p99"],
        "equal_ratio_vs_keepalived": ratio(ours_equal["median"], ka),
        "timers_s": {"default": [0.2, 1.0], "fast": [0.05, 0.25], "equal": [0.2, VRRP_MASTER_DOWN_S],
                     "keepalived_advert": [0.2, 0.05]},
        "runs": args.runs,
        "failed_runs": default_failed + fast_failed + equal_failed,
        "keepalived_runs": ka_runs if ka or ka_fast else 0,
        "machine": machine(),
    }))


if __name__ == "__main__":
    main()
