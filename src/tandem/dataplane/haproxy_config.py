"""One haproxy.cfg from the virtual servers to serve (the HAProxy engine's renderer).

No name a user chose reaches the file: frontends, backends and servers are named by a hash of what
they stand for (`Rendering` keeps the map). Values that must reach it (paths, hosts, header values,
locations, regexes) are single-quoted by `quote` (HAProxy's strong quoting: nothing is interpreted
inside; a quote itself is written `\\'` between two quoted parts); values HAProxy would interpret
further (the `%` of a log-format location) are escaped, and values that cannot be written safely
(control characters, header names outside `[A-Za-z0-9_.-]`) leave their virtual server unserved
with the reason in `Rendering.errors`.
"""

import hashlib
import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path

from tandem.dataplane.engine import NOT_UDP, ServedPool, ServedRule, ServedVirtual
from tandem.models.http_fields import HEADER_NAME_RE

BALANCE = {"round-robin": "roundrobin", "least-connections": "leastconn", "source-hash": "source",
           "random": "random"}
COOKIE = "TANDEMSRV"
TIMEOUTS = ("timeout connect 5s", "timeout client 60s", "timeout server 60s", "timeout http-request 30s",
            "timeout queue 10s", "timeout tunnel 1h")


class Unrenderable(ValueError):
    """A value that cannot be written into the configuration safely."""


def quote(value: str) -> str:
    """`value` as one HAProxy configuration word, nothing in it interpreted (section 2.2)."""
    if any(not 0x20 <= ord(c) <= 0x7E for c in value):
        raise Unrenderable(f"{value!r} holds a character the haproxy engine cannot write")
    return "'" + value.replace("'", "'\\''") + "'"


def quote_format(value: str) -> str:
    """`value` as a log-format word that yields `value` itself (`%` doubled)."""
    return quote(value.replace("%", "%%"))


def identifier(prefix: str, *parts: str) -> str:
    """A safe, stable configuration name for what `parts` name."""
    return f"{prefix}_{hashlib.sha256(chr(0).join(parts).encode()).hexdigest()[:16]}"


def endpoint(address: str, port: int) -> str:
    """`address:port` as HAProxy reads it (the address checked to be an IP address)."""
    ip = ipaddress.ip_address(address)
    return f"ipv6@{ip}:{port}" if ip.version == 6 else f"{ip}:{port}"


@dataclass(frozen=True)
class ServerState:
    """What of a server the runtime API can change without a reload."""

    weight: int
    state: str
    """ready, drain or maint (disabled). The file cannot say drain: a draining server is written with weight 0,
    then set to drain (with its weight) through the runtime API."""


@dataclass(frozen=True)
class Server:
    """A server line's parts: `endpoint` and `options` (TLS, checks, PROXY protocol) are what the runtime API's
    `add server` takes; `cookie` (its persistence cookie) it does not."""

    endpoint: str
    options: str
    cookie: bool = False

    @property
    def checked(self) -> bool:
        return " check " in f"{self.options} "


@dataclass
class Fragment:
    """One virtual server rendered: its frontend, the backends it uses (name: text), the files they name, the
    names it gave and its servers with their runtime state."""

    virtual: ServedVirtual
    frontend: str = ""
    backend_texts: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    backends: dict[tuple[str, str], str] = field(default_factory=dict)
    servers: dict[tuple[str, str], str] = field(default_factory=dict)
    backend_servers: dict[str, dict[str, Server]] = field(default_factory=dict)
    states: dict[tuple[str, str], ServerState] = field(default_factory=dict)


