"""Long garbage collections are logged with their generation and duration; an event loop held up, with where."""

import asyncio
import gc
import logging
import time

from tandem.pauses import log_long_collections, watch_event_loop


def test_a_collection_over_the_threshold_is_logged(caplog):
    callback = log_long_collections(threshold=0.0)
    try:
        with caplog.at_level(logging.WARNING, logger="tandem.pauses"):
            gc.collect()
    finally:
        gc.callbacks.remove(callback)
    assert any("garbage collection (generation 2) paused the process" in r.getMessage() for r in caplog.records)


def test_a_short_collection_is_not_logged(caplog):
    callback = log_long_collections(threshold=60.0)
    try:
        with caplog.at_level(logging.WARNING, logger="tandem.pauses"):
            gc.collect()
    finally:
        gc.callbacks.remove(callback)
    assert not caplog.records


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
