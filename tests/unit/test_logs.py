"""Logs: JSON lines carry the device, the process and the context a call names; text lines escape control
characters; the same message repeated within the window is logged once, and the next says how many were held."""

import json
import logging
import time

from tandem.logs import JsonFormatter, RepeatFilter, TextFormatter


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    entry = logging.LogRecord("tandem.failover", logging.WARNING, __file__, 1, message, args, None)
    entry.__dict__.update(extra)
    return entry


def test_a_json_line_is_one_object_with_the_device_process_and_context() -> None:
    line = JsonFormatter("dev-1", "failover").format(record("traffic group %s: %s", "tg", "a\nb",
                                                             traffic_group="tg", peer="dev-2"))
    assert "\n" not in line
    entry = json.loads(line)
    assert {k: entry[k] for k in ("level", "logger", "message", "device", "process", "traffic_group", "peer")} == {
        "level": "warning", "logger": "tandem.failover", "message": "traffic group tg: a\nb", "device": "dev-1",
        "process": "failover", "traffic_group": "tg", "peer": "dev-2"}
    assert entry["time"].endswith("Z")


def test_a_text_line_escapes_control_characters_of_the_message() -> None:
    line = TextFormatter().format(record("user %s logged in", "eve\n2026-12-01 tandem INFO forged"))
    assert "\n" not in line and line.endswith("user eve\\x0a2026-12-01 tandem INFO forged logged in")


def test_repeats_within_the_window_are_held_and_counted() -> None:
    held = RepeatFilter(window=0.2)
    passed = [held.filter(record("peer %s unreachable", "dev-2")) for _ in range(5)]
    assert passed == [True, False, False, False, False]
    assert held.filter(record("peer %s unreachable", "dev-3"))  # another message is another message
    time.sleep(0.25)
    again = record("peer %s unreachable", "dev-2")
    assert held.filter(again) and again.getMessage() == "peer dev-2 unreachable (and 4 times more in 0.2 s)"
