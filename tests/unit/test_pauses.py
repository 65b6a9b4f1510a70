"""Long garbage collections are logged with their generation and duration."""

import gc
import logging

from tandem.pauses import log_long_collections


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
