"""The builtin engine's TCP proxy for one virtual server, on asyncio Protocols.

Each accepted client gets a backend connection to a pool member chosen by the balancer; if a
member refuses or does not answer within `connect_timeout`, the next one is tried (each member at
most once), and when none is left the client is closed. Bytes then flow both ways with flow
control: when one side's write buffer is full, reading from the other side pauses until it
drains. A half-close (EOF) is passed on to the other side; the pair is closed once both sides have
sent EOF, or at once when either side fails.
"""

import asyncio
import contextlib
import logging
import socket

from tandem.dataplane.balancer import Balancer
from tandem.dataplane.stats import Counters, PoolStats, Stats

log = logging.getLogger(__name__)

PENDING_LIMIT = 256 * 1024
"""Client bytes buffered while the backend connection is being made; beyond, reading pauses."""


def _pause(transport: asyncio.BaseTransport | None) -> None:
    if transport is not None and not transport.is_closing():
        transport.pause_reading()  # type: ignore[attr-defined]


def _resume(transport: asyncio.BaseTransport | None) -> None:
    if transport is not None and not transport.is_closing():
        transport.resume_reading()  # type: ignore[attr-defined]


def _close(transport: asyncio.BaseTransport | None, failed: bool) -> None:
    """Close a transport: flush what is buffered, or abort (reset) when the other side failed."""
    if transport is not None and not transport.is_closing():
        if failed:
            transport.abort()  # type: ignore[attr-defined]
        else:
            transport.close()


class _Backend(asyncio.Protocol):
    """The connection to the chosen member: passes what it reads to the client."""

    __slots__ = ("attached", "client", "counters", "transport")

    def __init__(self, client: "_Client", counters: Counters) -> None:
        self.client = client
        self.counters = counters
        self.transport: asyncio.Transport | None = None
        self.attached = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        client = self.client
        client.transport.write(data)
        size = len(data)
        client.virtual.bytes_out += size
        self.counters.bytes_out += size

    def eof_received(self) -> bool:
        client = self.client
        client.eof_backend = True
        if client.eof_client:
            client.close_both()
        elif not client.transport.is_closing():
            client.transport.write_eof()
        return True

    def pause_writing(self) -> None:
        _pause(self.client.transport)

    def resume_writing(self) -> None:
        _resume(self.client.transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.attached:
            return
        self.attached = False
        self.counters.connections_current -= 1
        _close(self.client.transport, exc is not None)


class _Client(asyncio.Protocol):
    """An accepted client connection: connects to a member, then passes what it reads to it."""

    __slots__ = ("backend", "connecting", "done", "eof_backend", "eof_client", "member", "pending",
                 "pending_size", "proxy", "transport", "virtual")

    def __init__(self, proxy: "VirtualServerProxy") -> None:
        self.proxy = proxy
        self.virtual = proxy.stats.virtual
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.backend: _Backend | None = None
        self.member: Counters | None = None
        self.pending: list[bytes] = []
        self.pending_size = 0
        self.eof_client = False
        self.eof_backend = False
        self.connecting: asyncio.Task[None] | None = None
        self.done = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.virtual.connections_total += 1
        self.virtual.connections_current += 1
        self.proxy._opened(self)
        self.connecting = asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        proxy = self.proxy
        loop = asyncio.get_running_loop()
        peer = self.transport.get_extra_info("peername")
        for target in proxy.balancer.candidates(peer[0] if peer else ""):
            if self.done:
                return
            counters = proxy.stats.pool.member(target.key)
            counters.connections_current += 1  # counted from the choice on, for least-connections
            backend = _Backend(self, counters)
            try:
                async with asyncio.timeout(proxy.connect_timeout):
                    await loop.create_connection(lambda b=backend: b, target.address, target.port)
            except (OSError, TimeoutError) as exc:
                counters.connections_current -= 1
                log.debug("%s: member %s failed: %r", proxy.name, target.key, exc)
                continue
            except asyncio.CancelledError:
                counters.connections_current -= 1
                _close(backend.transport, True)
                raise
            if self.done:
                counters.connections_current -= 1
                _close(backend.transport, True)
                return
            counters.connections_total += 1
            self._attach(backend)
            return
        log.debug("%s: no member available, closing the client", proxy.name)
        _close(self.transport, False)

    def _attach(self, backend: _Backend) -> None:
        backend.attached = True
        self.backend = backend
        self.member = backend.counters
        transport = backend.transport
        assert transport is not None
        if self.pending:
            data = b"".join(self.pending)
            self.pending.clear()
            transport.write(data)
            self.virtual.bytes_in += len(data)
            self.member.bytes_in += len(data)
            if self.pending_size > PENDING_LIMIT:
                _resume(self.transport)
            self.pending_size = 0
        if self.eof_client:
            transport.write_eof()

    def data_received(self, data: bytes) -> None:
        backend = self.backend
        if backend is not None:
            backend.transport.write(data)  # type: ignore[union-attr]
            size = len(data)
            self.virtual.bytes_in += size
            self.member.bytes_in += size  # type: ignore[union-attr]
            return
        self.pending.append(data)
        self.pending_size += len(data)
        if self.pending_size > PENDING_LIMIT:
            _pause(self.transport)

    def eof_received(self) -> bool:
        self.eof_client = True
        backend = self.backend
        if backend is not None:
            if self.eof_backend:
                self.close_both()
            elif not backend.transport.is_closing():  # type: ignore[union-attr]
                backend.transport.write_eof()  # type: ignore[union-attr]
        return True

    def pause_writing(self) -> None:
        if self.backend is not None:
            _pause(self.backend.transport)

    def resume_writing(self) -> None:
        if self.backend is not None:
            _resume(self.backend.transport)

    def close_both(self) -> None:
        """Both sides sent EOF: close both once what is buffered has been written."""
        _close(self.transport, False)
        if self.backend is not None:
            _close(self.backend.transport, False)

    def abort(self) -> None:
        """Drop the connection at once (both sides)."""
        if self.connecting is not None:
            self.connecting.cancel()
        _close(self.transport, True)
        if self.backend is not None:
            _close(self.backend.transport, True)

    def connection_lost(self, exc: Exception | None) -> None:
        self.done = True
        if self.connecting is not None and not self.connecting.done():
            self.connecting.cancel()
        if self.backend is not None:
            _close(self.backend.transport, exc is not None)
        self.pending.clear()
        self.virtual.connections_current -= 1
        self.proxy._closed(self)


IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)


