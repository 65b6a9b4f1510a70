"""A small in-process fake Kubernetes API server, driven through the official ``kubernetes`` client in tests.

Supported (plain HTTP/1.1 on 127.0.0.1, JSON only, every request needs ``Authorization: Bearer <token>``):

* Resources, namespaced (any namespace name is accepted; Namespace objects do not exist): core/v1
  ``services`` (with the ``status`` subresource), discovery.k8s.io/v1 ``endpointslices``, coordination.k8s.io/v1
  ``leases``, core/v1 ``events`` and events.k8s.io/v1 ``events`` (a separate store: not converted to core/v1);
  networking.k8s.io/v1 ``ingresses``, gateway.networking.k8s.io/v1 ``gateways`` and ``httproutes`` (each with
  ``status``), core/v1 ``secrets`` (``stringData`` is kept as it came, not turned into ``data``); cluster-scoped:
  core/v1 ``nodes`` (with ``status``; control API namespace ``""``), ``ingressclasses``, ``gatewayclasses`` (with
  ``status``). Stored and served, never acted on (what ``deploy/kubernetes/`` applies): namespaces,
  serviceaccounts, roles, rolebindings, clusterroles, clusterrolebindings, deployments.
* Verbs: list (all namespaces and per namespace), watch, get, create (POST), replace (PUT), patch, delete.
  PATCH takes JSON merge patch, strategic merge patch (applied as a JSON merge patch: lists are replaced, never
  merged by key; ``$patch`` directives are not understood) and JSON patch (ops add/remove/replace/test).
* Metadata: one global monotonic resourceVersion stamped on every change; uid and creationTimestamp on create;
  generateName; ``generation`` (services, endpointslices, ingresses, gateways, httproutes, gatewayclasses,
  deployments) bumped when anything outside metadata/status
  changes. A write that changes nothing is a no-op (no new resourceVersion, no watch event).
* Optimistic concurrency: a PUT/PATCH whose metadata.resourceVersion, or a DELETE whose
  preconditions.resourceVersion, differs from the stored one gets 409 Conflict. PUT never creates.
* Services: create clears ``status``; PUT/PATCH of the service keep the stored status; PUT/PATCH of
  ``.../status`` change only ``status``.
* Selectors (list and watch): labelSelector ``a=b``, ``a==b``, ``a!=b``, ``a``, ``!a`` joined by commas;
  fieldSelector on ``metadata.name`` / ``metadata.namespace`` / ``type`` with ``=``, ``==``, ``!=``.
* Watch (chunked JSON lines): resourceVersion absent, "" or "0" starts with synthetic ADDED events of the
  current state; any other value replays every change after it from a bounded per-resource history, or sends one
  ERROR event (Status 410 Expired) when that history no longer reaches back so far (history overflow or
  ``compact()``). An object that starts/stops matching the selector arrives as ADDED/DELETED. BOOKMARK events
  every ``bookmark_interval`` seconds with ``allowWatchBookmarks=true``; ``timeoutSeconds`` ends the stream cleanly.
* Errors are ``Status`` objects: 400, 401, 404, 405, 409 (Conflict, AlreadyExists), 415, 422.
* List items carry no ``kind``/``apiVersion`` (a real server omits them too); watch event objects do.

Not supported: TLS, authorization, other resources, API discovery (``/api``, ``/apis``, ``/version``),
other cluster-scoped objects, defaulting and validation (beyond metadata.name), clusterIP/nodePort allocation,
finalizers and graceful deletion (delete is immediate), garbage collection, server-side apply, deletecollection,
pagination (``limit``/``continue`` are ignored: everything is returned), list ``resourceVersion`` semantics (lists
are always current), a watch from a resourceVersion newer than the current one (treated as current), set-based
label selectors (``in``, ``notin``), other field selectors, ``sendInitialEvents``, YAML/protobuf/CBOR,
managedFields, dryRun. Established watch streams never expire (a real server may end slow or old ones): use
``close_watches()`` to end them; after ``compact()`` the client's resumption then fails with 410.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import math
import re
import secrets
import select
import socket
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml
from kubernetes import client as k8s_client

Obj = dict[str, Any]
Objs = list[Obj]


@dataclass(frozen=True)
class Resource:
    name: str  # name in the control API and in request counters
    plural: str
    kind: str
    api_version: str
    status: bool = False  # has the status subresource
    generation: bool = False
    namespaced: bool = True

    @property
    def prefix(self) -> str:
        return f"/apis/{self.api_version}" if "/" in self.api_version else f"/api/{self.api_version}"

    @property
    def qualified(self) -> str:
        group = self.api_version.rpartition("/")[0]
        return f"{self.plural}.{group}" if group else self.plural


RESOURCES = (
    Resource("services", "services", "Service", "v1", status=True, generation=True),
    Resource("endpointslices", "endpointslices", "EndpointSlice", "discovery.k8s.io/v1", generation=True),
    Resource("leases", "leases", "Lease", "coordination.k8s.io/v1"),
    Resource("events", "events", "Event", "v1"),
    Resource("events.events.k8s.io", "events", "Event", "events.k8s.io/v1"),
    Resource("nodes", "nodes", "Node", "v1", status=True, namespaced=False),
    Resource("ingresses", "ingresses", "Ingress", "networking.k8s.io/v1", status=True, generation=True),
    Resource("ingressclasses", "ingressclasses", "IngressClass", "networking.k8s.io/v1", namespaced=False),
    Resource("gateways", "gateways", "Gateway", "gateway.networking.k8s.io/v1", status=True, generation=True),
    Resource("httproutes", "httproutes", "HTTPRoute", "gateway.networking.k8s.io/v1", status=True,
             generation=True),
    Resource("gatewayclasses", "gatewayclasses", "GatewayClass", "gateway.networking.k8s.io/v1", status=True,
             generation=True, namespaced=False),
    # kept, never acted on: what deploy/kubernetes/ applies
    Resource("namespaces", "namespaces", "Namespace", "v1", namespaced=False),
    Resource("serviceaccounts", "serviceaccounts", "ServiceAccount", "v1"),
    Resource("secrets", "secrets", "Secret", "v1"),
    Resource("roles", "roles", "Role", "rbac.authorization.k8s.io/v1"),
    Resource("rolebindings", "rolebindings", "RoleBinding", "rbac.authorization.k8s.io/v1"),
    Resource("clusterroles", "clusterroles", "ClusterRole", "rbac.authorization.k8s.io/v1", namespaced=False),
    Resource("clusterrolebindings", "clusterrolebindings", "ClusterRoleBinding", "rbac.authorization.k8s.io/v1",
             namespaced=False),
    Resource("deployments", "deployments", "Deployment", "apps/v1", status=True, generation=True),
)
_ROUTE = re.compile(r"(/api/v1|/apis/[^/]+/[^/]+)(?:/namespaces/([^/]+))?/([^/]+)(?:/([^/]+))?(?:/([^/]+))?")
_LABEL = re.compile(r"\s*(!?)\s*([\w./-]+)\s*(?:(!=|==|=)\s*([\w.-]*))?\s*")
_FIELD = re.compile(r"\s*(metadata\.name|metadata\.namespace|type)\s*(!=|==|=)\s*([\w./-]*)\s*")


class ApiError(Exception):
    """A failed request, answered as a Kubernetes ``Status`` object."""

    def __init__(self, code: int, reason: str, message: str, res: Resource | None = None, name: str = "") -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.res, self.name = code, reason, message, res, name

    def status(self) -> Obj:
        body: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                     "message": self.message, "reason": self.reason, "code": self.code}
        if self.res:
            body["details"] = {"name": self.name, "group": self.res.api_version.rpartition("/")[0],
                               "kind": self.res.plural}
        return body


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(doc: Obj, ops: Objs) -> Obj:
    """RFC 6902 JSON patch, ops add/remove/replace/test."""
    doc = copy.deepcopy(doc)
    try:
        for op in ops:
            *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
            target: Any = doc
            for part in parents:
                target = target[int(part)] if isinstance(target, list) else target[part]
            index: Any = (len(target) if last == "-" else int(last)) if isinstance(target, list) else last
            kind = op["op"]
            if kind not in ("add", "remove", "replace", "test"):
                raise ApiError(422, "Invalid", f"unsupported JSON patch op {kind!r}")
            if kind == "test" and target[index] != op["value"]:
                raise ApiError(422, "Invalid", f"test failed at {op['path']}")
            if kind in ("remove", "replace"):
                del target[index]
            if kind in ("add", "replace") and isinstance(target, list):
                target.insert(index, op["value"])
            elif kind in ("add", "replace"):
                target[index] = op["value"]
    except (KeyError, IndexError, ValueError, TypeError) as exc:
        raise ApiError(422, "Invalid", f"invalid JSON patch: {exc!r}") from exc
    return doc


class _Filter:
    """Namespace + labelSelector + fieldSelector of one list or watch."""

    def __init__(self, namespace: str | None, labels: str = "", fields: str = "") -> None:
        self.namespace, self.labels, self.fields = namespace, [], []
        for term in filter(str.strip, labels.split(",")):
            m = _LABEL.fullmatch(term)
            if not m or (m[1] and m[3]):
                raise ApiError(400, "BadRequest", f"unable to parse requirement: {term!r} (only =, ==, != and exists)")
            self.labels.append((m[2], m[3] or ("!" if m[1] else "exists"), m[4]))
        for term in filter(str.strip, fields.split(",")):
            m = _FIELD.fullmatch(term)
            if not m:
                raise ApiError(400, "BadRequest", f"field label not supported: {term!r}")
            self.fields.append((m[1], m[2], m[3]))

    def __call__(self, obj: Obj) -> bool:
        meta = obj["metadata"]
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        have = meta.get("labels") or {}
        for key, op, value in self.labels:
            if op in ("exists", "!") and (key in have) != (op == "exists"):
                return False
            if (op in ("=", "==") and have.get(key) != value) or (op == "!=" and have.get(key) == value):
                return False
        return all((_field(obj, key) == value) == (op != "!=") for key, op, value in self.fields)


def _field(obj: Obj, path: str) -> Any:
    """A field selector's field: ``metadata.name``, ``metadata.namespace``, ``type`` (of Secrets)."""
    return obj["metadata"].get(path.split(".")[1]) if path.startswith("metadata.") else obj.get(path)


