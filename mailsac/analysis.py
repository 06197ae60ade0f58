"""CPU-heavy message analysis (MIME parsing and spam tokenising) in worker processes.

Parsing and tokenising cost about a millisecond of CPU per small message and seconds for
a 20 MB one; in threads they hold the GIL and stall the event loop (and the HTTP API)
while they run. A process pool moves that work to the other cores. Only the token hashes
come back: the spam score itself is computed in this process with the shared model, so
online learning (which updates that model) applies to every new message.

Messages waiting for a worker are sent in batches (like the metadata group commit): one
pickle and one pipe round trip per batch instead of per message, measured with
``python -m mailsac bench``. A worker returns the parsed message without its bodies,
headers and attachment contents unless the caller asks for them (``full=True``, for
webhook payloads): building records needs only the summary fields.

If the pool cannot be used (``workers=0``, or a worker died) analysis runs in a thread.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import multiprocessing
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

from mailsac.mime import ParsedMessage, parse_message
from mailsac.spam import SpamModel
from mailsac.spam.bayes import HashArray, message_hashes

log = logging.getLogger(__name__)

MAX_BATCH = 64
MAX_BATCH_BYTES = 4 * 1024 * 1024  # a batch of large messages is sent as soon as it fills

Analysis = tuple[ParsedMessage, HashArray]


def summary(parsed: ParsedMessage) -> ParsedMessage:
    """``parsed`` without headers, bodies and attachment contents (cheap to pickle)."""
    return dataclasses.replace(
        parsed, headers=[], text=None, html=None,
        attachments=[dataclasses.replace(a, data=b"") for a in parsed.attachments])


def analyse(raw: bytes, full: bool = True) -> Analysis:
    """Parse a raw message and compute its spam token hashes (runs in a worker)."""
    parsed = parse_message(raw)
    hashes = message_hashes(raw, parsed)
    return (parsed if full else summary(parsed)), hashes


def analyse_batch(jobs: list[tuple[bytes, bool]]) -> list[Analysis | Exception]:
    """:func:`analyse` for several messages; a failure is returned, not raised."""
    results: list[Analysis | Exception] = []
    for raw, full in jobs:
        try:
            results.append(analyse(raw, full))
        except Exception as exc:  # one bad message must not fail its batch neighbours
            results.append(exc)
    return results


@dataclass
class _Job:
    raw: bytes
    full: bool
    done: asyncio.Future[Analysis] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())


class Analyzer:
    """Runs :func:`analyse` in a process pool and scores the result with ``model``."""

    def __init__(self, model: SpamModel | None, workers: int) -> None:
        self._model = model
        self._workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._waiting: deque[_Job] = deque()
        self._in_flight = 0
        # Batches sent but not answered: one running per worker plus one ready, so a
        # worker never idles waiting for the next batch and batches still grow under load.
        self._max_in_flight = workers + 1
        self.batches = 0
        self.messages = 0

    async def start(self) -> None:
        if self._workers <= 0:
            return
        # "spawn": forking a process that already runs threads and an event loop is unsafe.
        self._pool = ProcessPoolExecutor(self._workers,
                                         mp_context=multiprocessing.get_context("spawn"))
        try:  # warm up: import and load in every worker before the first message
            await asyncio.gather(*(
                asyncio.get_running_loop().run_in_executor(self._pool, analyse, b"\r\n")
                for _ in range(self._workers)))
        except Exception:
            log.exception("analysis workers could not start; analysing in threads")
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def stop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _dispatch(self) -> None:
        """Send waiting jobs to the pool in batches (see ``_max_in_flight``)."""
        pool = self._pool
        while pool is not None and self._waiting and self._in_flight < self._max_in_flight:
            batch: list[_Job] = []
            size = 0
            while self._waiting and len(batch) < MAX_BATCH and size < MAX_BATCH_BYTES:
                job = self._waiting.popleft()
                batch.append(job)
                size += len(job.raw)
            self._in_flight += 1
            self.batches += 1
            self.messages += len(batch)
            future = asyncio.get_running_loop().run_in_executor(
                pool, analyse_batch, [(job.raw, job.full) for job in batch])
            future.add_done_callback(functools.partial(self._settle, batch))

    def _settle(self, jobs: list[_Job], future: asyncio.Future[list[Analysis | Exception]],
                ) -> None:
        self._in_flight -= 1
        results: list[Analysis | Exception] | None = None
        error: BaseException | None = None
        if not future.cancelled():  # cancelled: the pool was shut down
            error = future.exception()
            results = future.result() if error is None else None
        if isinstance(error, BrokenProcessPool) and self._pool is not None:
            log.error("an analysis worker died; analysing in threads from now on")
            self._pool = None
        for index, job in enumerate(jobs):
            if job.done.done():
                continue
            outcome = results[index] if results is not None else error
            if outcome is None:
                job.done.cancel()
            elif isinstance(outcome, BaseException):
                job.done.set_exception(outcome)
            else:
                job.done.set_result(outcome)
        self._dispatch()
        if self._pool is None:  # the pool is gone: whatever still waits goes to threads
            while self._waiting:
                job = self._waiting.popleft()
                job.done.set_exception(BrokenProcessPool("analysis pool unavailable"))

    async def _hashes(self, raw: bytes, full: bool) -> Analysis:
        if self._pool is not None:
            job = _Job(raw, full)
            self._waiting.append(job)
            self._dispatch()
            try:
                return await job.done
            except BrokenProcessPool:
                pass  # the pool broke under this job: analyse it here instead
        return await asyncio.to_thread(analyse, raw, full)

    async def run(self, raw: bytes, full: bool = False) -> tuple[ParsedMessage, float | None]:
        """The parsed message and its spam score (None if scoring failed).

        Without ``full`` the parsed message is a :func:`summary` (no bodies or headers).
        """
        parsed, hashes = await self._hashes(raw, full)
        if self._model is None:
            return parsed, None
        try:
            return parsed, round(self._model.score_hashes(hashes), 4)
        except Exception:
            log.exception("spam scoring failed; storing the message without a score")
            return parsed, None
