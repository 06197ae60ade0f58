"""The analysis pool: batching, summaries, and the fall-back to threads when a worker dies."""

from __future__ import annotations

import asyncio
import os
import signal

from mailsac.analysis import WORKER_NICENESS, Analyzer, analyse
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
        assert analyzer._lanes
        for lane in analyzer._lanes:
            for pid in list(lane.pool._processes):  # type: ignore[attr-defined]
                os.kill(pid, signal.SIGKILL)
        results = await asyncio.gather(*(analyzer.run(_message(i)) for i in range(5)))
        assert [parsed.subject for parsed, _ in results] == [f"message {i}" for i in range(5)]
        assert not analyzer._lanes
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


async def test_small_mail_stays_on_one_worker_and_large_mail_spreads() -> None:
    analyzer = Analyzer(None, workers=2)
    await analyzer.start()
    try:
        first, second = analyzer._lanes
        small = [asyncio.ensure_future(analyzer.run(_message(i))) for i in range(20)]
        await asyncio.sleep(0)  # the jobs are queued on a lane now
        assert first.queued_bytes > 0 and second.queued_bytes == 0
        big_body = b"Subject: big\r\n\r\n" + b"word " * 40_000  # 200 KB
        large = [asyncio.ensure_future(analyzer.run(big_body)) for _ in range(6)]
        await asyncio.sleep(0)
        assert second.queued_bytes > 0
        results = await asyncio.gather(*small, *large)
        assert [p.subject for p, _ in results[:20]] == [f"message {i}" for i in range(20)]
        assert all(p.subject == "big" for p, _ in results[20:])
        assert first.queued_bytes == second.queued_bytes == 0
    finally:
        analyzer.stop()


async def test_stopping_hands_waiting_messages_to_threads() -> None:
    analyzer = Analyzer(None, workers=1)
    await analyzer.start()
    jobs = [asyncio.ensure_future(analyzer.run(_message(i))) for i in range(30)]
    await asyncio.sleep(0)
    analyzer.stop()
    results = await asyncio.gather(*jobs)
    assert [p.subject for p, _ in results] == [f"message {i}" for i in range(30)]


async def test_workers_run_at_a_lower_priority_than_the_event_loop() -> None:
    analyzer = Analyzer(None, workers=1)
    await analyzer.start()
    try:
        (lane,) = analyzer._lanes
        (pid,) = lane.pool._processes  # type: ignore[attr-defined]
        own = os.getpriority(os.PRIO_PROCESS, 0)
        assert os.getpriority(os.PRIO_PROCESS, pid) == min(19, own + WORKER_NICENESS)
    finally:
        analyzer.stop()
