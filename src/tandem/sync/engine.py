"""The sync engine: conversations with the other members over the peer channel.

Every device dials every trusted device (its outbound link) and sends there what that device
lacks: its own new commits at once, commits of any origin it has and the other lacks, snapshots
when its log cannot serve them, repairs when digests differ, the initial sync of a new member.
On the connections other devices dialed (inbound), it applies what they send and answers with its
status. Every second each device sends its status (version vectors, digests, pending changes) on
its outbound links; the answers drive catch-up, anti-entropy and the sync status.
"""

import asyncio
import contextlib
import itertools
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from websockets.exceptions import ConnectionClosed

from tandem.errors import ApiError, Conflict, NotFound
from tandem.models.cluster import GroupRecord, TrustedDevice
from tandem.models.conflict import CONFLICTS
from tandem.store import LogRecord, Store, Version
from tandem.sync.messages import COMMITS, MAX_RECORD_CHANGES, SNAPSHOT, STATUS, Commits, ScopeStatus, Snapshot
from tandem.sync.replica import SNAPSHOT_PART, Replica
from tandem.sync.scopes import Scopes
from tandem.trust.channel import PROTOCOLS, Connection, Message, PeerLink, PeerServer
from tandem.trust.domain import USERS_SINCE, Domain
from tandem.trust.identity import Identity

log = logging.getLogger("tandem.sync")

STATUS_INTERVAL = 0.25
STALE_AFTER = 1.0
"""A peer whose status is older than this is Disconnected: a silent cut shows within about one
heartbeat timeout (1 s by default), and "In Sync" is never older than that."""
RESEND_AFTER = 3.0
"""Seconds before a snapshot (initial sync, full load, repair) to one peer is sent again."""
SYNC_TIMEOUT = 60.0
TRIM_EVERY = 4
"""Status ticks between trims of the log (every second)."""


@dataclass
class PeerView:
    """What this device knows of one peer, and its outbound link to it."""

    link: PeerLink
    outbox: asyncio.Queue | None = None
    status: dict[str, ScopeStatus] = field(default_factory=dict)
    """Its last status, per scope."""
    status_at: float = 0.0
    sent: dict[str, dict[str, int]] = field(default_factory=dict)
    snapshot_at: dict[str, float] = field(default_factory=dict)
    protocol: int = PROTOCOLS[1]
    """The peer protocol of the current link to it (what of the domain it is sent)."""
    domain_digest: str = ""
    """The digest of the trust domain as its last status gave it."""

    @property
    def connected(self) -> bool:
        return self.outbox is not None and time.monotonic() - self.status_at < STALE_AFTER

    @property
    def status_age(self) -> float | None:
        """Seconds since the peer's last status (None: never heard)."""
        return time.monotonic() - self.status_at if self.status_at else None

    @property
    def message(self) -> str:
        """Why the peer is not connected ('' when it is)."""
        if self.connected:
            return ""
        if self.outbox is None:
            return self.link.message or "not connected"
        return f"no status from it for {time.monotonic() - self.status_at:.1f} s"

    def send(self, message: Message) -> bool:
        if self.outbox is None:
            return False
        self.outbox.put_nowait(message)
        return True