@dataclass
class _Change:
    rv: int
    type: str
    obj: Obj
    old: Obj | None = None


@dataclass
class _Watcher:
    res: Resource
    match: _Filter
    queue: list[_Change] = field(default_factory=list)
    closed: bool = False

    def event(self, ch: _Change) -> Obj | None:
        new_ok, old_ok = self.match(ch.obj), ch.old is not None and self.match(ch.old)
        if ch.type != "MODIFIED" or (new_ok and old_ok):
            return {"type": ch.type, "object": ch.obj} if new_ok else None
        if new_ok:
            return {"type": "ADDED", "object": ch.obj}
        if old_ok:  # left the selection: the old object, stamped with the new resourceVersion
            gone = copy.deepcopy(ch.old)
            gone["metadata"]["resourceVersion"] = str(ch.rv)
            return {"type": "DELETED", "object": gone}
        return None


class FakeKubernetes:
    """The fake API server plus a thread-safe test-side control API. ``kind`` arguments accept a resource name
    (``services``, ``events.events.k8s.io``) or a kind (``Service``, ``EndpointSlice``, ``Lease``, ``Event``)."""

    def __init__(self, *, token: str | None = None, history: int = 1000, bookmark_interval: float = 1.0) -> None:
        self.token = token or secrets.token_urlsafe(16)
        self._cond = threading.Condition()
        self._rv = 1  # an empty store is at "1": "0" would mean "any version" to a watch
        self._objects: dict[str, dict[tuple[str, str], Obj]] = {r.name: {} for r in RESOURCES}
        self._history: dict[str, deque[_Change]] = {r.name: deque(maxlen=history) for r in RESOURCES}
        self._floor: dict[str, int] = {r.name: 0 for r in RESOURCES}  # history holds every change after this rv
        self._watchers: list[_Watcher] = []
        self._bookmark_interval = bookmark_interval
        self._requests: Counter[tuple[str, str]] = Counter()
        self._conns: set[socket.socket] = set()
        self._server: _Server | None = None

    # -- lifecycle ------------------------------------------------------------------------------------------------
    def start(self) -> FakeKubernetes:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-k8s", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self.close_watches()
        self._server.shutdown()
        self._server.server_close()
        with self._cond:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        self._server = None

    def __enter__(self) -> FakeKubernetes:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def kubeconfig(self, path: str | Path, namespace: str = "default") -> Path:
        """Write a kubeconfig (server url, bearer token, no TLS) for ``kubernetes.config.load_kube_config``."""
        path = Path(path)
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": self.token}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": namespace}}],
        }))
        return path

    def api_client(self) -> k8s_client.ApiClient:
        """A ``kubernetes.client.ApiClient`` for this server (no global configuration touched)."""
        config = k8s_client.Configuration(host=self.url, api_key={"authorization": f"Bearer {self.token}"})
        return k8s_client.ApiClient(config)

    # -- test-side control API ------------------------------------------------------------------------------------
    def apply(self, kind: str, obj: Obj) -> Obj:
        """Create or replace ``obj`` (namespace defaults to "default"); a missing ``status`` keeps the stored one."""
        res, obj = self._resource(kind), copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        ns = meta.setdefault("namespace", "default") if res.namespaced else ""
        with self._cond:
            if (ns, meta.get("name")) not in self._objects[res.name]:
                return self._create(res, ns, obj, keep_status=True)
            meta.pop("resourceVersion", None)
            return self._replace(res, ns, meta["name"], obj, "all")

    def delete(self, kind: str, namespace: str, name: str) -> Obj:
        """Delete an object (raises ApiError 404 if missing); returns it."""
        with self._cond:
            return self._delete(self._resource(kind), namespace, name)

    def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        with self._cond:
            return copy.deepcopy(self._objects[self._resource(kind).name].get((namespace, name)))

    def list(self, kind: str, namespace: str | None = None, label_selector: str = "") -> Objs:
        match = _Filter(namespace, label_selector)
        with self._cond:
            objs = self._objects[self._resource(kind).name].values()
            return sorted((copy.deepcopy(o) for o in objs if match(o)), key=_order)

    def events(self, namespace: str | None = None) -> Objs:
        """Events created through either events API (core/v1 and events.k8s.io/v1), oldest first."""
        both = self.list("events", namespace) + self.list("events.events.k8s.io", namespace)
        return sorted(both, key=lambda o: int(o["metadata"]["resourceVersion"]))

    @property
    def resource_version(self) -> str:
        with self._cond:
            return str(self._rv)

    def compact(self) -> None:
        """Drop all watch history, as after an etcd compaction (preceded by a write elsewhere): a watch from any
        resourceVersion seen so far, including a client resuming from its last event, gets 410 Expired."""
        with self._cond:
            self._rv += 1
            for name, history in self._history.items():
                history.clear()
                self._floor[name] = self._rv

    def close_watches(self) -> None:
        """End every open watch stream cleanly (as an API server does on timeout or restart)."""
        with self._cond:
            for watcher in self._watchers:
                watcher.closed = True
            self._cond.notify_all()

    def watchers(self, kind: str | None = None) -> int:
        """Number of open watch streams (of one resource if given)."""
        with self._cond:
            return sum(1 for w in self._watchers if kind is None or w.res is self._resource(kind))

    def set_bookmark_interval(self, seconds: float) -> None:
        with self._cond:
            self._bookmark_interval = seconds
            self._cond.notify_all()

    @property
    def requests(self) -> Counter[tuple[str, str]]:
        """Requests served, by (verb, resource): verbs list/watch/get/create/update/patch/delete, resources as
        ``services``, ``services/status``, ``endpointslices``, ``leases``, ``events``, ``events.events.k8s.io``."""
        with self._cond:
            return Counter(self._requests)

    def count(self, verb: str | None = None, resource: str | None = None) -> int:
        return sum(n for (v, r), n in self.requests.items() if verb in (None, v) and resource in (None, r))

    def reset_counts(self) -> None:
        with self._cond:
            self._requests.clear()

    # -- store (the caller holds self._cond) ------------------------------------------------------------------------
    @staticmethod
    def _resource(kind: str) -> Resource:
        for res in RESOURCES:
            if kind in (res.name, res.kind, res.kind.lower(), res.plural[:-1]):
                return res
        raise KeyError(f"unknown kind {kind!r}")

    def _stamp(self, res: Resource, obj: Obj) -> None:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        obj["kind"], obj["apiVersion"] = res.kind, res.api_version

    def _record(self, res: Resource, kind: str, obj: Obj, old: Obj | None = None) -> Obj:
        change = _Change(self._rv, kind, copy.deepcopy(obj), old)
        history = self._history[res.name]
        if len(history) == history.maxlen:
            self._floor[res.name] = history[0].rv
        history.append(change)
        for watcher in self._watchers:
            if watcher.res is res:
                watcher.queue.append(change)
        self._cond.notify_all()
        return copy.deepcopy(obj)

    def _create(self, res: Resource, ns: str, obj: Obj, keep_status: bool = False) -> Obj:
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        if not meta.get("name"):
            raise ApiError(422, "Invalid", f"{res.kind} is invalid: metadata.name: Required value", res)
        if (meta.setdefault("namespace", ns) if res.namespaced else meta.get("namespace", "")) != ns:
            raise ApiError(400, "BadRequest", "the namespace of the object does not match the request", res)
        if (ns, meta["name"]) in self._objects[res.name]:
            raise ApiError(409, "AlreadyExists", f'{res.qualified} "{meta["name"]}" already exists', res, meta["name"])
        if res.status and not keep_status:
            obj["status"] = {}
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        if res.generation:
            meta["generation"] = 1
        self._stamp(res, obj)
        self._objects[res.name][(ns, meta["name"])] = obj
        return self._record(res, "ADDED", obj)

    def _get(self, res: Resource, ns: str, name: str) -> Obj:
        try:
            return self._objects[res.name][(ns, name)]
        except KeyError:
            raise ApiError(404, "NotFound", f'{res.qualified} "{name}" not found', res, name) from None

    def _replace(self, res: Resource, ns: str, name: str, obj: Obj, part: str) -> Obj:
        """Write ``obj`` over the stored object. part: "main" keeps the stored status, "status" writes only the
        status, "all" writes everything (a missing status keeps the stored one)."""
        old, obj = self._get(res, ns, name), copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if meta.get("resourceVersion") not in (None, "", old["metadata"]["resourceVersion"]):
            raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {res.qualified} "{name}": the '
                           "object has been modified; please apply your changes to the latest version and try again",
                           res, name)
        namespace = meta.setdefault("namespace", ns) if res.namespaced else meta.get("namespace", "")
        if meta.setdefault("name", name) != name or namespace != ns:
            raise ApiError(400, "BadRequest", "the name/namespace of the object does not match the request", res, name)
        if part == "status" and res.status:
            new = {**copy.deepcopy(old), "status": obj.get("status", {})}
        else:
            new = dict(obj)
            if res.status and (part == "main" or "status" not in obj):
                new.pop("status", None)
                if "status" in old:
                    new["status"] = old["status"]
        for key in ("uid", "creationTimestamp", "generation", "resourceVersion"):
            if key in old["metadata"]:
                new["metadata"][key] = old["metadata"][key]
        new["kind"], new["apiVersion"] = res.kind, res.api_version
        if new == old:
            return copy.deepcopy(old)
        if res.generation and _spec(new) != _spec(old):
            new["metadata"]["generation"] = old["metadata"].get("generation", 0) + 1
        self._stamp(res, new)
        self._objects[res.name][(ns, name)] = new
        return self._record(res, "MODIFIED", new, old)

    def _delete(self, res: Resource, ns: str, name: str, rv: str | None = None) -> Obj:
        old = self._get(res, ns, name)
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", f'Precondition failed for {res.qualified} "{name}": resourceVersion', res)
        del self._objects[res.name][(ns, name)]
        gone = copy.deepcopy(old)
        self._stamp(res, gone)
        return self._record(res, "DELETED", gone)

    def _subscribe(self, res: Resource, match: _Filter, rv: str) -> _Watcher:
        """Register a watcher whose queue starts with the initial state (rv "" or "0") or the changes after rv."""
        watcher = _Watcher(res, match)
        with self._cond:
            if rv in ("", "0"):
                objs = sorted(self._objects[res.name].values(), key=_order)
                watcher.queue = [_Change(int(o["metadata"]["resourceVersion"]), "ADDED", o) for o in objs]
            else:
                if not rv.isdigit():
                    raise ApiError(400, "BadRequest", f"invalid resourceVersion {rv!r}")
                if int(rv) < self._floor[res.name]:
                    watcher.closed = True
                    gone = ApiError(410, "Expired", f"too old resource version: {rv} ({self._floor[res.name]})")
                    watcher.queue = [_Change(0, "ERROR", gone.status())]
                    return watcher
                watcher.queue = [c for c in self._history[res.name] if c.rv > int(rv)]
            self._watchers.append(watcher)
        return watcher

    # -- HTTP dispatch ------------------------------------------------------------------------------------------------
    def _dispatch(self, method: str, path: str, query: dict[str, str], body: Any, ctype: str) -> tuple[int, Any]:
        """Serve one request; a watch returns (200, (resource, filter)) for the handler to stream."""
        m = _ROUTE.fullmatch(path)
        res = m and next((r for r in RESOURCES if (r.prefix, r.plural) == (m[1], m[3])), None)
        sub = m and m[5]
        if not m or not res or (sub and (sub != "status" or not res.status)) or (m[2] and not res.namespaced) or (
                m[4] and not m[2] and res.namespaced):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        ns, name = m[2] if res.namespaced else "", m[4]
        is_watch = query.get("watch", "").lower() in ("true", "1")
        verbs = {"GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"} if name else \
            {"GET": "watch" if is_watch else "list", "POST": "create"}
        verb = verbs.get(method)
        with self._cond:
            self._requests[(verb or method.lower(), res.name + ("/status" if sub else ""))] += 1
            if verb is None or (method == "POST" and ns is None) or (method == "DELETE" and sub):
                raise ApiError(405, "MethodNotAllowed", f"the server does not allow this method on {res.qualified}")
            match = _Filter(ns or None, query.get("labelSelector", ""), query.get("fieldSelector", "")) if verb in (
                "list", "watch") else None
            if verb == "watch":
                return 200, (res, match)
            if verb == "list":
                items = sorted((_unkinded(o) for o in self._objects[res.name].values() if match(o)), key=_order)
                meta = {"resourceVersion": str(self._rv)}
                return 200, {"kind": res.kind + "List", "apiVersion": res.api_version, "metadata": meta, "items": items}
            if verb == "create":
                if not isinstance(body, dict):
                    raise ApiError(400, "BadRequest", "the request body must be a JSON object")
                return 201, self._create(res, ns, body)
            if verb == "get":
                return 200, copy.deepcopy(self._get(res, ns, name))
            if verb == "delete":
                rv = (body.get("preconditions") or {}).get("resourceVersion") if isinstance(body, dict) else None
                gone = self._delete(res, ns, name, rv)
                return 200, gone if res.name == "services" else {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                                                  "status": "Success", "details": {"name": name}}
            if verb == "patch":
                old = self._get(res, ns, name)
                if ctype == "application/json-patch+json" and isinstance(body, list):
                    body = json_patch(old, body)
                elif ctype in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
                    body = merge_patch(old, body)
                else:
                    raise ApiError(415, "UnsupportedMediaType", f"unsupported patch content type {ctype!r}")
            if not isinstance(body, dict):
                raise ApiError(400, "BadRequest", "the request body must be a JSON object")
            return 200, self._replace(res, ns, name, body, "status" if sub else "main")


