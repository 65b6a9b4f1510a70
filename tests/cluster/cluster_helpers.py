"""Clusters of real devices for tests, driven through the REST API only (httpx, no SDK manager).

`Node` is one device (its daemon, its real peer port, an optional `CutProxy` in front of the peer
listener, an API session that logs in again after a restart). `Cluster` starts nodes, forms the
trust domain and a device group, and answers the questions the tests ask: the sync status on every
device, the whole configuration of a device, whether all devices hold the same one.
"""

import json
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cutproxy import CutProxy

from devices import RunningDevice, free_port
from waiting import wait_until

SYNC_TIMEOUT = 30.0
CONFIG_KINDS = ("partitions", "monitors", "pools", "virtuals")
"""The synced objects, read back through their collections (pool members come embedded in pools)."""
GROUP = "dg"


class TandemAuth(httpx.Auth):
    """Bearer token auth that logs in on the first request and again after a 401 (a restarted device)."""

    requires_response_body = True

    def __init__(self, base_url: str, username: str, password: str) -> None:
        self.login_url = f"{base_url}/api/auth/login"
        self.username, self.password = username, password
        self.token: str | None = None

    def auth_flow(self, request: httpx.Request):
        if self.token is None:
            yield from self._login()
        request.headers["Authorization"] = f"Bearer {self.token}"
        response = yield request
        if response.status_code == 401:
            yield from self._login()
            request.headers["Authorization"] = f"Bearer {self.token}"
            yield request

    def _login(self):
        response = yield httpx.Request("POST", self.login_url,
                                       json={"username": self.username, "password": self.password})
        if response.status_code == 200:
            self.token = response.json()["token"]


def api_session(device: RunningDevice, timeout: float = 10.0) -> httpx.Client:
    """A keep-alive httpx client of `device`'s API, logged in as admin."""
    return httpx.Client(base_url=device.url, verify=False, timeout=timeout,
                        auth=TandemAuth(device.url, "admin", device.admin_password))


def check(response: httpx.Response, *statuses: int) -> httpx.Response:
    """`response`, after asserting its status (200/201/202/204 when none given) with its body in the message."""
    expected = statuses or (200, 201, 202, 204)
    assert response.status_code in expected, (
        f"{response.request.method} {response.request.url.path}: {response.status_code} {response.text}")
    return response


