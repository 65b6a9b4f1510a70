"""Sessions from this device to the remote cluster's devices: one link per relationship and remote address.

Each link opens an authenticated session (`secure.py`) and exchanges status with the remote device
every `PROBE_INTERVAL`; a relationship's state comes from how many of its links answer. The links
also carry the requests of mirroring and of deleting a relationship.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from tandem.models.peering import PeerRecord
from tandem.peering import secure
from tandem.peering.records import ClusterStatus, MemberHealth, told_members
from tandem.peering.wire import Channel, RemoteError, WireError
from tandem.tasks import cancel

log = logging.getLogger("tandem.peering")

PROBE_INTERVAL, PROBE_TIMEOUT = 1.0, 3.0
RETRY_MIN, RETRY_MAX = 0.2, 2.0


@dataclass(frozen=True)
class LinkKey:
    """What a link is for: it is replaced when any of it changes (a new key, new addresses...)."""

    uuid: str
    address: str
    key: str
    encryption: str


class Link:
    """One session to one remote device, kept open and probed."""

    def __init__(self, target: LinkKey, local_uuid: str, status: Callable[[], ClusterStatus],
                 on_reply: Callable[[str, tuple[MemberHealth, ...]], None]) -> None:
        self.target = target
        self._local_uuid = local_uuid
        self._status = status
        self._on_reply = on_reply
        self.ok = False
        self.message = "connecting"
        self.last_ok = 0.0
        self.channel: Channel | None = None
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        await cancel(self._task)

    async def call(self, message: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        """A request over this link's session; WireError if it is down."""
        if self.channel is None or not self.ok:
            raise WireError(f"no session with {self.target.address}: {self.message}")
        return await self.channel.call(message, timeout)

    async def _run(self) -> None:
        delay = RETRY_MIN
        while True:
            channel = None
            try:
                channel = await Channel.open(self.target.address)
                await secure.client_session(channel, self._local_uuid, self.target.key, self.target.encryption)
                self.channel = channel
                while True:
                    reply = await channel.call({"type": "status", "cluster": self._status().frame()},
                                               PROBE_TIMEOUT)
                    self.ok, self.message, self.last_ok, delay = True, "", time.time(), RETRY_MIN
                    self._on_reply(self.target.uuid, told_members(reply))
                    await asyncio.sleep(PROBE_INTERVAL)
            except asyncio.CancelledError:
                raise
            except RemoteError as error:
                self.message = f"refused by {self.target.address}: {error}"
            except WireError as error:
                self.message = str(error)
            except Exception as error:  # the link must outlive any bug in a conversation
                log.exception("peer cluster link to %s failed", self.target.address)
                self.message = f"error: {error}"
            finally:
                self.ok, self.channel = False, None
                if channel is not None:
                    await channel.close()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)


class LinkSet:
    """The links of every paired relationship, following the records."""

    def __init__(self, new_link: Callable[[LinkKey], Link]) -> None:
        self._new_link = new_link
        self.links: dict[LinkKey, Link] = {}

    def follow(self, records: list[PeerRecord]) -> list[Awaitable[None]]:
        """Start the links the records want, stop the others; the stops to await."""
        wanted = {LinkKey(r.uuid, address, r.key, r.encryption_state or "none")
                  for r in records if r.key for address in r.remote_addresses}
        stops = [self.links.pop(key).stop() for key in set(self.links) - wanted]
        for key in wanted - set(self.links):
            self.links[key] = self._new_link(key)
            self.links[key].start()
        return stops

    def of(self, uuid: str) -> list[Link]:
        return [link for key, link in sorted(self.links.items(), key=lambda kv: kv[0].address) if key.uuid == uuid]

    def up(self, uuid: str) -> Link | None:
        """A link of the relationship whose session is open, if any."""
        return next((link for link in self.of(uuid) if link.ok), None)