def _order(obj: Obj) -> tuple[str, str]:
    return obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


def _spec(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "kind", "apiVersion")}


def _unkinded(obj: Obj) -> Obj:
    return {k: copy.deepcopy(v) for k, v in obj.items() if k not in ("kind", "apiVersion")}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeKubernetes


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.fake._cond:
            self.server.fake._conns.add(self.connection)

    def finish(self) -> None:
        with self.server.fake._cond:
            self.server.fake._conns.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        fake, method = self.server.fake, self.command
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            if self.headers.get("Authorization") != f"Bearer {fake.token}":
                raise ApiError(401, "Unauthorized", "Unauthorized")
            try:
                body = json.loads(raw) if raw else None
            except ValueError as exc:
                raise ApiError(400, "BadRequest", f"invalid JSON body: {exc}") from exc
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            code, result = fake._dispatch(method, url.path, query, body, ctype)
            if isinstance(result, tuple):
                watcher = fake._subscribe(*result, query.get("resourceVersion", ""))
                return self._watch(watcher, query)
        except ApiError as exc:
            code, result = exc.code, exc.status()
        except Exception as exc:  # a bug in the fake: answer it rather than drop the connection
            code, result = 500, ApiError(500, "InternalError", repr(exc)).status()
        data = json.dumps(result).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def _watch(self, watcher: _Watcher, query: dict[str, str]) -> None:
        fake, res = self.server.fake, watcher.res
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        timeout = query.get("timeoutSeconds")
        deadline = time.monotonic() + float(timeout) if timeout else math.inf
        bookmarks = query.get("allowWatchBookmarks", "").lower() == "true"
        last_bookmark = time.monotonic()
        try:
            while True:
                with fake._cond:
                    while not watcher.queue and not watcher.closed:
                        next_bookmark = last_bookmark + fake._bookmark_interval if bookmarks else math.inf
                        wait = min(deadline, next_bookmark) - time.monotonic()
                        if wait <= 0 or self._peer_closed():
                            break
                        fake._cond.wait(min(wait, 0.25))
                    batch, watcher.queue, current, closed = watcher.queue, [], fake._rv, watcher.closed
                for change in batch:
                    event = {"type": "ERROR", "object": change.obj} if change.type == "ERROR" else watcher.event(change)
                    if event:
                        self._chunk(json.dumps(event).encode() + b"\n")
                now = time.monotonic()
                if closed or now >= deadline or self._peer_closed():
                    break
                if bookmarks and now >= last_bookmark + fake._bookmark_interval:
                    meta = {"resourceVersion": str(current)}
                    bookmark = {"kind": res.kind, "apiVersion": res.api_version, "metadata": meta}
                    self._chunk(json.dumps({"type": "BOOKMARK", "object": bookmark}).encode() + b"\n")
                    last_bookmark = now
            self._chunk(b"")
        except OSError:
            self.close_connection = True
        finally:
            with fake._cond:
                if watcher in fake._watchers:
                    fake._watchers.remove(watcher)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _peer_closed(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True


def make_service(name: str, namespace: str = "default", *, ports: list[int | Obj] | None = None,
                 annotations: dict[str, str] | None = None, labels: dict[str, str] | None = None,
                 load_balancer_ip: str | None = None, selector: dict[str, str] | None = None,
                 service_type: str = "LoadBalancer", load_balancer_class: str | None = "tandem.io/lb",
                 spec: Obj | None = None) -> Obj:
    """A Service dict; int ports become ``{"name": "port-N", "port": N, "protocol": "TCP", "targetPort": N}``.
    A LoadBalancer Service is of Tandem's class unless told another (None: none); ``spec`` adds fields."""
    spec = {"type": service_type, "ports": [_port(p, service=True) for p in ports or [80]],
            "selector": selector or {"app": name}, **(spec or {})}
    if service_type == "LoadBalancer" and load_balancer_class:
        spec["loadBalancerClass"] = load_balancer_class
    if load_balancer_ip:
        spec["loadBalancerIP"] = load_balancer_ip
    meta: Obj = {"name": name, "namespace": namespace, "labels": labels or {}, "annotations": annotations or {}}
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}


