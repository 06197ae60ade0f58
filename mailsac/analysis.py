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

A large message is not sent at all: the worker gets the path of its committed blob and
reads the file itself, so no pickled copy of it exists in this process.

If the pool cannot be used (``workers=0``, or a worker died) analysis runs in a thread.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import multiprocessing
import os
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from mailsac.extract import encode as encode_extract
from mailsac.extract import extract as extract_message
from mailsac.mime import ParsedMessage, parse_message
from mailsac.spam import SpamModel
from mailsac.spam.bayes import HashArray, message_hashes

log = logging.getLogger(__name__)

MAX_BATCH = 64
MAX_BATCH_BYTES = 4 * 1024 * 1024  # a batch of large messages is sent as soon as it fills
LARGE_MESSAGE = 64 * 1024  # from this size on a message may go to any worker (see Analyzer)
WORKER_NICENESS = 10

# The parsed message, its spam token hashes, and its codes and links as JSON text
# (mailsac.extract; None if extraction failed).
Analysis = tuple[ParsedMessage, HashArray, str | None]
Source = bytes | str  # the raw message, or the path of a file holding it


def summary(parsed: ParsedMessage) -> ParsedMessage:
    """``parsed`` without headers, bodies and attachment contents (cheap to pickle)."""
    return dataclasses.replace(
        parsed, headers=[], text=None, html=None,
        attachments=[dataclasses.replace(a, data=b"") for a in parsed.attachments])


def extracted(parsed: ParsedMessage) -> str | None:
    """The codes and links of ``parsed`` as JSON text (None if extraction failed: the
    message is stored anyway, and the extract endpoint computes it again on demand)."""
    try:
        return encode_extract(extract_message(parsed.subject, parsed.text, parsed.html))
    except Exception:
        log.exception("code/link extraction failed")
        return None


def analyse(source: Source, full: bool = True) -> Analysis:
    """Parse a raw message (or the file at path ``source``), compute its spam token
    hashes and extract its codes and links (runs in a worker)."""
    raw = source if isinstance(source, bytes) else Path(source).read_bytes()
    parsed = parse_message(raw)
    hashes = message_hashes(raw, parsed)
    return (parsed if full else summary(parsed)), hashes, extracted(parsed)


def extract_raw(raw: bytes) -> str | None:
    """Codes and links of a stored message (the extract endpoint, for mail stored before
    extraction existed; runs in a worker)."""
    return extracted(parse_message(raw))


def analyse_batch(jobs: list[tuple[Source, bool]]) -> list[Analysis | Exception]:
    """:func:`analyse` for several messages; a failure is returned, not raised."""
    results: list[Analysis | Exception] = []
    for raw, full in jobs:
        try:
            results.append(analyse(raw, full))
        except Exception as exc:  # one bad message must not fail its batch neighbours
            results.append(exc)
    return results


def _lower_priority() -> None:
    """Worker start-up: when the workers and the event loop both want the CPU, the loop
    (SMTP replies, API requests) goes first. Measured on 2 cores with ten concurrent
    20 MB messages: list-inbox p99 during the flood 107–144 ms -> 44–84 ms, for about 20 %
    less intake of such mail; 4 KB floods unchanged within noise.

    Also: the worker dies with the service, however the service dies (no orphans)."""
    from mailsac.childproc import die_with_parent

    parent = multiprocessing.parent_process()
    die_with_parent(parent.pid if parent is not None else None)
    try:
        os.nice(WORKER_NICENESS)
    except OSError:  # not allowed here: run at normal priority
        pass


@dataclass
class _Job:
    raw: Source
    full: bool
    size: int
    done: asyncio.Future[Analysis] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())


@dataclass
class _Lane:
    """One worker process with its own queue: up to two batches sent (one running, one
    ready, so the worker never idles between batches while batches still grow)."""

    pool: ProcessPoolExecutor
    waiting: deque[_Job] = field(default_factory=deque)
    in_flight: int = 0
    queued_bytes: int = 0  # waiting and in flight


