"""The intercluster listener: pairing requests and the sessions of paired clusters."""

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from tandem.peering import pairing, secure
from tandem.peering.records import Relationships
from tandem.peering.wire import Channel, WireError

log = logging.getLogger("tandem.peering")

IDLE_TIMEOUT = 30.0
"""A session that sends nothing for this long is closed (links probe every second)."""
MAX_UNAUTHENTICATED = 64
"""Connections that have not authenticated yet (pairing, or a session's handshake) held at once: more are
refused with `busy` (a link tries again within seconds)."""
AUTH_TIMEOUT = 10.0
"""Seconds a connection has to pair or to open its session; then it is closed."""

UNKNOWN = "this cluster has no relationship with yours (deleted here?)"

Handler = Callable[[str, dict[str, Any]], dict[str, Any] | Awaitable[dict[str, Any]]]
"""Answers one request of the paired cluster: (relationship uuid, request) -> reply (or an awaitable of it)."""


class InterclusterServer:
    """Accepts connections of peer clusters on this device's intercluster address."""

    def __init__(self, relationships: Relationships, local: Callable[[], pairing.ClusterDescription],
                 handlers: dict[str, Handler]) -> None:
        self._relationships = relationships
        self._local = local
        self._handlers = handlers
        self._limiter = pairing.Limiter()
        self._unauthenticated = 0
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._accept, host, port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        channel = Channel(reader, writer)
        try:
            if self._unauthenticated >= MAX_UNAUTHENTICATED:
                return await channel.fail("busy", "too many connections are authenticating here: try again")
            self._unauthenticated += 1
            try:
                async with asyncio.timeout(AUTH_TIMEOUT):
                    session = await self._authenticate(channel)
            except TimeoutError:
                raise WireError(f"not authenticated within {AUTH_TIMEOUT:g} s") from None
            finally:
                self._unauthenticated -= 1
            if session is not None:
                await self._session(channel, *session)
        except WireError as error:
            log.debug("intercluster connection from %s ended: %s", channel.peer_host, error)
        except Exception:  # a bug in one conversation must not take the listener down
            log.exception("intercluster connection from %s failed", channel.peer_host)
        finally:
            await channel.close()

    async def _authenticate(self, channel: Channel) -> tuple[str, str] | None:
        """Answer the hello: a pairing (None once done), or a session's handshake (its cluster and key)."""
        hello = await channel.receive()
        if hello["type"] == "pair":
            await pairing.respond(channel, hello, self._relationships, self._local(), self._limiter)
            return None
        if hello["type"] != "session":
            await channel.fail("malformed", f"unknown request {hello['type']!r}")
            return None
        cluster = str(hello.get("cluster", ""))
        record = self._relationships.with_cluster(cluster)
        if record is None or record.key is None:
            await channel.fail("unknown", UNKNOWN)
            return None
        encryption = record.encryption_state or "none"
        if hello.get("encryption") != encryption:
            await channel.fail("encryption", f"this relationship uses encryption {encryption}")
            return None
        key = record.key
        await secure.server_session(channel, str(hello.get("nonce", "")), key, encryption,
                                    lambda identity: key if identity == cluster else None)
        return cluster, key

    async def _session(self, channel: Channel, cluster: str, key: str) -> None:
        while True:
            request = await channel.receive(IDLE_TIMEOUT)
            current = self._relationships.with_cluster(cluster)
            if current is None:
                return await channel.fail("unknown", UNKNOWN)
            if current.key != key:
                return await channel.fail("rekeyed", "the relationship's key changed: open a new session")
            handler = self._handlers.get(request["type"])
            if handler is None:
                await channel.fail("malformed", f"unknown request {request['type']!r}")
                continue
            try:
                reply = handler(current.uuid, request)
                if inspect.isawaitable(reply):
                    reply = await reply
            except ValueError as error:
                await channel.fail("invalid", str(error))
                continue
            await channel.send(reply)
            if reply["type"] == "deleted":
                return