@dataclass
class Rendering:
    """A rendered configuration: its text, the files it names (relative to the runtime directory: content),
    the names it gave (virtual key: frontend, (pool key, mode or `tcp+proxy`): backend, (backend, member key): server),
    the servers' runtime state, and the virtual servers left out with why; each virtual server's `Fragment`
    (rendered again only for a virtual server that changed) and each backend's text and servers."""

    text: str = ""
    files: dict[str, str] = field(default_factory=dict)
    frontends: dict[str, str] = field(default_factory=dict)
    backends: dict[tuple[str, str], str] = field(default_factory=dict)
    servers: dict[tuple[str, str], str] = field(default_factory=dict)
    states: dict[tuple[str, str], ServerState] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    fragments: dict[str, Fragment] = field(default_factory=dict)
    frontend_texts: dict[str, str] = field(default_factory=dict)
    backend_texts: dict[str, str] = field(default_factory=dict)
    backend_servers: dict[str, dict[str, Server]] = field(default_factory=dict)
    preamble: str = ""
    """The global and defaults sections."""

    def text_to_check(self, old: "Rendering | None") -> str:
        """What `haproxy -c` must accept before this configuration replaces `old`: the global and defaults
        sections with the frontends and backends of the virtual servers rendered anew. The others `old` served
        (accepted then), and names never clash (each is a hash of what it stands for): checking the whole
        configuration took as long as a reload (1.4 s with 11,000 virtual servers, bench/agent.py)."""
        kept = old.fragments if old is not None else {}
        new = [fragment for key, fragment in self.fragments.items() if kept.get(key) is not fragment]
        backends: dict[str, str] = {}
        for fragment in new:
            backends.update(fragment.backend_texts)
        return "\n".join([self.preamble, *(fragment.frontend for fragment in new), *backends.values()])

    def server_changes(self, old: "Rendering") -> "ServerChanges | None":
        """How to go from `old` to this configuration through the runtime API, when only servers differ (added,
        removed, weight or state changed: `haproxy -c` is not needed, what differs is written by Tandem from
        validated addresses, ports and numbers); None when anything else differs."""
        if self.files != old.files or self.frontend_texts != old.frontend_texts \
                or self.backend_texts.keys() != old.backend_texts.keys():
            return None
        changes = ServerChanges()
        for name, text in self.backend_texts.items():
            if text is old.backend_texts[name] or text == old.backend_texts[name]:
                continue
            if _SERVER_LINE.sub("", text) != _SERVER_LINE.sub("", old.backend_texts[name]):
                return None
            new_servers, old_servers = self.backend_servers[name], old.backend_servers[name]
            for server, line in new_servers.items():
                if server not in old_servers:
                    if line.cookie or "'" in line.options:
                        return None  # the runtime API adds no server with a cookie, and takes no quoted word
                    changes.added[(name, server)] = line
                elif old_servers[server] != line:
                    return None  # its options changed: only a reload changes them
                if old.states.get((name, server)) != self.states[(name, server)]:
                    changes.states[(name, server)] = self.states[(name, server)]
            changes.removed += [(name, server) for server in old_servers if server not in new_servers]
        return changes


@dataclass
class ServerChanges:
    """Servers to add (then set to their state), to remove, and whose weight or state to set."""

    added: dict[tuple[str, str], Server] = field(default_factory=dict)
    removed: list[tuple[str, str]] = field(default_factory=list)
    states: dict[tuple[str, str], ServerState] = field(default_factory=dict)


HOST_VARIABLE = "txn.tandem_host"
"""The request's host, without its port and in lower case, for the rules to compare (worked out once: doing so
for each of 20 rules cost 14% of an HTTP virtual server's requests/s, bench/dataplane.py l7_ratio)."""
_SERVER_LINE = re.compile(r"^    server .*\n", flags=re.MULTILINE)


def _global(runtime_dir: Path) -> list[str]:
    return ["global",
            f"    stats socket {quote(str(runtime_dir / 'haproxy.sock'))} mode 600 level admin expose-fd listeners",
            f"    crt-base {quote(str(runtime_dir))}",  # a crt-list names its files relative to it: no quoting there
            "    nbthread 1", "    hard-stop-after 30s", f"    pidfile {quote(str(runtime_dir / 'haproxy.pid'))}",
            "", "defaults", "    log global", *(f"    {t}" for t in TIMEOUTS), ""]


def _conditions(index: int, rule: ServedRule) -> tuple[list[str], list[str]]:
    """ACL lines and names for one rule (all must hold)."""
    acls, names = [], []

    def acl(suffix: str, criterion: str) -> None:
        name = f"r{index}_{suffix}"
        acls.append(f"    acl {name} {criterion}")
        names.append(name)

    if rule.host is not None:
        host = rule.host.lower()
        if host.startswith("*."):
            acl("host", f"var({HOST_VARIABLE}) -m end {quote(host[1:])}")
        else:
            acl("host", f"var({HOST_VARIABLE}) -m str {quote(host)}")
    if rule.path is not None:
        match = {"exact": "-m str", "prefix": "-m beg", "regex": "-m reg"}[rule.path_type]
        acl("path", f"path {match} {quote(rule.path)}")
    if rule.methods:
        for method in rule.methods:
            if not method.isalpha():
                raise Unrenderable(f"rule {rule.name!r}: method {method!r}")
        acl("method", "method " + " ".join(rule.methods))
    for number, (name, value) in enumerate(rule.headers):
        if not HEADER_NAME_RE.fullmatch(name):
            raise Unrenderable(f"rule {rule.name!r}: header name {name!r} cannot be matched by the haproxy engine")
        acl(f"h{number}", f"req.hdr({name}) -m str {quote(value)}")
    return acls, names


