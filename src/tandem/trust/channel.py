"""The peer channel: WebSocket over mutual TLS between trusted devices.

Each device listens on its peer address and dials every other trusted device. The listener
refuses a client whose certificate is not one of the trusted devices' (checked by fingerprint
against the current trust list, so a device removed from trust is refused at once), and the
dialer accepts only the certificate pinned for the device it dials. Messages are JSON objects.

Both sides announce the peer protocols they speak (`Tandem-Protocol: LOWEST-HIGHEST` in the handshake's request
and answer; a device of before this header speaks 1) and speak the highest both know. A device that shares none
with this one is refused (close code 4426, saying both ranges) and its link says so: an operator upgrading a
cluster sees which member to upgrade, rather than messages neither side understands.
"""

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from websockets.asyncio.client import connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from tandem import hooks
from tandem._version import __version__
from tandem.ipc import Message
from tandem.models.cluster import TrustedDevice
from tandem.tasks import cancel
from tandem.trust import tls
from tandem.trust.domain import Domain
from tandem.trust.identity import Identity

log = logging.getLogger("tandem.channel")

PATH = "/peer"
MAX_MESSAGE = 64 << 20
PING_INTERVAL, PING_TIMEOUT = 1.0, 3.0
RETRY_MIN, RETRY_MAX = 0.1, 2.0
REFUSED = 4403
UNSPOKEN = 4426
PROTOCOL_HEADER = "Tandem-Protocol"
RELEASE_HEADER = "Tandem-Release"
"""The release of the device that answers a peer connection (shown with the trusted devices)."""
PROTOCOLS = (1, 2)
"""The peer protocols this release speaks, lowest and highest: a release that changes the messages raises the
highest, and keeps the lowest while it still speaks the previous release's. 2: domain states carry the users
(`trust.domain.USERS_SINCE`); a peer of protocol 1 is sent the other records."""


def spoken() -> tuple[int, int]:
    """The protocols this device speaks (a test may pretend to be another release: `TANDEM_TEST_PEER_PROTOCOL`)."""
    pretended = hooks.value("TANDEM_TEST_PEER_PROTOCOL")
    return (pretended and parse_protocols(pretended)) or PROTOCOLS


def parse_protocols(text: str | None) -> tuple[int, int] | None:
    """`LOWEST-HIGHEST` as announced (None: malformed); no header at all means protocol 1 only."""
    if text is None:
        return 1, 1
    low, _, high = text.partition("-")
    if not (low.isdecimal() and high.isdecimal()) or not 0 < int(low) <= int(high) < 1000:
        return None
    return int(low), int(high)


def common_protocol(mine: tuple[int, int], theirs: tuple[int, int] | None) -> int | None:
    """The protocol two devices speak together: the highest both know (None: none)."""
    if theirs is None or max(mine[0], theirs[0]) > min(mine[1], theirs[1]):
        return None
    return min(mine[1], theirs[1])


def _ranges(me: str, mine: tuple[int, int], them: str, theirs: tuple[int, int] | None, text: str | None) -> str:
    """Why this device (`me`) and `them` cannot talk."""
    spoken_there = f"{theirs[0]}-{theirs[1]}" if theirs else repr(text)
    return f"no common peer protocol: {them} speaks {spoken_there}, {me} {mine[0]}-{mine[1]}; upgrade the older"



class Connection:
    """One peer connection: JSON messages in and out."""

    def __init__(self, websocket: Any, device: TrustedDevice, protocol: int = 1) -> None:
        self._ws = websocket
        self.device = device
        self.protocol = protocol
        """The peer protocol both ends speak on it."""
        self._sending = asyncio.Lock()

    async def send(self, message: Message) -> None:
        async with self._sending:
            await self._ws.send(orjson.dumps(message).decode())

    async def receive(self) -> Message:
        """The next message; ConnectionClosed when the connection ends. A message that is not a
        JSON object closes the connection (a peer that sends garbage is not to be trusted)."""
        data = await self._ws.recv()
        try:
            message = orjson.loads(data)
        except orjson.JSONDecodeError:
            message = None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            await self._ws.close(1003, "malformed message")
            raise ConnectionClosed(None, None)
        return message

    async def close(self, reason: str = "") -> None:
        await self._ws.close(1000, reason)


Handler = Callable[[Connection], Awaitable[None]]