def make_endpoint_slice(service: str, addresses: list[str | tuple[str, bool]], namespace: str = "default", *,
                        name: str | None = None, ports: list[int | Obj] | None = None,
                        node_names: dict[str, str] | None = None) -> Obj:
    """An EndpointSlice dict for ``service``; an address is "10.0.0.1" (ready) or ("10.0.0.1", ready);
    ``node_names`` gives an address's ``nodeName``."""
    endpoints = []
    for address in addresses:
        ip, ready = (address, True) if isinstance(address, str) else address
        endpoints.append({"addresses": [ip], "conditions": {"ready": ready, "serving": ready, "terminating": False}})
        if node_names and ip in node_names:
            endpoints[-1]["nodeName"] = node_names[ip]
    first = endpoints[0]["addresses"][0] if endpoints else ""
    labels = {"kubernetes.io/service-name": service, "endpointslice.kubernetes.io/managed-by": "fakeapi"}
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name or f"{service}-slice", "namespace": namespace, "labels": labels},
            "addressType": "IPv6" if ":" in first else "IPv4", "endpoints": endpoints,
            "ports": [_port(p, service=False) for p in ports or [80]]}


def _port(port: int | Obj, *, service: bool) -> Obj:
    if isinstance(port, dict):
        return dict(port)
    return {"name": f"port-{port}", "port": port, "protocol": "TCP"} | ({"targetPort": port} if service else {})


