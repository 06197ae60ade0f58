"""The analysis pool: batching, summaries, and the fall-back to threads when a worker dies."""

from __future__ import annotations

import asyncio
import os
import signal

from mailsac.analysis import Analyzer, analyse
from mailsac.spam import default_model


def _message(i: int, attachment: bool = False) -> bytes:
    head = (f"From: a{i}@sender.test\r\nTo: b@x.test\r\nSubject: message {i}\r\n"
            "MIME-Version: 1.0\r\n")
    if not attachment:
        return (head + "Content-Type: text/plain\r\n\r\n"
                f"Hello {i}, see https://example.com/{i}\r\n").encode()
    return (head + 'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
            "--b\r\nContent-Type: text/plain\r\n\r\nbody\r\n"
            '--b\r\nContent-Type: application/octet-stream; name="f.bin"\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n--b--\r\n").encode()


async def test_concurrent_messages_are_batched_and_each_gets_its_own_result() -> None:
    analyzer = Analyzer(default_model(), workers=1)
    await analyzer.start()
    try:
        results = await asyncio.gather(*(analyzer.run(_message(i)) for i in range(60)))
    finally:
        analyzer.stop()
    assert [parsed.subject for parsed, _ in results] == [f"message {i}" for i in range(60)]
    assert [parsed.links for parsed, _ in results] == [
        [f"https://example.com/{i}"] for i in range(60)]
    assert all(score is not None and 0.0 <= score <= 1.0 for _, score in results)
    assert analyzer.messages == 60 and analyzer.batches < 60  # some batch held several


async def test_summary_unless_full_is_asked_for() -> None:
    analyzer = Analyzer(None, workers=1)
    await analyzer.start()
    try:
        summary, _ = await analyzer.run(_message(1, attachment=True))
        full, _ = await analyzer.run(_message(1, attachment=True), full=True)
    finally:
        analyzer.stop()
    assert summary.text is None and summary.headers == []
    assert summary.attachments[0].data == b""
    assert summary.attachments[0].checksum == full.attachments[0].checksum
    assert full.text == "body" and full.attachments[0].data == b"hello"
    assert full == analyse(_message(1, attachment=True))[0]


async def test_a_dead_worker_falls_back_to_threads() -> None:
    analyzer = Analyzer(default_model(), workers=1)
    await analyzer.start()
    try:
        assert analyzer._pool is not None
        for pid in list(analyzer._pool._processes):  # type: ignore[attr-defined]
            os.kill(pid, signal.SIGKILL)
        results = await asyncio.gather(*(analyzer.run(_message(i)) for i in range(5)))
        assert [parsed.subject for parsed, _ in results] == [f"message {i}" for i in range(5)]
        assert analyzer._pool is None
        again, _ = await analyzer.run(_message(9))
        assert again.subject == "message 9"
    finally:
        analyzer.stop()


async def test_without_workers_analysis_runs_in_threads() -> None:
    analyzer = Analyzer(default_model(), workers=0)
    await analyzer.start()
    parsed, score = await analyzer.run(_message(3))
    assert parsed.subject == "message 3" and score is not None
    assert analyzer.batches == 0
