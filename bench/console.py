#!/usr/bin/env python3
"""Web console benchmark, in Debian's headless Chromium against a real 2-device lab (`tandem lab up`, builtin
engine) holding N virtual servers on its traffic group (1,000 by default, all served by dev-1):

- the overview and the traffic page loaded R times each: time to first render (the browser's first
  contentful paint) and to live (the page's server-sent event stream open: from then on every change is
  sent; a fresh page gets no message until something changes);
- R failovers, alternately forced on dev-1 and dev-2 through the API, each timed from the request to the
  moment dev-1's overview shows the other device active (a MutationObserver's clock), and from the new
  active device's own transition record to that moment;
- the share of a core dev-1's management process uses with no page open, with the overview open and with
  the traffic page open (what one open live page costs the device).

Prints progress on stderr and, last, one JSON line of medians (seconds) with the machine.

    .venv/bin/python bench/console.py [--virtuals 1000] [--rounds 7]
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import cpu_seconds, machine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "cli"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "console"))
from cli_helpers import LabRun
from console_browser import chromium, pin_of
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tandem.console.views import TRAFFIC_PAGE

TG = "traffic-group-1"
FIRST_PORT = 20000
BATCH = 500
TIMINGS = """
const navigation = performance.getEntriesByType('navigation')[0];
const paint = performance.getEntriesByName('first-contentful-paint')[0];
return [paint ? paint.startTime : null, document.body.dataset.liveAt || null, navigation.responseEnd];
"""
WATCH = f"""
window.tandemShown = null;
const target = arguments[0];
new MutationObserver(() => {{
  const shown = document.querySelector("[data-traffic-group='{TG}'] .active-device");
  if (window.tandemShown === null && shown && shown.dataset.active === target) {{ window.tandemShown = Date.now(); }}
}}).observe(document.getElementById('traffic-groups'), {{subtree: true, childList: true, attributes: true}});
"""


def add_virtuals(lab: LabRun, count: int) -> None:
    vip_address = lab.base.rsplit(".", 1)[0] + ".100"
    with lab.client("dev-1") as client:
        operations = [{"action": "create", "resource": "virtuals", "partition": "Common", "name": f"bench-{i:04d}",
                       "body": {"address": vip_address, "port": FIRST_PORT + i, "pool": "web",
                                "traffic_group": TG}} for i in range(count)]
        for first in range(0, count, BATCH):
            client.batch(operations[first:first + BATCH])
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            served = client.request("GET", "/api/dataplane")["virtuals"]
            if sum(key.startswith("/Common/bench-") for key in served) == count:
                return
            time.sleep(0.5)
    raise SystemExit(f"dev-1 did not serve the {count} virtual servers within 120 s")


def went_live(browser: Any) -> str | None:
    """When the page's stream opened (ms since its navigation began), once it has."""
    return browser.find_element(By.TAG_NAME, "body").get_attribute("data-live-at")


def page_loads(browser: Any, url: str, rounds: int) -> tuple[list[float], list[float]]:
    first, live = [], []
    for _ in range(rounds):
        browser.get(url)
        WebDriverWait(browser, 10, poll_frequency=0.02).until(
            lambda b: went_live(b) and b.execute_script(TIMINGS)[0] is not None)
        painted, lived, _ = browser.execute_script(TIMINGS)
        first.append(painted / 1000)
        live.append(float(lived) / 1000)
    return first, live


def failovers(browser: Any, lab: LabRun, rounds: int) -> tuple[list[float], list[float]]:
    from_request, from_event = [], []
    active, other = "dev-1", "dev-2"
    for index in range(rounds):
        browser.execute_script(WATCH, other)
        with lab.client(active) as client:
            sent = time.time()
            client.request("POST", f"/api/failover/traffic-groups/{TG}/force-standby")
        WebDriverWait(browser, 10, poll_frequency=0.02).until(lambda b: b.execute_script("return window.tandemShown"))
        shown = browser.execute_script("return window.tandemShown") / 1000
        with lab.client(other) as client:
            events = client.request("GET", "/api/failover/events", params={"traffic_group": TG})["records"]
        took_over = max(e["at"] for e in events if e["to_state"] == "active")
        from_request.append(shown - sent)
        from_event.append(shown - took_over)
        print(f"failover {index + 1}/{rounds}: {other} shown active {shown - sent:.3f} s after the request, "
              f"{shown - took_over:.3f} s after its transition", file=sys.stderr)
        with lab.client(active) as client:
            client.request("POST", "/api/failover/online")  # a forced standby stays until the device comes online again
        active, other = other, active
        time.sleep(0.5)
    return from_request, from_event


def cpu_share(browser: Any, url: str, pid: int, seconds: float) -> float:
    """The share of a core the device's management process used while `url` was open for `seconds`."""
    browser.get(url)
    time.sleep(1.0)
    used, started = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - used) / (time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--virtuals", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--cpu-seconds", type=float, default=10.0)
    args = parser.parse_args()
    with LabRun.started(Path(tempfile.mkdtemp(prefix="tandem-bench-console-")), "--engine", "builtin",
                        also=((100, 8080),)) as lab:
        add_virtuals(lab, args.virtuals)
        print(f"dev-1 serves {args.virtuals} more virtual servers", file=sys.stderr)
        devices = lab.state()["devices"]
        pins = [pin_of(d["url"]) for d in devices]
        console = devices[0]["url"].rstrip("/") + "/ui/"
        password = Path(devices[0]["password_file"]).read_text().strip()
        with chromium(pins) as browser:
            browser.get(console + "login")
            browser.find_element(By.ID, "username").send_keys("admin")
            browser.find_element(By.ID, "password").send_keys(password)
            browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
            WebDriverWait(browser, 10).until(lambda b: b.current_url.endswith("/ui/"))
            overview_first, overview_live = page_loads(browser, console, args.rounds)
            traffic_first, traffic_live = page_loads(browser, console + "traffic", args.rounds)
            browser.get(console)
            WebDriverWait(browser, 10).until(went_live)
            from_request, from_event = failovers(browser, lab, args.rounds)
            pid = devices[0]["pid"]
            idle = cpu_share(browser, "about:blank", pid, args.cpu_seconds)
            overview_cpu = cpu_share(browser, console, pid, args.cpu_seconds)
            traffic_cpu = cpu_share(browser, console + "traffic", pid, args.cpu_seconds)
    median = statistics.median
    print(json.dumps({
        "overview_first_render_s": round(median(overview_first), 3), "overview_live_s": round(median(overview_live), 3),
        "traffic_first_render_s": round(median(traffic_first), 3), "traffic_live_s": round(median(traffic_live), 3),
        "failover_to_page_s": round(median(from_request), 3), "failover_to_page_max_s": round(max(from_request), 3),
        "transition_to_page_s": round(median(from_event), 3), "idle_cpu_share": round(idle, 3),
        "overview_open_cpu_share": round(overview_cpu, 3), "traffic_open_cpu_share": round(traffic_cpu, 3),
        "traffic_rows_shown": TRAFFIC_PAGE, "virtual_servers": args.virtuals + 1,
        "rounds": args.rounds, "machine": machine()}))


if __name__ == "__main__":
    main()
