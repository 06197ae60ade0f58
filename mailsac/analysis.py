"""CPU-heavy message analysis (MIME parsing and spam tokenising) in worker processes.

Parsing and tokenising cost about a millisecond of CPU per small message and seconds for
a 20 MB one; in threads they hold the GIL and stall the event loop (and the HTTP API)
while they run. A process pool moves that work to the other cores. Only the token hashes
come back: the spam score itself is computed in this process with the shared model, so
online learning (which updates that model) applies to every new message.

If the pool cannot be used (``workers=0``, or a worker died) analysis runs in a thread.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from mailsac.mime import ParsedMessage, parse_message
from mailsac.spam import SpamModel
from mailsac.spam.bayes import HashArray, message_hashes

log = logging.getLogger(__name__)


def analyse(raw: bytes) -> tuple[ParsedMessage, HashArray]:
    """Parse a raw message and compute its spam token hashes (runs in a worker)."""
    parsed = parse_message(raw)
    return parsed, message_hashes(raw, parsed)


class Analyzer:
    """Runs :func:`analyse` in a process pool and scores the result with ``model``."""

    def __init__(self, model: SpamModel | None, workers: int) -> None:
        self._model = model
        self._workers = workers
        self._pool: ProcessPoolExecutor | None = None

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

    async def _hashes(self, raw: bytes) -> tuple[ParsedMessage, HashArray]:
        if self._pool is not None:
            try:
                return await asyncio.get_running_loop().run_in_executor(self._pool, analyse,
                                                                        raw)
            except BrokenProcessPool:
                log.error("an analysis worker died; analysing in threads from now on")
                self._pool = None
        return await asyncio.to_thread(analyse, raw)

    async def run(self, raw: bytes) -> tuple[ParsedMessage, float | None]:
        """The parsed message and its spam score (None if scoring failed)."""
        parsed, hashes = await self._hashes(raw)
        if self._model is None:
            return parsed, None
        try:
            return parsed, round(self._model.score_hashes(hashes), 4)
        except Exception:
            log.exception("spam scoring failed; storing the message without a score")
            return parsed, None
