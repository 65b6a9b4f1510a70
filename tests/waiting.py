"""`wait_until`: the one polling helper of the tests, their labs and the benchmarks built on them.

Importable as `waiting` (pytest puts tests/ on sys.path; tests/netns/netlab.py adds it for the scripts
that only put tests/netns there). It imports nothing of Tandem's, so the netns client script can use it.
"""

import json
import time
from collections.abc import Callable
from typing import Any

import httpx

POLL = 0.05
"""Seconds between two calls of the predicate, by default."""

RETRIED: tuple[type[BaseException], ...] = (
    httpx.HTTPError, OSError, KeyError, ValueError, AssertionError, StopIteration)
"""What a predicate may raise while the thing waited for is not there yet (a device restarting, an object
not replicated, a `next()` over members not listed yet): by default these count as "not yet"."""

Retry = tuple[type[BaseException], ...] | Callable[[Exception], bool]


def not_found(error: Exception) -> bool:
    """`retry` for SDK calls: a 404 (`TandemError.status_code`) counts as not yet, any other error fails at once."""
    return getattr(error, "status_code", None) == 404


def wait_until(predicate: Callable[[], Any], timeout: float, what: str = "the condition",
               detail: Callable[[], Any] | None = None, interval: float = POLL, retry: Retry = RETRIED) -> Any:
    """Call `predicate` every `interval` seconds until it returns something truthy, and return that.

    An exception the predicate raises counts as "not yet" when `retry` allows it (a tuple of exception
    types, or a function of the exception); any other propagates at once (`retry=()`: all of them).
    After `timeout` seconds fail with an AssertionError naming `what`, the last error the predicate
    raised, its last result, and `detail()` (a dict is shown one line an entry, e.g. one per device).
    """
    deadline = time.monotonic() + timeout
    last_error: str | None = None
    last_result: Any = None
    while True:
        try:
            result = predicate()
        except Exception as error:
            if not (retry(error) if callable(retry) else isinstance(error, retry)):
                raise
            last_error = f"{type(error).__name__}: {error}"
        else:
            if result:
                return result
            last_result = result
        if time.monotonic() > deadline:
            break
        time.sleep(interval)
    message = [f"timed out after {timeout} s waiting for {what}"]
    if last_error:
        message.append(f"last error: {last_error}")
    if last_result is not None and last_result is not False:
        message.append(f"last result: {last_result!r}")
    if detail is not None:
        try:
            shown = detail()
        except Exception as error:  # the detail is for the message only
            shown = f"(detail failed: {type(error).__name__}: {error})"
        if isinstance(shown, dict):
            message += [f"{key}: {json.dumps(value, sort_keys=True, default=str)}" for key, value in shown.items()]
        else:
            message.append(str(shown))
    raise AssertionError("\n".join(message))