class PeerServer:
    """Accepts connections from trusted devices and hands each to `on_connection`."""

    def __init__(self, identity: Identity, domain: Domain, on_connection: Handler) -> None:
        self._domain = domain
        self._on_connection = on_connection
        self._trusted: set[str] = set()
        self._context = tls.server_context(identity, [])
        self._server: Server | None = None
        self._connections: dict[ServerConnection, str] = {}
        self.refresh()

    async def start(self, host: str, port: int) -> None:
        self._server = await serve(self._handle, host, port, ssl=self._context, ping_interval=PING_INTERVAL,
                                   ping_timeout=PING_TIMEOUT, max_size=MAX_MESSAGE, compression=None,
                                   process_response=_announce)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def refresh(self) -> None:
        """Follow the trust list: trust new devices' certificates, drop connections of removed ones."""
        for device in self._domain.peers():
            if device.fingerprint not in self._trusted:
                tls.trust(self._context, device.cert)
                self._trusted.add(device.fingerprint)
        for websocket, fingerprint in list(self._connections.items()):
            if self._trusted_device(fingerprint) is None:
                asyncio.get_running_loop().create_task(websocket.close(REFUSED, "no longer trusted"))

    def _trusted_device(self, fingerprint: str | None) -> TrustedDevice | None:
        device = self._domain.device_with_fingerprint(fingerprint) if fingerprint else None
        return None if device is None or device.id == self._domain.device_id else device

    async def _handle(self, websocket: ServerConnection) -> None:
        fingerprint = tls.peer_fingerprint(websocket.transport.get_extra_info("ssl_object"))
        device = self._trusted_device(fingerprint)
        if device is None or websocket.request is None or websocket.request.path != PATH:
            log.warning("refused a peer connection from %s (certificate %s)", websocket.remote_address, fingerprint)
            await websocket.close(REFUSED, "not trusted")
            return
        assert fingerprint is not None
        mine, announced = spoken(), websocket.request.headers.get(PROTOCOL_HEADER)
        theirs = parse_protocols(announced)
        protocol = common_protocol(mine, theirs)
        if protocol is None:
            why = _ranges(self._domain.me.name, mine, device.name, theirs, announced)
            log.warning("refused the peer connection of %s: %s", device.name, why, extra={"peer": device.name})
            await websocket.close(UNSPOKEN, why[:120])
            return
        self._connections[websocket] = fingerprint
        try:
            await self._on_connection(Connection(websocket, device, protocol))
        except ConnectionClosed:
            pass
        finally:
            self._connections.pop(websocket, None)


class _Unspoken(Exception):
    """The device dialed speaks no peer protocol this one does."""


def _announce(connection: ServerConnection, request: Any, response: Any) -> None:
    """The listener's handshake answer says which protocols this device speaks."""
    low, high = spoken()
    response.headers[PROTOCOL_HEADER] = f"{low}-{high}"
    response.headers[RELEASE_HEADER] = __version__


class PeerLink:
    """Keeps a connection to one trusted device, dialing again whenever it drops."""

    def __init__(self, identity: Identity, device: TrustedDevice, on_connection: Handler) -> None:
        self.device = device
        self._identity = identity
        self._on_connection = on_connection
        self.connected = False
        self.message = "connecting"
        self.release: str | None = None
        """The release the device answered with when last connected (None: not yet, or it does not say)."""
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        await cancel(self._task)

    async def _run(self) -> None:
        delay = RETRY_MIN
        while True:
            try:
                context = tls.client_context(self._identity, self.device.cert)
                mine = spoken()
                async with connect(f"wss://{self.device.peer_url}{PATH}", ssl=context, open_timeout=3,
                                   ping_interval=PING_INTERVAL, ping_timeout=PING_TIMEOUT, max_size=MAX_MESSAGE,
                                   compression=None, additional_headers={PROTOCOL_HEADER: f"{mine[0]}-{mine[1]}"}
                                   ) as websocket:
                    fingerprint = tls.peer_fingerprint(websocket.transport.get_extra_info("ssl_object"))
                    if fingerprint != self.device.fingerprint:
                        raise ssl.SSLError(f"certificate {fingerprint} is not the one pinned")
                    announced = websocket.response.headers.get(PROTOCOL_HEADER)
                    protocol = common_protocol(mine, parse_protocols(announced))
                    if protocol is None:
                        raise _Unspoken(_ranges(self._identity.name, mine, self.device.name,
                                                parse_protocols(announced), announced))
                    self.connected, self.message, delay = True, "", RETRY_MIN
                    self.release = websocket.response.headers.get(RELEASE_HEADER)
                    await self._on_connection(Connection(websocket, self.device, protocol))
                    self.message = "connection closed"
            except asyncio.CancelledError:
                raise
            except ssl.SSLCertVerificationError:
                self.message = "certificate does not match the one pinned (changed since it was pinned?)"
            except _Unspoken as unspoken:
                self.message = str(unspoken)
            except ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd is not None else None
                self.message = ("this device is not trusted by it" if code == REFUSED else
                                closed.rcvd.reason if code == UNSPOKEN and closed.rcvd else
                                "connection closed")
            except (OSError, InvalidHandshake, TimeoutError, ssl.SSLError) as error:
                self.message = f"unreachable: {error}"
            except Exception as error:  # the link must outlive any bug in a conversation
                log.exception("peer link to %s failed", self.device.name)
                self.message = f"error: {error}"
            finally:
                self.connected = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)
