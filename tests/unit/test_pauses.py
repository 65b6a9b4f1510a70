"""Long garbage collections are logged with their generation and duration; an event loop held up, with where."""

import asyncio
import gc
import logging
import time

import pytest

from tandem.pauses import log_long_collections, watch_event_loop


@pytest.mark.parametrize(("threshold", "logged"), [(0.0, True), (60.0, False)])
def test_a_collection_is_logged_when_it_lasts_the_threshold(caplog, threshold, logged):
    callback = log_long_collections(threshold=threshold)
    try:
        with caplog.at_level(logging.WARNING, logger="tandem.pauses"):
            gc.collect()
    finally:
        gc.callbacks.remove(callback)
    messages = [r.getMessage() for r in caplog.records]
    assert any("garbage collection (generation 2) paused the process" in m for m in messages) is logged, messages


def test_an_event_loop_held_up_is_logged_with_where_it_was_held(caplog):
    async def scenario() -> None:
        watching = asyncio.get_running_loop().create_task(watch_event_loop(threshold=0.3))
        await asyncio.sleep(0.15)
        hold_the_loop()
        await asyncio.sleep(0.15)
        watching.cancel()

    def hold_the_loop() -> None:
        time.sleep(0.6)

    with caplog.at_level(logging.WARNING, logger="tandem.pauses"):
        asyncio.run(scenario())
    messages = [r.getMessage() for r in caplog.records]
    assert any("has not turned" in m and "hold_the_loop" in m for m in messages), messages
    assert any("was held" in m for m in messages), messages
