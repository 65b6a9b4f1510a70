"""The console's parts that need no device: server-sent event framing, the API's error put at a form's field,
the form values turned into API requests, connection rates and sparklines, and which application a path
reaches."""

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from markupsafe import Markup

from tandem.console.api import Answer
from tandem.console.app import Dispatch
from tandem.console.forms import FORMS, field_errors
from tandem.console.live import (
    MAX_STREAMS,
    MAX_STREAMS_PER_USER,
    SHOWN_FOR,
    UNCLAIMED_FOR,
    Shown,
    Streams,
    digest,
    event,
)
from tandem.console.views import SPARK_POINTS, Rates, next_cursor


def test_an_event_carries_each_line_of_its_part_as_data() -> None:
    framed = b"event: devices\ndata: <tr>\ndata: <td>a</td>\ndata: </tr>\n\n"
    assert event("devices", "<tr>\n<td>a</td>\n</tr>") == framed
    assert event("signed-out", "") == b"event: signed-out\ndata: \n\n"


def error(message: str, target: str | None) -> Answer:
    return Answer(422, {"error": {"code": "invalid", "message": message, "target": target}})


@pytest.mark.parametrize(("answer", "field"), [
    (error("port: Input should be less than or equal to 65535", "port"), "port"),
    (error("members.0.port: too large", "members.0.port"), ""),  # not a field of the virtual server form
    (error("Value error, certificates: an https virtual server needs at least one certificate", "body"), ""),
    (error("pool: no pool /Common/nope", None), "pool"),
    (error("address: not an IP address", "address"), "address"),
])
def test_the_api_error_goes_to_the_field_it_names(answer: Answer, field: str) -> None:
    assert field_errors(answer, FORMS["virtual"].fields) == {field: answer.message}


def test_a_member_error_about_its_path_goes_to_the_address() -> None:
    assert field_errors(error("no member 10.0.0.1:80", "member"), FORMS["member"].fields) == {
        "address": "no member 10.0.0.1:80"}


def test_form_values_become_the_api_request_as_typed() -> None:
    body, path = FORMS["virtual"].request({"partition": "Common", "name": "www", "address": "192.0.2.1",
                                           "port": "80", "protocol": "tcp", "pool": "", "enabled": "on"})
    assert path == "/api/virtuals"
    assert body == {"partition": "Common", "name": "www", "address": "192.0.2.1", "port": 80, "protocol": "tcp",
                    "pool": None, "enabled": True}
    typed, _ = FORMS["virtual"].request({"name": "www", "port": "eighty"})
    assert typed["port"] == "eighty" and typed["enabled"] is False  # the API refuses it at its field
    member, member_path = FORMS["member"].request({"pool": "Common/web", "address": "10.0.0.1", "port": "8080"})
    assert (member, member_path) == ({"address": "10.0.0.1", "port": 8080}, "/api/pools/Common/web/members")
    _, odd_path = FORMS["member"].request({"pool": "Common/we b?x", "address": "10.0.0.1", "port": "80"})
    assert odd_path == "/api/pools/Common/we%20b%3Fx/members"


def test_rates_and_the_sparkline() -> None:
    rates = Rates()
    assert rates.sample("/Common/www", 100, 10.0) is None  # a first reading has no rate
    assert rates.spark("/Common/www") == ""
    assert rates.sample("/Common/www", 150, 11.0) == 50.0
    assert rates.sample("/Common/www", 150, 12.0) == 0.0
    points = rates.spark("/Common/www").split()
    assert len(points) == 2 and points[0].endswith(",1.0") and points[1] == "90.0,20.0"
    assert rates.sample("/Common/www", 10, 13.0) is None  # the counters started again (a restart)
    for second in range(14, 14 + 2 * SPARK_POINTS):
        rates.sample("/Common/www", 10 + second, float(second))
    assert len(rates.spark("/Common/www").split()) == SPARK_POINTS


def test_the_next_page_cursor_is_read_from_the_api_link() -> None:
    assert next_cursor("/api/virtuals?limit=200&after=%2FCommon%2Fv%20199") == "/Common/v 199"
    assert next_cursor(None) is None


def test_the_console_gets_ui_and_the_root_and_the_api_gets_the_rest() -> None:
    reached: list[str] = []

    async def api(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        reached.append(scope["path"])

    dispatch = Dispatch(api)
    console_paths = []

    async def console(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        console_paths.append(scope["path"])

    dispatch._console = console  # type: ignore[assignment]
    for path in ("/", "/ui", "/ui/", "/ui/traffic", "/uix", "/api/health", "/1.0"):
        asyncio.run(dispatch({"type": "http", "path": path}, None, None))  # type: ignore[arg-type]
    assert console_paths == ["/", "/ui", "/ui/", "/ui/traffic"]
    assert reached == ["/uix", "/api/health", "/1.0"]


def test_only_the_three_line_ends_of_server_sent_events_split_a_part() -> None:
    assert event("p", "a\r\nb\rc\u2028d\x0ce") == b"event: p\ndata: a\ndata: b\ndata: c\xe2\x80\xa8d\x0ce\n\n"


def test_streams_are_capped_on_the_device_and_per_user(monkeypatch: pytest.MonkeyPatch) -> None:
    streams = Streams()
    slots = [streams.take("alice") for _ in range(MAX_STREAMS_PER_USER)]
    assert None not in slots and streams.take("alice") is None
    others = [streams.take(f"user-{i}") for i in range(MAX_STREAMS - MAX_STREAMS_PER_USER)]
    assert None not in others and streams.take("bob") is None

    async def one() -> AsyncIterator[bytes]:
        yield b"x"

    async def run(slot: int) -> list[bytes]:
        return [chunk async for chunk in streams.held(slot, one())]

    assert asyncio.run(run(slots[0])) == [b"x"]  # its slot is given back when it ends
    assert streams.take("alice") is not None
    now = time.monotonic()
    monkeypatch.setattr(time, "monotonic", lambda: now + UNCLAIMED_FOR + 1)  # bodies that never started
    assert streams.take("alice") is not None


def test_a_page_token_serves_once_and_not_for_long(monkeypatch: pytest.MonkeyPatch) -> None:
    shown = Shown()
    token = shown.remember({"devices": Markup("<p>a</p>")})
    assert shown.take(token) == {"devices": digest(Markup("<p>a</p>"))}
    assert shown.take(token) == {}
    late = shown.remember({"devices": Markup("<p>a</p>")})
    now = time.monotonic()
    monkeypatch.setattr(time, "monotonic", lambda: now + SHOWN_FOR + 1)
    assert shown.take(late) == {}