def error_of(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    return body["error"]


def normalize(kind: str, record: dict) -> tuple[str, dict]:
    """A record's identity key and its comparable form (pool members sorted)."""
    if kind == "pools":
        record = dict(record, members=sorted(record.get("members", []), key=lambda m: (m["address"], m["port"])))
    key = record["name"] if kind == "partitions" else f"{record['partition']}/{record['name']}"
    return key, record


def read_collection(api: httpx.Client, path: str) -> list[dict]:
    records: list[dict] = []
    url: str | None = f"{path}?limit=10000"
    while url:
        body = check(api.get(url), 200).json()
        records += body["records"]
        url = body["next"]
    return records


def config_of(api: httpx.Client, partitions: Iterable[str] | None = None) -> dict[str, dict[str, dict]]:
    """The whole configuration of one device (of `partitions` only, if given): kind -> identity -> record."""
    keep = None if partitions is None else set(partitions)
    config = {}
    for kind in CONFIG_KINDS:
        records = read_collection(api, f"/api/{kind}")
        if keep is not None:
            records = [r for r in records if (r["name"] if kind == "partitions" else r["partition"]) in keep]
        config[kind] = dict(normalize(kind, r) for r in records)
    return config


def config_diff(configs: dict[str, dict], limit: int = 12) -> list[str]:
    """How the configurations of several devices differ, as short lines (empty: all equal)."""
    names = list(configs)
    lines = []
    for kind in CONFIG_KINDS:
        keys = sorted(set().union(*(configs[n][kind] for n in names)))
        for key in keys:
            values = {n: configs[n][kind].get(key) for n in names}
            if len({json.dumps(v, sort_keys=True) for v in values.values()}) > 1:
                lines.append(f"{kind} {key}: " + "; ".join(
                    f"{n}={'missing' if v is None else json.dumps(v, sort_keys=True)[:160]}"
                    for n, v in values.items()))
    return lines[:limit] + ([f"... {len(lines) - limit} more"] if len(lines) > limit else [])


@dataclass
class Node:
    """One device of a test cluster."""

    device: RunningDevice
    peer_port: int
    proxy: CutProxy | None = None
    _api: httpx.Client | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.device.name

    @property
    def api(self) -> httpx.Client:
        if self._api is None:
            self._api = api_session(self.device)
        return self._api

    def config(self, partitions: Iterable[str] | None = None) -> dict[str, dict[str, dict]]:
        return config_of(self.api, partitions)

    def status(self, group: str = GROUP) -> dict:
        return check(self.api.get(f"/api/device-groups/{group}/status"), 200).json()

    def trusted_names(self) -> list[str]:
        return sorted(d["name"] for d in read_collection(self.api, "/api/trust/devices"))

    def kill(self) -> None:
        self.device.kill()

    def stop(self) -> None:
        self.device.stop()

    def start(self) -> None:
        self.device.start()

    def close(self) -> None:
        if self._api is not None:
            self._api.close()
            self._api = None
        self.device.stop()
        if self.proxy is not None:
            self.proxy.close()


class Cluster:
    """Devices started for a test; `form()` makes them one trust domain and one device group."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.nodes: list[Node] = []

    def __getitem__(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def __iter__(self):
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    @property
    def names(self) -> list[str]:
        return [n.name for n in self.nodes]

    # -- devices ---------------------------------------------------------------------------------

    def start(self, *names: str, proxied: bool = False, extra_args: Iterable[str] = ()) -> list[Node]:
        """Start devices (in parallel) with an explicit `--peer-listen`; `proxied`: others reach each
        one through its own `CutProxy` (`--peer-advertise` names the proxy)."""
        nodes = []
        for name in names:
            peer_port = free_port()
            args = ["--peer-listen", f"127.0.0.1:{peer_port}", *extra_args]
            proxy = None
            if proxied:
                proxy = CutProxy(("127.0.0.1", peer_port))
                args += ["--peer-advertise", proxy.address]
            device = RunningDevice(name=name, data_dir=self.base_dir / name, extra_args=args)
            nodes.append(Node(device, peer_port, proxy))
        self.nodes += nodes
        with ThreadPoolExecutor(len(nodes)) as pool:
            list(pool.map(lambda n: n.device.start(), nodes))
        return nodes

    def close(self) -> None:
        with ThreadPoolExecutor(max(1, len(self.nodes))) as pool:
            list(pool.map(Node.close, self.nodes))

    def cut(self) -> None:
        """Partition every proxied device from every other one."""
        for node in self.nodes:
            if node.proxy is not None:
                node.proxy.cut()

    def heal(self) -> None:
        for node in self.nodes:
            if node.proxy is not None:
                node.proxy.heal()

    # -- trust and groups ------------------------------------------------------------------------

    @staticmethod
    def trust_request(by: Node, other: Node, **overrides: Any) -> httpx.Response:
        body = {"url": other.device.url, "username": "admin", "password": other.device.admin_password,
                "fingerprint": other.device.fingerprint, **overrides}
        return by.api.post("/api/trust/devices", json=body)

    def trust(self, by: Node, others: Iterable[Node]) -> None:
        for other in others:
            check(self.trust_request(by, other), 201)

    def wait_trusted(self, nodes: list[Node], timeout: float = SYNC_TIMEOUT) -> None:
        """Until every one of `nodes` lists exactly `nodes` as its trust domain."""
        names = sorted(n.name for n in nodes)
        wait_until(lambda: all(n.trusted_names() == names for n in nodes), timeout,
                   f"{names} to trust each other", detail=lambda: {n.name: n.trusted_names() for n in nodes})

    def create_group(self, by: Node, members: list[str], group: str = GROUP, **fields: Any) -> dict:
        body = {"name": group, "type": "sync-failover", "members": members, "partitions": ["Common"], **fields}
        return check(by.api.post("/api/device-groups", json=body), 201).json()

    def form(self, nodes: list[Node] | None = None, group: str = GROUP, **fields: Any) -> None:
        """Trust (all added from the first node), create the group, wait for In Sync everywhere."""
        nodes = nodes or self.nodes
        self.trust(nodes[0], nodes[1:])
        self.create_group(nodes[0], [n.name for n in nodes], group, **fields)
        self.wait_in_sync(nodes, group)

    # -- status and convergence ------------------------------------------------------------------

    def statuses(self, nodes: Iterable[Node] | None = None, group: str = GROUP) -> dict[str, Any]:
        """The group's status as each device sees it (or the error getting it)."""
        result: dict[str, Any] = {}
        for node in nodes or self.nodes:
            try:
                result[node.name] = node.api.get(f"/api/device-groups/{group}/status").json()
            except (httpx.HTTPError, ValueError) as exc:
                result[node.name] = f"{type(exc).__name__}: {exc}"
        return result

    def in_sync(self, nodes: Iterable[Node] | None = None, group: str = GROUP) -> bool:
        nodes = list(nodes or self.nodes)
        names = sorted(n.name for n in nodes)
        for node in nodes:
            status = node.status(group)
            if status["status"] != "In Sync" or sorted(m["name"] for m in status["members"]) != names:
                return False
            if any(m["status"] != "In Sync" for m in status["members"]):
                return False
        return True

    def wait_in_sync(self, nodes: Iterable[Node] | None = None, group: str = GROUP,
                     timeout: float = SYNC_TIMEOUT) -> None:
        nodes = list(nodes or self.nodes)
        wait_until(lambda: self.in_sync(nodes, group), timeout, f"group {group!r} In Sync on {[n.name for n in nodes]}",
                   detail=lambda: self.statuses(nodes, group))

    def configs(self, nodes: Iterable[Node] | None = None, partitions: Iterable[str] | None = None) -> dict[str, dict]:
        return {n.name: n.config(partitions) for n in nodes or self.nodes}

    def wait_converged(self, nodes: Iterable[Node] | None = None, timeout: float = SYNC_TIMEOUT,
                       group: str = GROUP, in_sync: bool = True,
                       partitions: Iterable[str] | None = None) -> dict[str, dict[str, dict]]:
        """Until every device holds the same configuration (compared object by object) and, with
        `in_sync`, reports the group In Sync; returns that configuration."""
        nodes = list(nodes or self.nodes)
        last: dict[str, dict] = {}

        def converged() -> bool:
            last.clear()
            last.update(self.configs(nodes, partitions))
            return not config_diff(last)

        def detail() -> dict:
            return {"differences": config_diff(last) if last else "(no configuration read)",
                    "status": self.statuses(nodes, group)}

        wait_until(converged, timeout, f"the same configuration on {[n.name for n in nodes]}", detail=detail)
        if in_sync:
            self.wait_in_sync(nodes, group, timeout)
        return last[nodes[0].name]


def pool_names(config: dict[str, dict[str, dict]]) -> set[str]:
    return {record["name"] for record in config["pools"].values()}


def wait_job(api: httpx.Client, response: httpx.Response, timeout: float = SYNC_TIMEOUT) -> dict:
    """The finished job of a 202 answer."""
    check(response, 202)
    job = response.json()
    deadline = time.monotonic() + timeout
    while job["state"] == "running" and time.monotonic() < deadline:
        job = check(api.get(f"/api/jobs/{job['id']}", params={"wait": 5}), 200).json()
    return job