class _Renderer:
    """Renders one virtual server (`fragment`)."""

    def __init__(self, runtime_dir: Path, virtual: ServedVirtual) -> None:
        self.runtime_dir = runtime_dir
        self.out = Fragment(virtual)

    def backend(self, pool: ServedPool, mode: str, proxy_protocol: bool = False) -> str:
        flavour = mode + ("+proxy" if proxy_protocol else "")
        name = identifier("b", pool.key, flavour)
        self.out.backends[(pool.key, flavour)] = name
        if name in self.out.backend_texts:
            return name
        lines = [f"backend {name}", f"    mode {mode}", f"    balance {BALANCE[pool.lb_method]}"]
        cookie = pool.persistence == "cookie" and mode == "http"
        if cookie:
            lines.append(f"    cookie {COOKIE} insert indirect nocache")
        elif pool.persistence != "none":
            lines += ["    stick-table type ip size 1m expire 30m", "    stick on src"]
        check = ""
        monitor = pool.monitor
        if monitor is not None:
            check = f" check inter {int(monitor.interval * 1000)}ms rise {int(monitor.rise)} fall {int(monitor.fall)}"
            if monitor.tls and pool.tls is None:  # a pool over TLS checks over TLS anyway
                check += " check-ssl verify none"
            lines.append(f"    timeout check {int(monitor.timeout * 1000)}ms")
            if monitor.type == "http":
                lines.append("    option httpchk")
                send = f"    http-check send meth {quote(monitor.method)} uri {quote(monitor.path)}"
                send += f" ver HTTP/1.1 hdr Host {quote(monitor.host)}" if monitor.host else " ver HTTP/1.0"
                lines += [send, f"    http-check expect status {int(monitor.expected_status)}"]
        options = self.tls(pool) + check + (" send-proxy-v2" if proxy_protocol else "")
        servers = self.out.backend_servers[name] = {}
        for member in pool.members:
            server = identifier("s", member.key)
            self.out.servers[(name, member.key)] = server
            weight = max(0, min(256, int(member.weight)))
            state = {"disabled": "maint", "drain": "drain"}.get(member.state, "ready")
            self.out.states[(name, server)] = ServerState(weight, state)
            servers[server] = line = Server(endpoint(member.address, member.port), options, cookie)
            written = 0 if state == "drain" else weight
            disabled = " disabled" if state == "maint" else ""
            lines.append(f"    server {server} {line.endpoint} weight {written}{disabled}{options}"
                         + (f" cookie {server}" if cookie else ""))
        self.out.backend_texts[name] = "\n".join(lines) + "\n"
        return name

    def tls(self, pool: ServedPool) -> str:
        """The server options reaching `pool`'s members over TLS (its CA bundle written as a file)."""
        tls = pool.tls
        if tls is None:
            return ""
        name = tls.server_name
        sni = f" sni {quote(f'str({name})')}" if name else ""
        if not tls.verify:
            return " ssl verify none" + sni
        if tls.ca is None or tls.ca_reference is None:
            raise Unrenderable(f"pool {pool.key}: its CA bundle {tls.ca_reference} does not exist")
        file = f"certs/{identifier('a', tls.ca_reference)}.pem"
        self.out.files[file] = tls.ca.strip() + "\n"
        host = f" verifyhost {quote(name)}" if name else ""
        return f" ssl verify required ca-file {quote(str(self.runtime_dir / file))}{sni}{host}"

    def fragment(self) -> Fragment:
        """The virtual server rendered (Unrenderable if it cannot be written safely)."""
        virtual = self.out.virtual
        if virtual.protocol == "udp":
            raise Unrenderable(NOT_UDP)
        name = identifier("f", virtual.key)
        mode = "tcp" if virtual.protocol == "tcp" else "http"
        bind = f"    bind {endpoint(virtual.address, virtual.port)} transparent"  # IP_FREEBIND: before its address
        lines = [f"frontend {name}", f"    mode {mode}"]
        if virtual.protocol == "https":
            if not virtual.certificates:
                raise Unrenderable("an https virtual server needs at least one certificate")
            entries = []
            for certificate in virtual.certificates:
                file = f"certs/{identifier('c', certificate.reference)}.pem"
                chain = certificate.certificate.strip() + "\n" + certificate.key.strip() + "\n"
                self.out.files[file] = chain
                entries.append(file)
            crt_list = f"certs/{identifier('l', virtual.key)}.list"
            self.out.files[crt_list] = "".join(f"{entry}\n" for entry in entries)
            bind += f" ssl crt-list {quote(str(self.runtime_dir / crt_list))} alpn h2,http/1.1"
        lines.append(bind)
        if mode == "tcp":
            if virtual.pool is not None:
                lines.append(f"    default_backend {self.backend(virtual.pool, mode, virtual.proxy_protocol)}")
        else:
            lines += self.http(virtual, mode)
        self.out.frontend = "\n".join(lines) + "\n"
        return self.out

    def http(self, virtual: ServedVirtual, mode: str) -> list[str]:
        """An http/https frontend's lines after its bind: forwarding headers, rules, default backend."""
        # a reload closes idle keep-alive connections after an answer; in the defaults, HAProxy warned of it for
        # every tcp frontend at each reload (600 lines a shard's reload at 11,000 virtual servers)
        lines = ["    option idle-close-on-response"]
        if virtual.forwarded_for:
            proto = "https" if virtual.protocol == "https" else "http"
            lines += ["    option forwardfor", f"    http-request set-header Forwarded 'for=\"%[src]\";proto={proto}'"]
        if any(rule.host is not None for rule in virtual.rules):  # the request's host, once
            lines.append(f"    http-request set-var({HOST_VARIABLE}) req.hdr(host),field(1,:),lower")
        if all(rule.action == "forward" and rule.pool is not None for rule in virtual.rules):
            lines += self.forwards(virtual.rules, mode)
        else:
            lines += self.ordered(virtual.rules, mode)
        if virtual.pool is not None:
            lines.append(f"    default_backend {self.backend(virtual.pool, mode)}")
        return lines

    def forwards(self, rules: tuple[ServedRule, ...], mode: str) -> list[str]:
        """Rules that all forward to a pool: use_backend takes the first that matches, in order."""
        lines = []
        for index, rule in enumerate(rules):
            acls, names = _conditions(index, rule)
            condition = f" if {' '.join(names)}" if names else ""
            lines += [*acls, f"    use_backend {self.backend(rule.pool, mode)}{condition}"]
        return lines

    def ordered(self, rules: tuple[ServedRule, ...], mode: str) -> list[str]:
        """Rules of any action. HAProxy takes its http-request rules (redirect, return, deny) before any
        use_backend, so the first rule that matches is found first and each action then asks for it."""
        lines, forwards = [], []
        for index, rule in enumerate(rules):
            acls, names = _conditions(index, rule)
            lines += acls
            lines.append(f"    http-request set-var(txn.tandem_rule) int({index})"
                         f" if !{{ var(txn.tandem_rule) -m found }}" + "".join(f" {n}" for n in names))
            chosen = f"if {{ var(txn.tandem_rule) -m int {index} }}"
            if rule.action == "forward":
                if rule.pool is None:
                    lines.append(f"    http-request return status 503 {chosen}")
                else:
                    forwards.append(f"    use_backend {self.backend(rule.pool, mode)} {chosen}")
            elif rule.action == "redirect":
                location = quote_format(rule.location or "/")
                lines.append(f"    http-request redirect location {location} code {int(rule.status or 302)} {chosen}")
            elif rule.action == "respond":
                lines.append(f"    http-request return status {int(rule.status or 200)} {chosen}")
            elif rule.action == "reject":
                lines.append(f"    http-request deny {chosen}")
            else:
                raise Unrenderable(f"rule {rule.name!r}: unknown action {rule.action!r}")
        return lines + forwards