def make_node(name: str, address: str, *, ready: bool = True, labels: dict[str, str] | None = None) -> Obj:
    """A Node dict with one InternalIP and its Ready condition."""
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels or {}},
            "status": {"addresses": [{"type": "InternalIP", "address": address}, {"type": "Hostname", "address": name}],
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def make_ingress(name: str, rules: list[tuple[str | None, str, str, int | str]], namespace: str = "default", *,
                 ingress_class: str | None = "tandem", tls: list[tuple[list[str], str]] | None = None,
                 default_backend: tuple[str, int] | None = None, annotations: dict[str, str] | None = None,
                 path_type: str = "Prefix") -> Obj:
    """An Ingress dict: each rule is (host or None, path, Service name, Service port number or name); ``tls`` is
    (hosts, Secret name) entries."""
    by_host: dict[str | None, Objs] = {}
    for host, path, service, port in rules:
        port_ref = {"number": port} if isinstance(port, int) else {"name": port}
        by_host.setdefault(host, []).append({"path": path, "pathType": path_type,
                                             "backend": {"service": {"name": service, "port": port_ref}}})
    spec: Obj = {"rules": [({"host": host} if host else {}) | {"http": {"paths": paths}}
                           for host, paths in by_host.items()]}
    if ingress_class:
        spec["ingressClassName"] = ingress_class
    if tls:
        spec["tls"] = [{"hosts": hosts, "secretName": secret} for hosts, secret in tls]
    if default_backend:
        spec["defaultBackend"] = {"service": {"name": default_backend[0], "port": {"number": default_backend[1]}}}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "spec": spec,
            "metadata": {"name": name, "namespace": namespace, "annotations": annotations or {}}}