class Analyzer:
    """Runs :func:`analyse` in worker processes and scores the result with ``model``.

    Each worker is a *lane*. Small messages all go to the first lane: their analysis costs
    about as much CPU as the rest of their handling in this process, so on a small machine
    one worker plus the event loop already fill the cores, and a second busy worker would
    only take CPU from the loop (measured with ``python -m mailsac bench``). Large
    messages, where this process has little to do per byte, go to the least-loaded lane.
    """

    def __init__(self, model: SpamModel | None, workers: int) -> None:
        self._model = model
        self._workers = workers
        self._lanes: list[_Lane] = []
        self.batches = 0
        self.messages = 0

    async def start(self) -> None:
        if self._workers <= 0:
            return
        # "spawn": forking a process that already runs threads and an event loop is unsafe.
        context = multiprocessing.get_context("spawn")
        lanes = [_Lane(ProcessPoolExecutor(1, mp_context=context,
                                           initializer=_lower_priority))
                 for _ in range(self._workers)]
        try:  # warm up: import and load in every worker before the first message
            await asyncio.gather(*(
                asyncio.get_running_loop().run_in_executor(lane.pool, analyse, b"\r\n")
                for lane in lanes))
        except Exception:
            log.exception("analysis workers could not start; analysing in threads")
            for lane in lanes:
                lane.pool.shutdown(wait=False, cancel_futures=True)
            return
        self._lanes = lanes

    def stop(self) -> None:
        """Stop the workers; messages still waiting for one are analysed in threads."""
        lanes, self._lanes = self._lanes, []
        for lane in lanes:
            lane.pool.shutdown(wait=False, cancel_futures=True)
            while lane.waiting:
                lane.waiting.popleft().done.set_exception(
                    BrokenProcessPool("analysis workers stopped"))

    def _lane_for(self, size: int) -> _Lane:
        if size < LARGE_MESSAGE or len(self._lanes) == 1:
            return self._lanes[0]
        return min(self._lanes, key=lambda lane: lane.queued_bytes)

    def _dispatch(self, lane: _Lane) -> None:
        """Send the lane's waiting jobs to its worker in batches."""
        while lane.waiting and lane.in_flight < 2 and lane in self._lanes:
            batch: list[_Job] = []
            size = 0
            while lane.waiting and len(batch) < MAX_BATCH and size < MAX_BATCH_BYTES:
                job = lane.waiting.popleft()
                batch.append(job)
                size += job.size
            lane.in_flight += 1
            self.batches += 1
            self.messages += len(batch)
            future = asyncio.get_running_loop().run_in_executor(
                lane.pool, analyse_batch, [(job.raw, job.full) for job in batch])
            future.add_done_callback(functools.partial(self._settle, lane, batch, size))

    def _settle(self, lane: _Lane, jobs: list[_Job], size: int,
                future: asyncio.Future[list[Analysis | Exception]]) -> None:
        lane.in_flight -= 1
        lane.queued_bytes -= size
        error: BaseException | None
        if future.cancelled():  # the pool was shut down (see stop)
            error = BrokenProcessPool("analysis workers stopped")
        else:
            error = future.exception()
        if isinstance(error, BrokenProcessPool) and self._lanes:
            log.error("an analysis worker died; analysing in threads from now on")
            self.stop()
        results = future.result() if error is None else [error] * len(jobs)
        for job, outcome in zip(jobs, results, strict=True):
            if job.done.done():
                continue
            if isinstance(outcome, BaseException):
                job.done.set_exception(outcome)
            else:
                job.done.set_result(outcome)
        if lane in self._lanes:
            self._dispatch(lane)

    async def _hashes(self, raw: Source, full: bool, size: int) -> Analysis:
        if self._lanes:
            job = _Job(raw, full, size)
            lane = self._lane_for(size)
            lane.waiting.append(job)
            lane.queued_bytes += size
            self._dispatch(lane)
            try:
                return await job.done
            except BrokenProcessPool:
                pass  # the worker died under this job: analyse it here instead
        return await asyncio.to_thread(analyse, raw, full)

    async def run(self, raw: bytes | Path, full: bool = False,
                  size: int | None = None) -> tuple[ParsedMessage, float | None]:
        """The parsed message and its spam score (None if scoring failed).

        ``raw`` is the message or the path of a file holding it (then pass its ``size``:
        it decides the lane, and nothing is read here). Without ``full`` the parsed message
        is a :func:`summary` (no bodies or headers).
        """
        parsed, spam, _ = await self.run_extracting(raw, full, size)
        return parsed, spam

    async def run_extracting(
        self, raw: bytes | Path, full: bool = False, size: int | None = None,
    ) -> tuple[ParsedMessage, float | None, str | None]:
        """:meth:`run`, plus the message's codes and links as JSON text (None if their
        extraction failed)."""
        if isinstance(raw, Path):
            source: Source = str(raw)
            length = size if size is not None else 0
        else:
            source, length = raw, len(raw)
        parsed, hashes, extract = await self._hashes(source, full, length)
        if self._model is None:
            return parsed, None, extract
        try:
            return parsed, round(self._model.score_hashes(hashes), 4), extract
        except Exception:
            log.exception("spam scoring failed; storing the message without a score")
            return parsed, None, extract

    async def extract(self, raw: bytes) -> str | None:
        """Codes and links of ``raw`` as JSON text, computed in a worker (in a thread
        without workers): for messages stored before extraction existed."""
        if self._lanes:
            lane = self._lane_for(len(raw))
            try:
                return await asyncio.get_running_loop().run_in_executor(
                    lane.pool, extract_raw, raw)
            except BrokenProcessPool:
                pass
        return await asyncio.to_thread(extract_raw, raw)