def render(virtuals: list[ServedVirtual], runtime_dir: Path, previous: Rendering | None = None) -> Rendering:
    """The configuration serving `virtuals`; those that cannot be written are left out (`errors`). A virtual server
    that is the very object `previous` rendered keeps its fragment (only what changed is rendered again:
    rendering 11,000 virtual servers took 2 s, bench/agent.py)."""
    out = Rendering()
    kept = previous.fragments if previous is not None else {}
    for virtual in virtuals:
        if not virtual.enabled:
            continue
        fragment = kept.get(virtual.key)
        if fragment is None or fragment.virtual is not virtual:
            try:
                fragment = _Renderer(runtime_dir, virtual).fragment()
            except (Unrenderable, KeyError, ValueError) as error:
                out.errors[virtual.key] = f"not served: {error}"
                continue
        out.fragments[virtual.key] = fragment
        out.frontends[virtual.key] = identifier("f", virtual.key)
        out.frontend_texts[virtual.key] = fragment.frontend
        out.files.update(fragment.files)
        out.backends.update(fragment.backends)
        out.servers.update(fragment.servers)
        out.states.update(fragment.states)
        for name, text in fragment.backend_texts.items():
            out.backend_texts.setdefault(name, text)
        for name, servers in fragment.backend_servers.items():
            out.backend_servers.setdefault(name, servers)
    out.preamble = "\n".join(_global(runtime_dir))
    out.text = "\n".join([out.preamble, *out.frontend_texts.values(), *out.backend_texts.values()])
    return out
