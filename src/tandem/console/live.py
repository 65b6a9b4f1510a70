"""The live pages: one server-sent event stream per open page, which reads what the page shows through the
API, renders each part and sends only the parts that changed (htmx swaps each into the element named by its
event). The browser never polls; a failover shows within `OVERVIEW_TICK`."""

import asyncio
import hashlib
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from markupsafe import Markup

from tandem.console import views
from tandem.console.rendering import Renderer
from tandem.console.session import ConsoleUser
from tandem.console.views import Caller

OVERVIEW_TICK = 0.25
"""Seconds between reads of the overview's failover state (the traffic groups and events)."""
CLUSTER_EVERY = 1.0
"""Seconds between reads of the rest of the overview (devices, groups, peers, agents)."""
TRAFFIC_TICK = 1.0
"""Seconds between reads of the counters (a sparkline point each)."""
KEEPALIVE = 15.0
MAX_STREAMS = 32
"""Open live pages a device serves at once (each costs a read of the page every tick)."""
View = TypeVar("View", views.Overview, views.Traffic)
OVERVIEW_PARTS = ("summary", "devices", "groups", "traffic-groups", "events", "peers", "agents", "problems")
TRAFFIC_PARTS = ("virtuals", "pools")
SEEN_DIGEST = re.compile(r"[0-9a-f]{16}")


class TooManyStreams(Exception):
    pass


class Streams:
    """Counts the open streams, up to `MAX_STREAMS`."""

    def __init__(self) -> None:
        self.open = 0

    @contextmanager
    def opened(self) -> Iterator[None]:
        if self.open >= MAX_STREAMS:
            raise TooManyStreams
        self.open += 1
        try:
            yield
        finally:
            self.open -= 1


def digest(html: str) -> str:
    """A short digest of a part, by which a stream knows what the page already shows."""
    return hashlib.blake2b(html.encode(), digest_size=8).hexdigest()


def seen_of(parts: dict[str, Markup]) -> str:
    """What a page rendered, for its stream's URL (`name:digest,...`): the stream sends only what differs."""
    return ",".join(f"{name}:{digest(html)}" for name, html in parts.items())


def parse_seen(text: str, names: tuple[str, ...]) -> dict[str, str]:
    """The parts a page says it shows (unknown names and malformed entries are left out)."""
    seen = {}
    for entry in text.split(",")[:len(names)]:
        name, _, value = entry.partition(":")
        if name in names and SEEN_DIGEST.fullmatch(value):
            seen[name] = value
    return seen


def event(name: str, html: str) -> bytes:
    """One server-sent event: its name and the part's HTML as its data lines."""
    lines = "".join(f"data: {line}\n" for line in html.splitlines() or [""])
    return f"event: {name}\n{lines}\n".encode()


def overview_parts(renderer: Renderer, overview: views.Overview, user: ConsoleUser) -> dict[str, Markup]:
    return {name: renderer.part(f"part_{name}.html", o=overview, user=user) for name in OVERVIEW_PARTS}


def traffic_parts(renderer: Renderer, traffic: views.Traffic, user: ConsoleUser) -> dict[str, Markup]:
    return {name: renderer.part(f"part_{name}.html", t=traffic, user=user) for name in TRAFFIC_PARTS}


async def _changes(read: Callable[[], Awaitable[View]], render: Callable[[View], dict[str, Markup]],
                   tick: float, seen: dict[str, str]) -> AsyncIterator[bytes]:
    """Each tick: read the page's view and, when it differs from the last, render it and send the parts that
    differ from what the page shows (`seen`, then what was sent: digests by part); end once the session has
    (the API answered 401), with a `signed-out` event."""
    sent = dict(seen)
    shown: View | None = None
    quiet_since = time.monotonic()
    while True:
        view = await read()
        if view.signed_out:
            yield event("signed-out", "")
            return
        changed = render(view).items() if view != shown else ()
        shown = view
        for name, html in changed:
            if sent.get(name) != (shown_digest := digest(html)):
                sent[name] = shown_digest
                quiet_since = time.monotonic()
                yield event(name, html)
        if time.monotonic() - quiet_since > KEEPALIVE:
            quiet_since = time.monotonic()
            yield b": keep-alive\n\n"
        await asyncio.sleep(tick)


class OverviewReads:
    """The overview as one stream reads it: the failover state every tick, the rest every `CLUSTER_EVERY`."""

    def __init__(self, caller: Caller) -> None:
        self._caller = caller
        self._cluster: views.ClusterPart | None = None
        self._cluster_at = 0.0

    async def __call__(self) -> views.Overview:
        if self._cluster is None or time.monotonic() - self._cluster_at >= CLUSTER_EVERY:
            self._cluster, failover = await asyncio.gather(views.cluster_part(self._caller),
                                                           views.failover_part(self._caller))
            self._cluster_at = time.monotonic()
        else:
            failover = await views.failover_part(self._caller)
        return views.overview_of(self._cluster, failover)


def overview_stream(caller: Caller, user: ConsoleUser, renderer: Renderer, seen: str) -> AsyncIterator[bytes]:
    return _changes(OverviewReads(caller), lambda o: overview_parts(renderer, o, user), OVERVIEW_TICK,
                    parse_seen(seen, OVERVIEW_PARTS))


def traffic_stream(caller: Caller, user: ConsoleUser, renderer: Renderer, partition: str | None,
                   after: str | None, seen: str) -> AsyncIterator[bytes]:
    rates = views.Rates()
    return _changes(lambda: views.traffic(caller, partition, after, rates),
                    lambda t: traffic_parts(renderer, t, user), TRAFFIC_TICK, parse_seen(seen, TRAFFIC_PARTS))
