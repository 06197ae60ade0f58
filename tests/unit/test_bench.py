"""``python -m mailsac bench``: message generation, statistics, report shape, arguments,
the SMTP client against an in-process aiosmtpd server, and one small end-to-end run."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import pickle
import random
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from mailsac.bench.baseline import DiscardHandler
from mailsac.bench.cli import options_from_args, register
from mailsac.bench.report import Progress, evaluate_targets, flood_json, render, summarize
from mailsac.bench.scenarios import SCENARIOS, get_scenario
from mailsac.bench.smtp_load import FloodConfig, FloodResult, LocalCounter, run_flood
from mailsac.bench.spawn import GENEROUS_LIMITS, server_env
from mailsac.bench.stats import LatencyStats, dig, percentile, spread
from mailsac.bench.workload import (
    KIB,
    MIB,
    TOKEN_RE,
    SizeMix,
    Workload,
    format_size,
    parse_size,
)
from mailsac.config import Settings, load_settings
from mailsac.mime import parse_message
from tests.helpers import ROOT

# -- sizes and message generation ------------------------------------------------------------


@pytest.mark.parametrize(("text", "size"), [
    ("4k", 4 * KIB), ("200KB", 200 * KIB), ("20m", 20 * MIB), ("2.5MiB", int(2.5 * MIB)),
    ("1024", 1024),
])
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "abc", "4x", "100"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


def test_size_mix_parse_pick_and_describe() -> None:
    mix = SizeMix.parse("4k:70, 64k:20,1m=10")
    assert mix.entries == ((4 * KIB, 70.0), (64 * KIB, 20.0), (MIB, 10.0))
    assert mix.largest == MIB
    rnd = random.Random(1)
    picks = [mix.pick(rnd) for _ in range(5000)]
    assert 0.65 < picks.count(4 * KIB) / 5000 < 0.75
    assert mix.describe() == "4 KiB 70%, 64 KiB 20%, 1 MiB 10%"
    assert SizeMix.parse("4k").describe() == format_size(4096) == "4 KiB"
    with pytest.raises(ValueError):
        SizeMix.parse("4k:0")
    with pytest.raises(ValueError):
        SizeMix.parse(" , ")


@pytest.mark.parametrize(("sizes", "tolerance"), [("2k", 0.08), ("4k", 0.03), ("200k", 0.01),
                                                  ("1m", 0.01)])
def test_messages_have_the_requested_size(sizes: str, tolerance: float) -> None:
    w = Workload("sz1", 60, SizeMix.parse(sizes), attachment_ratio=0.5)
    target = parse_size(sizes)
    for i in range(w.count):
        assert abs(w.message(i).size - target) <= target * tolerance, (i, w.message(i).size)


def test_messages_are_valid_realistic_mime() -> None:
    w = Workload("mime1", 40, SizeMix.parse("4k:1,64k:1"), attachment_ratio=0.5)
    with_attachment = 0
    for i in range(w.count):
        msg = w.message(i)
        parsed = parse_message(msg.raw)
        assert parsed.defects == 0
        match = TOKEN_RE.search(parsed.subject)
        assert match is not None and match.group(1) == msg.token
        assert parsed.message_id is not None and msg.token in parsed.message_id
        assert [a.address for a in parsed.from_] == [msg.mail_from]
        assert [a.address for a in parsed.to] == [msg.rcpt]
        assert parsed.text and parsed.html and "<a href=" in parsed.html
        assert parsed.links and all(link.startswith("https://") for link in parsed.links)
        with_attachment += bool(parsed.attachments)
    assert 5 <= with_attachment <= 35


def test_large_messages_always_carry_an_attachment() -> None:
    w = Workload("big1", 2, SizeMix.parse("2m"), attachment_ratio=0.0)
    parsed = parse_message(w.message(0).raw)
    assert len(parsed.attachments) == 1 and len(parsed.attachments[0].data) > MIB


def test_wire_format_is_smtp_safe() -> None:
    w = Workload("wire1", 30, SizeMix.parse("4k:1,16k:1"), attachment_ratio=0.5)
    for i in range(w.count):
        raw = w.message(i).raw
        assert raw.endswith(b"\r\n")
        assert b"\n" not in raw.replace(b"\r\n", b"")  # no bare LF
        lines = raw.split(b"\r\n")
        assert not any(line.startswith(b".") for line in lines)
        assert max(len(line) for line in lines) <= 998
        assert raw.isascii()


def test_tokens_ids_and_recipients() -> None:
    w = Workload("uniq1", 2000, SizeMix.parse("4k"))
    messages = [w.message(i) for i in range(w.count)]
    assert len({m.token for m in messages}) == w.count
    message_ids = {m.header.split(b"Message-ID: ")[1].split(b"\r\n")[0] for m in messages}
    assert len(message_ids) == w.count
    assert w.inboxes == 200 and len({m.rcpt for m in messages}) == 200
    assert len({m.mail_from.split("@")[1] for m in messages}) >= 500  # sender org-domains
    grouped = w.by_inbox(list(range(w.count)))
    assert sum(len(v) for v in grouped.values()) == w.count and len(grouped) == 200
    with pytest.raises(IndexError):
        w.message(w.count)
    with pytest.raises(ValueError):
        Workload("Bad-Id", 1, SizeMix.parse("4k"))


def test_generation_is_deterministic_and_pickles_without_templates() -> None:
    a = Workload("det1", 50, SizeMix.parse("4k:1,32k:1"), seed=7, attachment_ratio=0.3)
    b = Workload("det1", 50, SizeMix.parse("4k:1,32k:1"), seed=7, attachment_ratio=0.3)
    assert all(a.message(i).raw == b.message(i).raw for i in range(50))
    a.prepare()
    copy = pickle.loads(pickle.dumps(a))
    assert copy._templates == {} and copy.message(3).raw == a.message(3).raw
    other_seed = Workload("det1", 50, SizeMix.parse("4k:1,32k:1"), seed=8)
    assert other_seed.message(3).raw != a.message(3).raw


# -- statistics -------------------------------------------------------------------------------


def test_percentile_matches_numpy() -> None:
    rnd = random.Random(3)
    for n in (1, 2, 7, 100, 1001):
        values = [rnd.expovariate(0.1) for _ in range(n)]
        for q in (0, 1, 50, 90, 99, 99.9, 100):
            assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile(list(range(1, 101)), 99) == pytest.approx(99.01)
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_latency_stats_and_spread() -> None:
    stats = LatencyStats.of([1.0] * 98 + [300.0, 400.0], errors=2)
    doc = stats.to_json()
    assert doc["count"] == 100 and doc["errors"] == 2 and doc["p50_ms"] == 1.0
    assert doc["max_ms"] == 400.0 and doc["over_250ms"] == 2
    assert LatencyStats.of([]).to_json()["p99_ms"] is None
    assert spread([3.0, 1.0, None, 2.0, math.nan]) == {"median": 2.0, "min": 1.0, "max": 3.0}
    assert spread([None]) == {"median": None, "min": None, "max": None}
    assert dig({"a": {"b": {"c": 5}}}, "a.b.c") == 5 and dig({"a": 1}, "a.b") is None


# -- report -----------------------------------------------------------------------------------


def _fake_run(k: int, rate: float) -> dict[str, Any]:
    result = FloodResult(accepted=list(range(100)), accepted_bytes=100 * 4096, attempted=100,
                         started=1000.0, finished=1000.0 + 100 / rate, client_cpu=0.01,
                         connections=5, latencies_ms=[2.0] * 100)
    latency = {"list": LatencyStats.of([1.0, 2.0]).to_json(),
               "get": LatencyStats.of([1.5, 3.0]).to_json()}
    return {"run": k, "flood": flood_json(result, 100, 1),
            "baseline": {"msgs_per_s": 2 * rate, "mib_per_s": 1.0}, "ratio": 0.5,
            "latency": {"idle": latency, "flood": latency, "flood_slow": 0},
            "verification": {"loss": 0, "raw_mismatched": 0},
            "server": {"rss_max_mib": 100.0 + k, "cpu_pct": 50.0, "db_cpu_pct": 10.0}}


def test_flood_json_summary_targets_and_table() -> None:
    runs = [_fake_run(1, 1000.0), _fake_run(2, 1200.0), _fake_run(3, 800.0)]
    assert runs[0]["flood"]["msgs_per_s"] == 1000.0
    assert runs[0]["flood"]["smtp_ms"]["p50_ms"] == 2.0
    summary = summarize(runs)
    assert summary["msgs_per_s"] == {"median": 1000.0, "min": 800.0, "max": 1200.0}
    assert summary["rss_max_mib"]["max"] == 103.0 and summary["loss_total"] == 0
    assert summary["flood_max_ms"]["median"] == 3.0
    targets = {t["metric"]: t for t in evaluate_targets("a", summary)}
    assert targets["msgs_per_s"]["met"] is True and targets["ratio"]["met"] is False
    assert targets["loss_total"]["met"] is True
    runs[2]["latency"]["flood"]["get"]["max_ms"] = 300.0  # one slow request in one run
    worst = {t["metric"]: t for t in evaluate_targets("a", summarize(runs))}["flood_max_ms"]
    assert worst["value"] == 300.0 and worst["met"] is False
    runs[2]["latency"]["flood"]["get"]["max_ms"] = 3.0
    report = {
        "scenario": {"name": "a", "title": "t", "messages": 100, "sessions": 5, "sizes": "4k"},
        "runs_requested": 3, "target": {"description": "x"}, "runs": runs,
        "summary": summary, "targets": evaluate_targets("a", summary),
    }
    json.dumps(report)
    table = render(report)
    assert "stored msg/s" in table and "1,000" in table and "[MISS]" in table


def test_progress_only_on_a_tty() -> None:
    quiet = io.StringIO()
    Progress(quiet).bar("x", 1, 10, 0.0)
    assert quiet.getvalue() == ""
    loud = io.StringIO()
    progress = Progress(loud, enabled=True)
    progress.bar("flood", 5, 10, 0.0)
    progress.done("finished")
    shown = loud.getvalue()
    assert shown.startswith("\rflood [###############") and "\rfinished" in shown
    assert shown.endswith("\n")


# -- arguments --------------------------------------------------------------------------------


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["bench", *argv])


def test_arguments_and_scenario_overrides() -> None:
    opts = options_from_args(_parse("--scenario", "flood", "--spawn", "--messages", "50",
                                    "--sessions", "5", "--runs", "3", "--baseline"))
    assert opts.spawn and opts.baseline and opts.runs == 3
    assert opts.scenario.name == "a" and opts.scenario.messages == 50
    assert opts.scenario.sessions == 5 and opts.scenario.sizes == "4k"
    opts = options_from_args(_parse("--url", "http://127.0.0.1:8080", "--smtp", "localhost:2525",
                                    "--key", "k_x", "--scenario", "c"))
    assert (opts.smtp_host, opts.smtp_port, opts.key) == ("localhost", 2525, "k_x")
    assert opts.scenario.messages == 10 and opts.scenario.sizes == "20m"
    assert get_scenario("store") is SCENARIOS["d"]
    assert not opts.starttls
    assert options_from_args(_parse("--spawn", "--starttls", "--per-session", "1")).starttls


@pytest.mark.parametrize("argv", [
    ("--spawn", "--url", "http://127.0.0.1:1"),
    ("--url", "http://127.0.0.1:1", "--smtp", "127.0.0.1:25"),  # no key
    ("--url", "http://192.0.2.1:80", "--smtp", "192.0.2.1:25", "--key", "k"),  # not loopback
    ("--spawn", "--sizes", "4q"),
    ("--spawn", "--attachments", "1.5"),
    ("--spawn", "--scenario", "nope"),
    ("--url", "http://127.0.0.1:1", "--smtp", "127.0.0.1:25", "--key", "k", "--scenario", "d"),
    ("--spawn", "--starttls", "--baseline"),  # the bare aiosmtpd baseline has no TLS
])
def test_bad_arguments(argv: tuple[str, ...]) -> None:
    with pytest.raises(ValueError):
        options_from_args(_parse(*argv))


def test_bad_host_port_is_an_argparse_error() -> None:
    with pytest.raises(SystemExit):
        _parse("--smtp", "nohost")


# -- the SMTP client against an in-process aiosmtpd ---------------------------------------------


class _PickyHandler(DiscardHandler):
    """Accepts everything except recipients whose inbox number ends in 3."""

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if address.split("@")[0].endswith("3"):
            return "550 5.1.1 no such inbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"


@pytest.fixture()
async def smtp_port() -> AsyncIterator[int]:
    loop = asyncio.get_running_loop()
    handler = _PickyHandler()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="t.test", decode_data=False, loop=loop),
        "127.0.0.1", 0)
    yield int(server.sockets[0].getsockname()[1])
    server.close()


async def test_flood_client_counts_accepts_and_refusals(smtp_port: int) -> None:
    w = Workload("cli1", 60, SizeMix.parse("2k:1,8k:1"), inboxes=10, attachment_ratio=0.3)
    counter = LocalCounter()
    result = await run_flood(FloodConfig("127.0.0.1", smtp_port, 4, w, per_session=7), counter)
    refused = [i for i in range(60) if w.inbox(i).split("@")[0].endswith("3")]
    assert result.failures == {"550": len(refused)}
    assert sorted(result.accepted) == sorted(set(range(60)) - set(refused))
    assert result.accepted_bytes == sum(w.message(i).size for i in result.accepted)
    assert counter.value == result.attempted == 60
    assert result.connections >= 60 // 7 and result.aborted is None
    assert len(result.latencies_ms) == len(result.accepted)


async def test_flood_client_reports_an_unreachable_server() -> None:
    w = Workload("cli2", 5, SizeMix.parse("2k"))
    result = await run_flood(FloodConfig("127.0.0.1", 1, 2, w, reply_timeout=2))
    assert result.accepted == [] and sum(result.failures.values()) == 5
    assert all(reason.startswith("connect: ") for reason in result.failures)


# -- end to end ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_bench_end_to_end_with_a_spawned_server() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mailsac.bench", "--spawn", "--scenario", "smoke",
         "--messages", "50", "--sessions", "5", "--runs", "1", "--idle-requests", "10",
         "--raw-check", "5", "--json", "--no-progress"],
        cwd=ROOT, capture_output=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    report = json.loads(done.stdout)
    assert {"scenario", "target", "runs", "summary", "targets", "host"} <= report.keys()
    (run,) = report["runs"]
    assert run["flood"]["accepted"] == 50 and run["flood"]["failed"] == {}
    assert run["verification"]["loss"] == 0 and run["verification"]["expected"] == 50
    assert run["verification"]["raw_checked"] == 5 and run["verification"]["raw_mismatched"] == 0
    for phase in ("idle", "flood"):
        assert {"list", "get"} <= run["latency"][phase].keys()
        assert run["latency"][phase]["list"]["count"] > 0
    assert run["server"]["rss_max_mib"] > 0
    assert report["summary"]["loss_total"] == 0 and report["summary"]["msgs_per_s"]["median"]


def test_spawned_server_env_uses_free_ports_and_generous_limits(tmp_path: Path) -> None:
    env = server_env(tmp_path, "k_test", 25 * MIB)
    for f in fields(Settings):  # a listener added later must not collide between runs
        if f.name.endswith("_port"):
            assert env.get(f.metadata["env"]) == "0", f.metadata["env"]
    settings = load_settings(environ=env)
    assert settings.limits == GENEROUS_LIMITS and settings.public_inbox_limit >= 1_000_000
    assert settings.max_message_size == 25 * MIB and settings.admin_key == "k_test"