class SyncEngine:
    """Replicates the device groups' configuration among their members."""

    def __init__(self, store: Store, domain: Domain, identity: Identity, *, log_retention: int) -> None:
        self.store = store
        self.domain = domain
        self.replica = Replica(store)
        self.scopes = Scopes(store, domain)
        self._identity = identity
        self._log_retention = log_retention
        self.peers: dict[str, PeerView] = {}
        self.server = PeerServer(identity, domain, self._inbound)
        self._ids = itertools.count(1)
        self._waiters: dict[str, asyncio.Future] = {}
        self._snapshots: dict[str, list[Version]] = {}
        self._tasks: set[asyncio.Task] = set()
        self.dropped_messages = 0
        """Peer messages refused as malformed."""

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self, host: str, port: int) -> None:
        await self.server.start(host, port)
        self._follow_domain()
        self._spawn(self._tick())

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for view in self.peers.values():
            await view.link.stop()
        await self.server.close()

    def _spawn(self, coroutine: Any) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _tick(self) -> None:
        for tick in itertools.count():
            protocols = {view.protocol for view in self.peers.values()}
            status = {protocol: self.status_message(protocol) for protocol in protocols}
            for view in self.peers.values():
                view.send(status[view.protocol])
            if tick % TRIM_EVERY == 0:
                self.store.submit(self.store.trim_log, self._log_retention)
            if self.scopes.restoring:
                await self._catch_up_after_restore()
            await asyncio.sleep(STATUS_INTERVAL)

    async def _catch_up_after_restore(self) -> None:
        """Release the held scopes whose members have caught this device up; end the restore once nothing is held
        and every peer is connected with the same trust domain (a group of it not yet known here would be held)."""
        for scope in self._caught_up_after_restore():
            try:
                await self.store.write(self._release, scope)
            except Exception as error:  # a full disk, say: held still, tried again at the next tick
                log.error("cannot number the changes of %s held since the restore: %s", scope, error)
        if not self.scopes.held and all(self._has_our_domain(view) for view in self.peers.values()):
            self.scopes.end_restore()

    def _caught_up_after_restore(self) -> list[str]:
        """The held scopes (`Scopes.held`) whose every other member is connected, synced, and has no commit of
        this device that this device lacks."""
        me = self.domain.device_id
        caught_up = []
        for scope in list(self.scopes.held):
            group = self.scopes.group(scope)
            mine = self.store.vector(scope).get(me, 0)
            views = [self.peers.get(d.id) for d in self.domain.peers() if group and d.name in group.members]
            if all(view is not None and view.connected and (status := view.status.get(scope)) is not None
                   and status.synced and status.vv.get(me, 0) <= mine for view in views):
                caught_up.append(scope)
        return caught_up

    def _release(self, scope: str) -> None:
        """On the writer: number this device's changes of `scope` again, those made meanwhile first."""
        group = self.scopes.group(scope)
        if group is not None and group.auto_sync:
            self.replica.sequence_pending(scope)
        self.scopes.release(scope)
        log.info("restored from a backup: every member of %s sent what it had of this device's commits;"
                 " its changes are numbered again", scope)

    # -- the domain -----------------------------------------------------------------------------

    def domain_changed(self) -> None:
        """The trust domain changed: follow it (links, scopes) and send it to every peer."""
        with contextlib.suppress(RuntimeError):  # no loop yet: start() follows the domain
            asyncio.get_running_loop()
            self._follow_domain()
            for view in self.peers.values():
                view.send(self._domain_message(view.protocol))

    def _follow_domain(self) -> None:
        """Links to every trusted device (new ones dialed, removed ones told and dropped)."""
        self.scopes.refresh()
        self.server.refresh()
        trusted = {d.id: d for d in self.domain.peers()}
        for device_id, view in list(self.peers.items()):
            device = trusted.get(device_id)
            if device is None or not device.dialed_alike(view.link.device):
                del self.peers[device_id]
                self._spawn(self._drop(view, farewell=device is None))
        for device_id, device in trusted.items():
            if device_id not in self.peers:
                view = self.peers[device_id] = self._new_view(device)
                view.link.start()

    def _new_view(self, device: TrustedDevice) -> PeerView:
        """A view of a peer with its own link; the link's conversations update that view only."""
        view: PeerView
        link = PeerLink(self._identity, device, lambda connection: self._outbound(view, connection))
        view = PeerView(link)
        return view

    async def _drop(self, view: PeerView, farewell: bool) -> None:
        if farewell and view.send(self._domain_message(view.protocol)):
            await asyncio.sleep(0.3)  # let the removed device hear that it was removed
        await view.link.stop()

    # -- status ---------------------------------------------------------------------------------

    def older_peers(self) -> list[str]:
        """The names of the peers connected now that speak a peer protocol before `USERS_SINCE`."""
        return sorted(view.link.device.name for view in self.peers.values()
                      if view.outbox is not None and view.protocol < USERS_SINCE)

    def _domain_message(self, protocol: int) -> Message:
        """The domain's state as a peer speaking `protocol` reads it."""
        return {"type": "domain", "domain": self.domain.state(protocol).model_dump()}

    def digest(self, scope: str) -> list[int]:
        group = self.scopes.group(scope)
        return self.store.digest(group.partitions if group else [])

    def scope_status(self, scope: str) -> ScopeStatus:
        with self.store.lock:  # the vector and the digest of the same commits
            vector, buckets = self.store.vector(scope), self.digest(scope)
        return ScopeStatus(vv=vector, buckets=buckets, pending=self.store.pending_count(scope),
                           synced=self.scopes.synced(scope))

    def status_message(self, protocol: int) -> Message:
        """This device's status, its domain digest as a peer speaking `protocol` computes it."""
        return {"type": "status", "domain_digest": self.domain.digest(protocol),
                "scopes": {g.name: self.scope_status(g.name).model_dump() for g in self.scopes.mine()}}

    def _peer_status(self, view: PeerView | None, message: Message) -> bool:
        """Record a peer's status; False (and the message dropped) if it is malformed."""
        try:
            status = STATUS.validate_python(message)
        except ValidationError as error:
            self.dropped_messages += 1
            log.warning("dropped a malformed status message: %s", error.errors()[0]["msg"])
            return False
        if "domain" in message:
            self.domain.merge(message["domain"])
        if view is not None:
            view.status = status.scopes
            view.status_at = time.monotonic()
            view.domain_digest = status.domain_digest
        return True

    def _has_our_domain(self, view: PeerView) -> bool:
        """Whether the peer is connected and its last status gave this device's trust domain as it is now."""
        return view.connected and view.domain_digest == self.domain.digest(view.protocol)

    async def domain_heard(self, timeout: float) -> list[str]:
        """Wait (up to `timeout` seconds) until every connected peer has this device's trust domain as it is now;
        the names of those that have not (a peer not connected learns it when its link comes back)."""
        deadline = time.monotonic() + timeout
        while True:
            behind = sorted(view.link.device.name for view in self.peers.values()
                            if view.connected and not self._has_our_domain(view))
            if not behind or time.monotonic() > deadline:
                return behind
            await asyncio.sleep(0.05)

    # -- outbound: what this device sends to one peer ---------------------------------------------

    async def _outbound(self, view: PeerView, connection: Connection) -> None:
        """The conversation on this device's link to one peer (`view` is that peer's, for this link only)."""
        outbox: asyncio.Queue = asyncio.Queue()
        view.outbox, view.sent, view.snapshot_at, view.protocol = outbox, {}, {}, connection.protocol
        view.send({**self.status_message(connection.protocol),
                   "domain": self.domain.state(connection.protocol).model_dump()})
        writer = self._spawn(self._write(connection, outbox))
        try:
            while True:
                message = await connection.receive()
                self._on_reply(view, message)
        finally:
            if view.outbox is outbox:
                view.outbox = None
            writer.cancel()

    async def _write(self, connection: Connection, outbox: asyncio.Queue) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await connection.send(await outbox.get())

    def _on_reply(self, view: PeerView, message: Message) -> None:
        kind = message["type"]
        if kind == "status":
            if self._peer_status(view, message):
                self._serve(view)
        elif kind == "need":
            sent = view.sent.setdefault(message["scope"], {})
            for origin, after in message.get("after", {}).items():
                sent[origin] = min(sent.get(origin, after), after)
            self._serve(view)
        elif kind in ("ack", "sync-done"):
            waiter = self._waiters.pop(message.get("id", ""), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(message)

    def _serve(self, view: PeerView) -> None:
        """Send the peer what it lacks in every scope we share, as its last status says."""
        peer_name = view.link.device.name
        for group in self.scopes.mine():
            scope = group.name
            theirs = view.status.get(scope)
            if theirs is None or peer_name not in group.members or not self.scopes.synced(scope):
                continue
            if not theirs.synced:
                if self._seeds(group, view):
                    self._send_snapshot(view, scope, group.partitions, replace=True)
                continue
            sent = view.sent.setdefault(scope, {})
            have = {o: max(s, sent.get(o, 0)) for o, s in theirs.vv.items()} | {
                o: s for o, s in sent.items() if o not in theirs.vv}
            commits = self.replica.commits_for(scope, have)
            if commits is None:
                self._send_snapshot(view, scope, group.partitions, replace=False)
            elif commits:
                self._send_commits(view, scope, commits)
            elif (theirs.buckets != self.digest(scope) and theirs.vv == self.store.vector(scope)
                  and not self.store.pending_count(scope)):  # pending changes are not to be sent
                differing = {i for i, (a, b) in enumerate(zip(theirs.buckets, self.digest(scope), strict=True))
                             if a != b}
                self._send_snapshot(view, scope, group.partitions, replace=False, buckets=differing)

    def _seeds(self, group: GroupRecord, new_member: PeerView) -> bool:
        """Whether this device sends the initial sync: the first by name among the synced members it hears."""
        synced = [self.domain.me.name] + [
            v.link.device.name for v in self.peers.values()
            if v is not new_member and v.connected and (status := v.status.get(group.name)) and status.synced]
        return min(synced) == self.domain.me.name

    def _send_commits(self, view: PeerView, scope: str, commits: list[LogRecord]) -> None:
        """Send log records; one too large for a message (a change of every object of a huge partition) goes
        as the scope's state instead."""
        if any(len(record.changes) > MAX_RECORD_CHANGES for record in commits):
            group = self.scopes.group(scope)
            if group is not None:
                self._send_snapshot(view, scope, group.partitions, replace=False, force=True)
            return
        if view.send({"type": "commits", "scope": scope, "commits": [record.wire() for record in commits]}):
            sent = view.sent.setdefault(scope, {})
            for commit in commits:
                assert commit.seq is not None
                sent[commit.origin] = max(sent.get(commit.origin, 0), commit.seq)

    def _send_snapshot(self, view: PeerView, scope: str, partitions: list[str], *, replace: bool,
                       buckets: set[int] | None = None, force: bool = False) -> str | None:
        """Send the scope (or some buckets of it) in parts; returns the snapshot's id."""
        now = time.monotonic()
        if not force and now - view.snapshot_at.get(scope, -RESEND_AFTER) < RESEND_AFTER:
            return None
        view.snapshot_at[scope] = now
        versions = self.replica.versions(partitions, buckets)
        if buckets is not None and not versions:
            return None  # nothing of ours in those buckets: the peer's own link repairs them here
        vector = dict(self.store.vector(scope)) if buckets is None else None
        snapshot_id = f"{self.domain.device_id}-{next(self._ids)}"
        parts = [versions[i:i + SNAPSHOT_PART] for i in range(0, len(versions), SNAPSHOT_PART)] or [[]]
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            view.send({"type": "snapshot", "id": snapshot_id, "scope": scope, "replace": replace, "last": last,
                       "vv": vector if last else None, "versions": part})
        if vector is not None:
            view.sent[scope] = dict(vector)
        log.info("sent %s snapshot of %s (%d versions) to %s", "replacing" if replace else "merging", scope,
                 len(versions), view.link.device.name, extra={"peer": view.link.device.name})
        return snapshot_id

    def committed(self, commits: list[LogRecord]) -> None:
        """Send new local commits to the members of their scopes at once."""
        by_scope: dict[str, list[LogRecord]] = {}
        for commit in commits:
            by_scope.setdefault(commit.scope, []).append(commit)
        for scope, scope_commits in by_scope.items():
            group = self.scopes.group(scope)
            if group is None:
                continue
            for view in self.peers.values():
                if view.link.device.name in group.members and view.outbox is not None:
                    self._send_commits(view, scope, scope_commits)

    # -- inbound: what one peer sends this device -----------------------------------------------

    async def _inbound(self, connection: Connection) -> None:
        device = connection.device
        while True:
            message = await connection.receive()
            kind = message["type"]
            view = self.peers.get(device.id)
            if kind == "status":
                if not self._peer_status(view, message):
                    continue
                reply = self.status_message(connection.protocol)
                if message.get("domain_digest") != self.domain.digest(connection.protocol):
                    reply["domain"] = self.domain.state(connection.protocol).model_dump()
                await connection.send(reply)
            elif kind == "domain":
                self.domain.merge(message["domain"])
            elif kind in ("commits", "snapshot"):
                try:  # large messages (a 10,000-operation batch) are checked off the event loop
                    checked = await asyncio.to_thread((COMMITS if kind == "commits" else SNAPSHOT).validate_python,
                                                      message)
                except ValidationError as error:
                    self.dropped_messages += 1
                    log.warning("dropped a malformed %s message from %s: %s", kind, device.name,
                                error.errors()[0]["msg"], extra={"peer": device.name})
                    continue
                if isinstance(checked, Commits):
                    await self._receive_commits(connection, checked)
                else:
                    await self._receive_snapshot(connection, checked)
            elif kind == "sync-to-group":
                self._spawn(self._sync_requested(connection, message))

    def _member_scope(self, connection: Connection, scope: Any) -> GroupRecord | None:
        group = self.scopes.group(scope) if isinstance(scope, str) else None
        if group is None or connection.device.name not in group.members:
            return None
        return group

    async def _receive_commits(self, connection: Connection, message: Commits) -> None:
        scope = message.scope
        if self._member_scope(connection, scope) is None or not self.scopes.synced(scope):
            return
        _, gaps = await self.store.write(self.replica.apply_commits, scope, message.commits)
        if gaps:
            await connection.send({"type": "need", "scope": scope, "after": gaps})

    async def _receive_snapshot(self, connection: Connection, message: Snapshot) -> None:
        scope = message.scope
        group = self._member_scope(connection, scope)
        if group is None:
            return
        key = f"{connection.device.id}/{message.id}"
        self._snapshots.setdefault(key, []).extend(message.versions)
        if not message.last:
            return
        versions = self._snapshots.pop(key)
        if not message.replace and not self.scopes.synced(scope):
            return  # awaiting the initial sync: only a replacing snapshot makes this device synced
        await self.store.write(self.replica.apply_snapshot, scope, group.partitions, versions, message.vv,
                               message.replace)
        if message.replace:
            self.scopes.mark_synced(scope)
        log.info("applied %s snapshot of %s from %s (%d versions)", "replacing" if message.replace else "merging",
                 scope, connection.device.name, len(versions), extra={"peer": connection.device.name})
        await connection.send({"type": "ack", "id": message.id})

    # -- sync to group --------------------------------------------------------------------------

    async def sync_to_group(self, group_name: str, source: str) -> Message:
        """Make `source`'s configuration the group's (run there, asked over the channel if need be)."""
        group = self.domain.group(group_name)
        if group is None:
            raise NotFound(f"device group {group_name!r} does not exist", target=group_name)
        if source not in group.members:
            raise Conflict(f"{source} is not a member of device group {group_name}", target="from")
        if source == self.domain.me.name:
            return await self._sync_from_here(group)
        device = self.domain.device_named(source)
        view = self.peers.get(device.id) if device else None
        request_id = f"{self.domain.device_id}-{next(self._ids)}"
        waiter = asyncio.get_running_loop().create_future()
        self._waiters[request_id] = waiter
        if view is None or not view.send({"type": "sync-to-group", "id": request_id, "group": group_name}):
            self._waiters.pop(request_id, None)
            raise Conflict(f"{source} is not connected", target="from")
        try:
            answer = await asyncio.wait_for(waiter, SYNC_TIMEOUT)
        finally:
            self._waiters.pop(request_id, None)
        if answer.get("error"):
            raise Conflict(answer["error"], target="from")
        return answer["result"]

    async def _sync_requested(self, connection: Connection, message: Message) -> None:
        reply: Message = {"type": "sync-done", "id": message.get("id")}
        try:
            group = self._member_scope(connection, message.get("group"))
            if group is None:
                raise Conflict("not a member of that device group")
            reply["result"] = await self._sync_from_here(group)
        except ApiError as error:
            reply["error"] = error.message
        except TimeoutError:
            reply["error"] = "members did not confirm in time"
        with contextlib.suppress(ConnectionClosed):
            await connection.send(reply)

    async def _sync_from_here(self, group: GroupRecord) -> Message:
        scope = group.name
        if scope in self.scopes.held:
            raise Conflict(f"{self.domain.me.name} was restored from a backup and has not yet heard from every member"
                           " of the group what it has of this device's changes: sync from another member, or once"
                           " they are all connected", target="from")
        await self.store.write(self.replica.sequence_pending, scope)
        members = [d for d in self.domain.peers() if d.name in group.members]
        by_name = {d.name: self.peers.get(d.id) for d in members}
        missing = [name for name, view in by_name.items() if view is None or not view.connected]
        if missing:
            raise Conflict(f"not connected to {', '.join(missing)}: cannot sync the group", target="from")
        views = [view for view in by_name.values() if view is not None]
        mine = self.digest(scope)
        full = not group.auto_sync or group.full_load_on_sync or any(
            (status := v.status.get(scope)) is None or status.pending or status.buckets != mine for v in views)
        if full:
            waiters = []
            for view in views:
                snapshot_id = self._send_snapshot(view, scope, group.partitions, replace=True, force=True)
                waiter = asyncio.get_running_loop().create_future()
                self._waiters[snapshot_id] = waiter
                waiters.append(waiter)
            await asyncio.wait_for(asyncio.gather(*waiters), SYNC_TIMEOUT)
        else:
            vector = dict(self.store.vector(scope))
            for view in views:
                self._serve(view)
            deadline = time.monotonic() + SYNC_TIMEOUT
            def caught_up(view: PeerView) -> bool:
                status = view.status.get(scope)
                return status is not None and all(status.vv.get(o, 0) >= seq for o, seq in vector.items())
            while not all(caught_up(view) for view in views):
                if time.monotonic() > deadline:
                    raise TimeoutError
                await asyncio.sleep(0.05)
        return {"mode": "full" if full else "incremental", "from": self.domain.me.name,
                "devices": [d.name for d in members]}

    async def clear_conflicts(self, scope: str) -> int:
        """Clear the conflict records of a group: their deletes replicate, so on every member."""
        return await self.store.write(self._clear_conflicts, scope)

    def _clear_conflicts(self, scope: str) -> int:
        group = self.domain.group(scope)
        with self.store.transaction() as txn:
            records = [(r.partition, r.name) for partition in (group.partitions if group else [])
                       for r in txn.records(CONFLICTS, partition=partition)]
            for partition, name in records:
                txn.delete(CONFLICTS, partition, name)
        return len(records)