def make_ingress_class(name: str = "tandem", controller: str = "tandem.io/ingress-controller",
                       default: bool = False) -> Obj:
    annotations = {"ingressclass.kubernetes.io/is-default-class": "true"} if default else {}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "spec": {"controller": controller},
            "metadata": {"name": name, "annotations": annotations}}


def make_tls_secret(name: str, chain: str, key: str, namespace: str = "default") -> Obj:
    """A ``kubernetes.io/tls`` Secret holding a PEM chain and key (base64 in ``data``, as the API serves it)."""
    data = {"tls.crt": base64.b64encode(chain.encode()).decode(), "tls.key": base64.b64encode(key.encode()).decode()}
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls", "data": data,
            "metadata": {"name": name, "namespace": namespace}}


def make_gateway_class(name: str = "tandem", controller: str = "tandem.io/gateway-controller") -> Obj:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": name},
            "spec": {"controllerName": controller}}


def make_gateway(name: str, listeners: list[Obj], namespace: str = "default", *, gateway_class: str = "tandem",
                 address: str | None = None, annotations: dict[str, str] | None = None) -> Obj:
    """A Gateway dict; a listener is given whole (``{"name", "port", "protocol", ...}``)."""
    spec: Obj = {"gatewayClassName": gateway_class, "listeners": listeners}
    if address:
        spec["addresses"] = [{"type": "IPAddress", "value": address}]
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "spec": spec,
            "metadata": {"name": name, "namespace": namespace, "annotations": annotations or {}}}


def make_http_route(name: str, gateway: str, rules: Objs, namespace: str = "default", *,
                    hostnames: list[str] | None = None, section: str | None = None) -> Obj:
    """An HTTPRoute dict attached to ``gateway`` (in its namespace); rules are given whole (``matches``,
    ``backendRefs``, ``filters``)."""
    parent: Obj = {"name": gateway} | ({"sectionName": section} if section else {})
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"parentRefs": [parent], "hostnames": hostnames or [], "rules": rules}}