def listening_socket(address: str, port: int) -> socket.socket:
    """A TCP socket bound to `address:port` even before the address is on this host (IP_FREEBIND): the
    failover process adds a floating address while the data plane starts to serve it, in any order."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
        sock.bind((address, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class VirtualServerProxy:
    """Listens on one virtual server's address:port and proxies each connection to a pool member."""

    def __init__(self, name: str, address: str, port: int, balancer: Balancer, stats: Stats | None = None,
                 connect_timeout: float = 3.0) -> None:
        self.name = name
        self.address = address
        self.port = port
        self.balancer = balancer
        self.stats = stats if stats is not None else Stats()
        self.connect_timeout = connect_timeout
        self._server: asyncio.Server | None = None
        self._connections: set[_Client] = set()
        self._idle: asyncio.Event | None = None

    @property
    def listening(self) -> bool:
        return self._server is not None and self._server.is_serving()

    @property
    def connections(self) -> int:
        """Client connections open now."""
        return len(self._connections)

    @property
    def bound(self) -> tuple[str, int] | None:
        """The address and port listened on (the port chosen by the system when 0 was asked)."""
        if self._server is None or not self._server.sockets:
            return None
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    def buffered(self) -> int:
        """Bytes held in the proxy's own buffers now, both directions (flow control keeps it small)."""
        total = 0
        for client in self._connections:
            total += client.pending_size + client.transport.get_write_buffer_size()
            if client.backend is not None and client.backend.transport is not None:
                total += client.backend.transport.get_write_buffer_size()
        return total

    async def start(self) -> None:
        """Listen; raises OSError when the address cannot be bound."""
        if self._server is not None:
            return
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Client(self), sock=listening_socket(self.address, self.port),
                                                backlog=1024)
        log.info("%s: listening on %s:%d", self.name, self.address, self.port)

    def update(self, balancer: Balancer, pool_stats: PoolStats | None = None) -> None:
        """Use another balancer (and, when the pool changed, its member counters) for new connections."""
        self.balancer = balancer
        if pool_stats is not None:
            self.stats.pool = pool_stats

    def stop_accepting(self) -> None:
        """Close the listening socket now; open connections go on."""
        if self._server is not None:
            self._server.close()
            self._server = None
            log.info("%s: stopped listening on %s:%d", self.name, self.address, self.port)

    async def stop(self, drain_timeout: float) -> None:
        """Stop accepting at once, let open connections finish for up to `drain_timeout` seconds,
        then abort the rest."""
        self.stop_accepting()
        if self._connections and drain_timeout > 0:
            self._idle = self._idle or asyncio.Event()
            try:
                async with asyncio.timeout(drain_timeout):
                    await self._idle.wait()
            except TimeoutError:
                pass
        for client in list(self._connections):
            client.abort()
        if self._connections:
            await asyncio.sleep(0)  # let the aborted transports report connection_lost

    def _opened(self, client: _Client) -> None:
        self._connections.add(client)
        if self._idle is not None:
            self._idle.clear()

    def _closed(self, client: _Client) -> None:
        self._connections.discard(client)
        if not self._connections and self._idle is not None:
            self._idle.set()
