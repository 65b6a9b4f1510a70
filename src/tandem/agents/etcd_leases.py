"""Leases kept in etcd, for several file agents: linearizable, unlike the device group's leases.

Spoken to through etcd's gRPC gateway (JSON over HTTP, `/v3/kv/...`). A lease is the key
`/tandem/leases/NAME` holding `{holder, ttl, renewed, data}`; it is taken or renewed by a transaction that
compares the key's `mod_revision` with the one read (or that it does not exist), so two agents can never
both take it. Expiry is `renewed + ttl` by the agents' clocks, as for Kubernetes Leases. The fencing
token is etcd's revision (the header of every answer: it grows with every change of the cluster's keys);
the epoch is the etcd cluster's id.
"""

import base64
import time
from typing import Any

import httpx
import orjson

from tandem.agents.leases import AgentStatus, Lease

PREFIX = "/tandem/leases/"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _prefix_end(prefix: str) -> str:
    """The end of the key range that holds every key starting with `prefix` (its last byte plus one)."""
    raw = prefix.encode()
    return base64.b64encode(raw[:-1] + bytes([raw[-1] + 1])).decode()


class EtcdUnreachable(Exception):
    """No etcd endpoint answers."""


class EtcdLeases:
    """Leases in etcd, at the first of `endpoints` that answers (`http://HOST:2379`)."""

    def __init__(self, endpoints: list[str], timeout: float = 3.0) -> None:
        self._endpoints = [endpoint.rstrip("/") for endpoint in endpoints]
        self._client = httpx.AsyncClient(timeout=timeout)
        self.token: int | None = None
        self.epoch: str | None = None

    async def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        failures = []
        for endpoint in self._endpoints:
            try:
                response = await self._client.post(f"{endpoint}/v3/{path}", json=body)
            except httpx.HTTPError as error:
                failures.append(f"{endpoint}: {error}")
                continue
            if response.status_code != 200:
                raise EtcdUnreachable(f"{endpoint}: {response.status_code} {response.text[:200]}")
            answer = response.json()
            header = answer.get("header") or {}
            self.epoch = str(header.get("cluster_id")) if header.get("cluster_id") else self.epoch
            if header.get("revision"):
                self.token = max(self.token or 0, int(header["revision"]))
            return answer
        raise EtcdUnreachable("no etcd endpoint answers: " + "; ".join(failures))

    async def _read(self, name: str) -> tuple[dict[str, Any] | None, int]:
        """The lease's value and its key's mod_revision (None, 0: there is none)."""
        answer = await self._call("kv/range", {"key": _b64(PREFIX + name)})
        kvs = answer.get("kvs") or []
        if not kvs:
            return None, 0
        return orjson.loads(base64.b64decode(kvs[0].get("value", ""))), int(kvs[0]["mod_revision"])

    async def _swap(self, name: str, revision: int, value: dict[str, Any] | None) -> bool:
        """Write (None: delete) the lease if its key is still at `revision` (0: absent); whether it was."""
        key = _b64(PREFIX + name)
        compare = ({"key": key, "target": "CREATE", "create_revision": "0"} if revision == 0 else
                   {"key": key, "target": "MOD", "mod_revision": str(revision)})
        success = ({"request_put": {"key": key, "value": base64.b64encode(orjson.dumps(value)).decode()}}
                   if value is not None else {"request_delete_range": {"key": key}})
        answer = await self._call("kv/txn", {"compare": [compare], "success": [success]})
        return bool(answer.get("succeeded"))

    async def acquire(self, name: str, holder: str, ttl: float, status: AgentStatus | None = None) -> bool:
        current, revision = await self._read(name)
        now = time.time()
        if current is not None and current.get("holder") != holder and current.get("renewed", 0) + current.get(
                "ttl", 0) > now:
            return False
        data = orjson.loads(orjson.dumps(status)) if status is not None else {}
        return await self._swap(name, revision, {"holder": holder, "ttl": ttl, "renewed": now, "data": data})

    async def release(self, name: str, holder: str) -> None:
        current, revision = await self._read(name)
        if current is not None and current.get("holder") == holder:
            await self._swap(name, revision, None)

    async def list(self, prefix: str) -> list[Lease]:
        start = PREFIX + prefix
        answer = await self._call("kv/range", {"key": _b64(start), "range_end": _prefix_end(start)})
        now = time.time()
        out = []
        for kv in answer.get("kvs") or []:
            name = base64.b64decode(kv["key"]).decode().removeprefix(PREFIX)
            try:
                value = orjson.loads(base64.b64decode(kv.get("value", "")))
            except orjson.JSONDecodeError:
                continue
            remaining = value.get("renewed", 0) + value.get("ttl", 0) - now
            out.append(Lease(name, value.get("holder", ""), remaining < 0, value.get("data") or {},
                             max(0.0, remaining)))
        return out
