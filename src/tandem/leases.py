"""Leases kept by the device group: acquire, renew, release and expiry, with compare-and-swap on a version.

A lease is an object of store kind `leases` in its partition, so the device group syncing that
partition replicates it like any object (and sync snapshots and digests carry it); it is no
configuration object. Every check-and-write is one store transaction: atomic on this device.
Between devices replication is eventual. Times are this device's wall clock (epoch seconds
stored, ISO 8601 UTC presented); `expired` and `remaining` are judged by the clock of the
device answering.

Every acquire and release stamps the lease with a `token` one above every token in its partition: a
holder's fencing token (`tandem.config.fences`), growing on this device with each change of any lease
of the partition, as a Kubernetes resourceVersion grows.
"""

import time
from collections.abc import Callable
from datetime import UTC, datetime

from tandem.config.query import Query
from tandem.errors import Conflict, NotFound
from tandem.models import Partition
from tandem.models.lease import LEASES, AcquireRequest, Lease
from tandem.store import GLOBAL, Body, Store, Transaction

KNOWN_FIELDS = list(Lease.model_fields)
IDENTITY = ("partition", "name")


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")


def present(body: Body, now: float) -> Body:
    """A stored lease as the API shows it, judged at `now`."""
    return {"partition": body["partition"], "name": body["name"], "holder": body["holder"], "ttl": body["ttl"],
            "acquired_at": _iso(body["acquired_at"]), "renewed_at": _iso(body["renewed_at"]),
            "expires_at": _iso(body["expires_at"]), "expired": body["expires_at"] <= now,
            "remaining": round(max(0.0, body["expires_at"] - now), 3), "version": body["version"],
            "token": body.get("token", 0), "data": body["data"]}


def _state(body: Body, now: float) -> str:
    """Who holds the lease and until when, for error messages."""
    if body["expires_at"] > now:
        return f"held by {body['holder']} until {_iso(body['expires_at'])}"
    return f"free (it expired at {_iso(body['expires_at'])}; its last holder was {body['holder']})"


def _next_token(txn: Transaction, partition: str) -> int:
    """One above every lease token of the partition (a partition holds a few leases: its agents')."""
    return 1 + max((record.body.get("token", 0) for record in txn.records(LEASES, partition=partition)), default=0)


class Leases:
    """The leases of one device's store."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    def page(self, query: Query) -> tuple[list[Body], tuple[str, str] | None]:
        """One page of the leases matching `query` (filters apply to the presented fields)."""
        now = self._clock()
        records = (((r.partition, r.name), present(r.body, now))
                   for r in self._store.records(LEASES, after=query.after))
        return query.page(records, IDENTITY)

    def read(self, partition: str, name: str) -> Body:
        return present(self._stored(self._store, partition, name), self._clock())

    def acquire(self, partition: str, name: str, request: AcquireRequest) -> Body:
        """Take the lease if it is free, expired or already this holder's (a renewal, which keeps
        `acquired_at` and, unless given, `data`); with `request.version`, only at that version."""
        now = self._clock()
        with self._store.transaction() as txn:
            if not txn.exists(Partition.kind, GLOBAL, partition):
                raise NotFound(f"partition {partition!r} does not exist", target="partition")
            current = txn.get(LEASES, partition, name)
            version = current["version"] if current else 0
            if request.version is not None and request.version != version:
                state = _state(current, now) if current else "does not exist"
                raise Conflict(f"lease {partition}/{name} is at version {version}, not {request.version}: it is "
                               f"{state}", target="version")
            if current and current["expires_at"] > now and current["holder"] != request.holder:
                raise Conflict(f"lease {partition}/{name} is {_state(current, now)}", target="holder")
            renewal = current is not None and current["expires_at"] > now
            body = {"partition": partition, "name": name, "holder": request.holder, "ttl": request.ttl,
                    "acquired_at": current["acquired_at"] if renewal else now, "renewed_at": now,
                    "expires_at": now + request.ttl, "version": version + 1, "token": _next_token(txn, partition),
                    "data": request.data if request.data is not None else current["data"] if renewal else {}}
            txn.put(LEASES, partition, name, body)
        return present(body, now)

    def release(self, partition: str, name: str, holder: str) -> Body:
        """End the lease now (it stays, expired, so its version keeps growing); only its holder may.
        Releasing a lease that already expired changes nothing."""
        now = self._clock()
        with self._store.transaction() as txn:
            body = self._stored(txn, partition, name)
            if body["holder"] != holder:
                raise Conflict(f"lease {partition}/{name} is {_state(body, now)}: only its holder may release it",
                               target="holder")
            if body["expires_at"] > now:
                body = body | {"expires_at": now, "version": body["version"] + 1,
                               "token": _next_token(txn, partition)}
                txn.put(LEASES, partition, name, body)
        return present(body, now)

    def delete(self, partition: str, name: str) -> None:
        """Remove the lease whoever holds it (its version starts again from 0)."""
        with self._store.transaction() as txn:
            self._stored(txn, partition, name)
            txn.delete(LEASES, partition, name)

    @staticmethod
    def _stored(txn: Transaction | Store, partition: str, name: str) -> Body:
        body = txn.get(LEASES, partition, name)
        if body is None:
            raise NotFound(f"lease {partition}/{name} does not exist", target=f"{partition}/{name}")
        return body
