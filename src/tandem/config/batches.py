"""Batches (`POST /api/batch`), parsed and checked in a worker process, written by the store's writer in one
short transaction.

A batch of 10,000 operations takes about a second of Python to parse and check (models, references,
the pool units); in the management process that second would hold the GIL, and so the event loop, the
store's writer and every request, in small slices all along. The worker process gets the request's
body as it came, opens a reader of the store of its own and prepares the batch against a snapshot
(`store.draft.Draft`), its stamps taken from a block reserved on the device's clock. The management
process then checks the caller's rights on what the operations touch and the writer writes the batch
in bulk; if a write in between touched what it read, it is prepared again (`ATTEMPTS` in all), then
applied the plain way on the writer.
"""

import asyncio
import concurrent.futures
import logging
import multiprocessing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tandem import errors, ipc
from tandem.config import integrity
from tandem.config.service import ConfigService
from tandem.models.batch import BatchRequest
from tandem.store import Reader, Store
from tandem.store.draft import BlockClock, Draft, Prepared, StaleDraft, StampsUsedUp, commit

log = logging.getLogger("tandem.config")

ATTEMPTS = 3
STAMPS = 1 << 16
"""Stamps reserved per batch, at least (the clock's counter: about one millisecond's worth)."""
STAMPS_PER_OPERATION = 4
"""Stamps reserved per operation (an object's record takes one, its incarnation or member list another);
a delete of a partition takes one per lease and conflict record in it: a draft that runs out is
applied on the writer."""


class InvalidBatch(Exception):
    """The body is not a valid batch request: pydantic's errors, as the API reports a body's."""

    def __init__(self, details: list[dict[str, Any]]) -> None:
        super().__init__(details)
        self.details = details


@dataclass
class Outcome:
    """What the worker made of a batch: what each operation touches (resource, partition), for the caller's
    rights; then what it prepared (None: it needs the writer's way), or the error of the operation at fault
    (its class name, message, target)."""

    touched: list[tuple[str, str | None]]
    prepared: Prepared | None = None
    error: tuple[str, str, str | None] | None = None


_worker_config: ConfigService | None = None


def _start_worker(path: Path) -> None:
    global _worker_config
    ipc.exit_with_parent()
    _worker_config = ConfigService(Reader.open(path, integrity.references))  # type: ignore[arg-type]


def parse(body: bytes) -> BatchRequest:
    """The batch request in `body`; `InvalidBatch` if it is not one."""
    try:
        return BatchRequest.model_validate_json(body)
    except ValidationError as error:
        raise InvalidBatch(error.errors(include_url=False)) from None


def _prepare(body: bytes, read_only: dict[str, str], managed: dict[str, str], first_stamp: int, stamps: int,
             device_id: str, generation: int) -> Outcome | InvalidBatch:
    """In the worker: the batch's outcome, or why the body is not a batch."""
    config = _worker_config
    assert config is not None
    try:
        request = parse(body)
    except InvalidBatch as invalid:
        return invalid
    outcome = Outcome([(op.resource, op.object_identity().get("partition")) for op in request.operations])
    config.read_only = read_only.get
    config.managers = lambda partition: [managed[partition]] if partition in managed else []
    draft = Draft(config.store, BlockClock(first_stamp, stamps), device_id, generation)
    try:
        config.apply_operations(draft, request)
        outcome.prepared = draft.close()
    except errors.ApiError as error:
        draft.close()
        outcome.error = (type(error).__name__, error.message, error.target)
    except StampsUsedUp:
        draft.close()
    return outcome


class BatchWorker:
    """The worker process of one device's batches (started at the first batch, kept)."""

    def __init__(self, store: Store, config: ConfigService, read_only: Callable[[], dict[str, str]],
                 managed: Callable[[], dict[str, str]]) -> None:
        self._store = store
        self._config = config
        self._read_only = read_only
        """The partitions that may not be changed here, and why (mirrors of peer clusters)."""
        self._managed = managed
        """The partitions assigned to users, with one of them (they may not be deleted)."""
        self._executor: concurrent.futures.ProcessPoolExecutor | None = None

    def _pool(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._executor is None:
            self._executor = concurrent.futures.ProcessPoolExecutor(
                1, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
                initargs=(self._store.path,))
        return self._executor

    async def apply(self, body: bytes, check: Callable[[list[tuple[str, str | None]]], None]) -> tuple[int, int | None]:
        """Apply the batch in `body`, all or nothing, once `check` (the caller's rights) accepts what its
        operations touch: the number of operations and the id of the last log record written (None:
        nothing changed). `InvalidBatch`, or the `ApiError` of the operation at fault."""
        store = self._store
        if not store.threaded:
            return self._plainly(body, check)
        loop = asyncio.get_running_loop()
        touched: list[tuple[str, str | None]] | None = None
        for _ in range(ATTEMPTS):
            count = max(STAMPS, STAMPS_PER_OPERATION * (len(body) // 40 + 1))
            try:
                result = await loop.run_in_executor(self._pool(), _prepare, body, self._read_only(), self._managed(),
                                                    store.clock.reserve(count), count, store.device_id,
                                                    store.generation)
            except concurrent.futures.process.BrokenProcessPool:
                log.error("the batch worker process died; applying the batch on the writer")
                self._executor = None
                break
            if isinstance(result, InvalidBatch):
                raise result
            if touched is None:
                touched = result.touched
                check(touched)
            if result.error is not None:
                name, message, target = result.error
                raise getattr(errors, name)(message, target=target)
            if result.prepared is None:
                break
            try:
                return len(touched), await store.write(commit, store, result.prepared)
            except StaleDraft as stale:
                log.info("batch of %d operations prepared again: %s", len(touched), stale)
        return await store.write(self._plainly, body, check)

    def _plainly(self, body: bytes, check: Callable[[list[tuple[str, str | None]]], None]) -> tuple[int, int | None]:
        request = parse(body)
        check([(op.resource, op.object_identity().get("partition")) for op in request.operations])
        return len(request.operations), self._config.apply_batch(request)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
