"""The devices an agent writes to: the first that answers, the next when it stops answering.

Config sync spreads what the agent writes to the rest of the group. After a move to another device
the agent reads the partition again from there before writing, so that it neither loses a change
(one the old device took but had not yet replicated is written again, as a difference) nor repeats
one (a change that did replicate is no longer a difference).
"""

import asyncio
import logging
from collections.abc import Callable
from typing import TypeVar

from tandem.sdk import Client, TandemError

log = logging.getLogger("tandem.agent")
T = TypeVar("T")


class Unreachable(Exception):
    """No device answers."""


def _unanswered(error: TandemError) -> bool:
    return (error.status_code is None and error.code == "connection_error") or (error.status_code or 0) >= 500


class Devices:
    """Clients of the devices, in the order given; `call` runs a request on the current one."""

    def __init__(self, urls: list[str], username: str, password: str, *, verify: bool | str = True,
                 fingerprint: str | None = None, timeout: float = 5.0, host_id: str = "") -> None:
        """`host_id`: the agent's, sent with each request (`tandem-agent/HOST_ID`) for the devices' audit trails."""
        self._clients = [Client(url, username, password, verify=verify, fingerprint=fingerprint, timeout=timeout,
                                user_agent=f"tandem-agent/{host_id}") for url in urls]
        self.index = 0
        self.moves = 0
        """How many times the agent moved to another device (it reads the partition again after each)."""

    @property
    def url(self) -> str:
        return self._clients[self.index].url

    async def call(self, request: Callable[[Client], T]) -> T:
        """`request(client)` on the current device, moving on to the next ones while they do not answer."""
        failures = []
        for _ in self._clients:
            client = self._clients[self.index]
            try:
                return await asyncio.to_thread(request, client)
            except TandemError as error:
                if not _unanswered(error):
                    raise
                failures.append(f"{client.url}: {error}")
                self.index = (self.index + 1) % len(self._clients)
                self.moves += 1
                log.warning("device %s does not answer (%s): moving to %s", client.url, error, self.url)
        raise Unreachable("no device answers: " + "; ".join(failures))

    def close(self) -> None:
        for client in self._clients:
            client.close()
