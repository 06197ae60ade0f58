"""``python -m mailsac bench --compare maildev``: mailsac and MailDev measured in the same runs.

Each run starts a fresh MailDev (:mod:`mailsac.bench.maildev`) and a fresh mailsac
(``run_bench`` with one run, exactly what ``bench --spawn`` measures) and puts both through
the same sequence: the same probe messages sent the same way, an idle open-loop probe, the
scenario's flood (same :class:`Workload`, same :class:`FloodProcess`, same sessions and
sizes) with the open-loop probe running, CPU of all the server's processes sampled by pid,
then a check that every ``250`` can be read back. The order alternates (MailDev first in
odd-numbered runs, mailsac first in even ones) so drift on a shared machine hits both; the
report holds both sides' runs, their medians and the ratio mailsac / MailDev per metric.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import platform
import secrets
import time
from pathlib import Path
from typing import Any

import httpx

from mailsac import __version__
from mailsac.bench import maildev
from mailsac.bench.open_loop import OpenLoopProbe
from mailsac.bench.report import Progress, flood_json, summarize
from mailsac.bench.runner import (
    PROBE_INBOXES,
    PROBE_MESSAGES,
    Options,
    flood_while_probing,
    run_bench,
)
from mailsac.bench.smtp_load import FloodConfig, FloodProcess, FloodResult, run_flood
from mailsac.bench.spawn import Sampler
from mailsac.bench.stats import LatencyStats, spread
from mailsac.bench.workload import SizeMix, Workload

SIDES = ("mailsac", "maildev")

#: (summary name, label, True when higher is better) — the rows of the comparison.
METRICS: list[tuple[str, str, bool]] = [
    ("msgs_per_s", "stored msg/s", True),
    ("mib_per_s", "stored MiB/s", True),
    ("cpu_ms_per_msg", "server CPU ms per message (all processes)", False),
    ("total_cpu_pct", "server CPU % during the flood", False),
    ("smtp_p50_ms", "SMTP transaction p50 ms", False),
    ("smtp_p99_ms", "SMTP transaction p99 ms", False),
    ("idle_list_p50_ms", "list-inbox p50 ms, idle", False),
    ("idle_list_p99_ms", "list-inbox p99 ms, idle", False),
    ("idle_get_p50_ms", "get-message p50 ms, idle", False),
    ("idle_get_p99_ms", "get-message p99 ms, idle", False),
    ("flood_list_p50_ms", "list-inbox p50 ms, flood", False),
    ("flood_list_p99_ms", "list-inbox p99 ms, flood", False),
    ("flood_list_max_ms", "list-inbox max ms, flood", False),
    ("flood_get_p50_ms", "get-message p50 ms, flood", False),
    ("flood_get_p99_ms", "get-message p99 ms, flood", False),
    ("flood_get_max_ms", "get-message max ms, flood", False),
    ("rss_max_mib", "server RSS max MiB", False),
    ("client_cpu_pct", "client CPU % (of one core)", False),
    ("loss", "lost (250 but not readable)", False),
]


def order_of(k: int) -> tuple[str, str]:
    """Which side goes first in run ``k`` (0-based): MailDev, then mailsac, alternating."""
    return ("maildev", "mailsac") if k % 2 == 0 else ("mailsac", "maildev")


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


class MailDevSide:
    """One fresh MailDev per run, measured the way ``Bench`` measures mailsac."""

    def __init__(self, opts: Options, ui: Progress, script: Path) -> None:
        self.opts, self.ui, self.script = opts, ui, script
        self.scenario = opts.scenario

    def config(self, port: int, workload: Workload, sessions: int) -> FloodConfig:
        return FloodConfig("127.0.0.1", port, sessions, workload,
                           per_session=self.scenario.per_session,
                           max_seconds=self.opts.max_seconds, starttls=self.opts.starttls)

    async def prepare(self, server: maildev.MailDevServer, client: httpx.AsyncClient,
                      base_id: str) -> tuple[list[tuple[str, str]], int]:
        """The same probe messages as mailsac's (``runner.PROBE_INBOXES`` × ``PROBE_MESSAGES``);
        the (inbox, id) targets and the size of one list-inbox answer in bytes."""
        w = Workload(base_id + "p", PROBE_INBOXES * PROBE_MESSAGES, SizeMix.parse("4k"),
                     inboxes=PROBE_INBOXES, attachment_ratio=0.3, seed=self.opts.seed)
        sent = await run_flood(self.config(server.smtp_port, w, PROBE_INBOXES))
        if not sent.accepted:
            raise RuntimeError(f"MailDev accepted none of the probe messages: {sent.failures}")
        targets: list[tuple[str, str]] = []
        size = 0
        for inbox in sorted({w.inbox(i) for i in range(w.count)}):
            response = await client.get(maildev.inbox_query(inbox))
            response.raise_for_status()
            size = max(size, len(response.content))
            targets += [(inbox, str(m["id"])) for m in response.json()]
        return targets, size

    async def flood(self, server: maildev.MailDevServer, workload: Workload, label: str,
                    targets: list[tuple[str, str]]) -> tuple[FloodResult, dict[str, LatencyStats]]:
        config = self.config(server.smtp_port, workload, self.scenario.sessions)
        process = FloodProcess(config, self.opts.client_procs, self.opts.client_loop)
        probe = OpenLoopProbe(server.url, "", maildev.endpoints(targets, self.opts.seed),
                              self.opts.probe_rate)
        result, stats = await flood_while_probing(
            process, self.ui, label, workload.count,
            lambda stop: probe.run(stop=stop, max_seconds=self.opts.max_seconds + 60))
        assert stats is not None
        return result, stats

    async def verify(self, client: httpx.AsyncClient, workload: Workload,
                     accepted: list[int]) -> dict[str, Any]:
        """Every accepted message listed (summary pages, oldest first), a sample byte-exact."""
        started = time.monotonic()
        found: dict[str, str] = {}
        calls, skip = 0, 0
        while True:
            response = await client.get("/api/email/summary", params={
                "limit": str(maildev.SUMMARY_PAGE), "skip": str(skip), "sort": "asc"})
            response.raise_for_status()
            calls += 1
            items = response.json()["items"]
            found.update(maildev.tokens_of(items))
            if len(items) < maildev.SUMMARY_PAGE:
                break
            skip += len(items)
        ids = {i: found[workload.token(i)] for i in accepted if workload.token(i) in found}
        missing = [workload.token(i) for i in accepted if i not in ids]
        wanted = self.scenario.raw_check
        sample = sorted(ids)[:: max(1, len(ids) // wanted)][:wanted] if wanted else []
        mismatched = errors = 0
        for i in sample:
            expected = workload.message(i).raw
            try:
                response = await client.get(f"/api/email/{ids[i]}/source")
                response.raise_for_status()
                raw = response.content
            except httpx.HTTPError:
                errors, raw = errors + 1, b""
            got = raw[-len(expected):] if len(raw) >= len(expected) else raw
            if hashlib.sha256(got).digest() != hashlib.sha256(expected).digest():
                mismatched += 1
        return {"expected": len(accepted), "found": len(ids), "loss": len(missing),
                "list_calls": calls, "raw_checked": len(sample), "raw_mismatched": mismatched,
                "errors": errors, "seconds": round(time.monotonic() - started, 2),
                "missing_sample": missing[:10]}

    async def run(self, k: int) -> dict[str, Any]:
        s, tag = self.scenario, f"run {k + 1}/{self.opts.runs} maildev"
        largest = SizeMix.parse(s.sizes).largest
        server = maildev.MailDevServer(self.script,
                                       max_message_size=max(25 * 2**20, largest * 5 // 4))
        await asyncio.to_thread(server.start)
        sampler = Sampler(server.pid)
        sampler.start()
        base_id = secrets.token_hex(3) + "m"
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
                self.ui.line(f"{tag}: preparing probe inboxes…")
                targets, list_bytes = await self.prepare(server, client, base_id)
                self.ui.line(f"{tag}: idle probe…")
                idle = await OpenLoopProbe(
                    server.url, "", maildev.endpoints(targets, self.opts.seed + k),
                    self.opts.probe_rate).run(requests=self.opts.idle_requests)
                workload = Workload(base_id + f"r{k}", s.messages, SizeMix.parse(s.sizes),
                                    attachment_ratio=s.attachments, seed=self.opts.seed)
                mark = sampler.mark()
                res, during = await self.flood(server, workload, tag, targets)
                usage = sampler.usage(mark)
                self.ui.line(f"{tag}: verifying {len(res.accepted):,} messages…")
                checked = await self.verify(client, workload, res.accepted)
        finally:
            await sampler.stop()
            code = await asyncio.to_thread(server.stop)
        if code not in (0, None, -15):
            raise RuntimeError(f"MailDev exited with {code}")
        out: dict[str, Any] = {
            "run": k + 1, "run_id": workload.run_id,
            "target": f"MailDev (pid {server.pid}, smtp {server.smtp_port}, {server.url})",
            "flood": flood_json(res, s.messages, self.opts.client_procs),
            "latency": {"idle": {n: v.to_json() for n, v in idle.items()},
                        "flood": {n: v.to_json() for n, v in during.items()},
                        "flood_slow": during["list"].slow + during["get"].slow},
            "server": usage.to_json(), "verification": checked,
            "list_response_bytes": list_bytes, "probe_targets": len(targets)}
        if usage.cpu_seconds is not None and res.accepted:
            out["server"]["cpu_ms_per_msg"] = round(1000 * usage.cpu_seconds / len(res.accepted), 3)
            out["server"]["total_cpu_pct"] = round(100 * usage.cpu_seconds / res.seconds, 1)
        self.ui.done(f"{tag}: {out['flood']['msgs_per_s']:,.0f} msg/s, loss {checked['loss']}")
        return out


async def mailsac_run(opts: Options, ui: Progress, k: int) -> dict[str, Any]:
    """One run of the ordinary bench (a fresh spawned mailsac with ``--spawn``)."""
    report = await run_bench(dataclasses.replace(opts, runs=1), ui)
    return {**report["runs"][0], "run": k + 1, "target": report["target"]["description"]}


def versus(summaries: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Medians side by side and the ratio mailsac / MailDev for every metric."""
    rows = []
    for name, label, higher_better in METRICS:
        ours = (summaries["mailsac"].get(name) or {}).get("median")
        theirs = (summaries["maildev"].get(name) or {}).get("median")
        ratio = round(ours / theirs, 3) if ours is not None and theirs else None
        better = None
        if ours is not None and theirs is not None and ours != theirs:
            better = "mailsac" if (ours > theirs) == higher_better else "maildev"
        rows.append({"metric": name, "label": label, "mailsac": ours, "maildev": theirs,
                     "ratio": ratio, "better": better})
    return rows


def build_report(opts: Options, runs: dict[str, list[dict[str, Any]]],
                 extra: dict[str, Any]) -> dict[str, Any]:
    s = opts.scenario
    summaries = {side: summarize(runs[side]) for side in SIDES}
    for side in SIDES:  # each run's own load average, so a noisy run can be spotted
        summaries[side]["loadavg_1m"] = spread(
            (r.get("loadavg") or [None])[0] for r in runs[side])
    return {
        "version": 1, "mailsac": __version__, "compare": "maildev",
        "scenario": {"name": s.name, "title": s.title, "messages": s.messages,
                     "sessions": s.sessions, "sizes": s.sizes, "attachments": s.attachments,
                     "per_session": s.per_session},
        "runs_requested": opts.runs, "probe_rate": opts.probe_rate,
        "order": [list(order_of(k)) for k in range(opts.runs)],
        **extra,
        "sides": {side: {"runs": runs[side], "summary": summaries[side]} for side in SIDES},
        "versus": versus(summaries),
        "summary": {"loss_total": summaries["mailsac"]["loss_total"],
                    "maildev_loss_total": summaries["maildev"]["loss_total"]},
    }


async def run_compare(opts: Options, ui: Progress,
                      version: str = maildev.MAILDEV_VERSION) -> dict[str, Any]:
    ui.line(f"installing MailDev {version} (npm, cached)…")
    script = await asyncio.to_thread(maildev.install, version)
    node = await asyncio.to_thread(maildev.node_version)
    host = {"cpus": os.cpu_count(), "python": platform.python_version(), "node": node,
            "platform": platform.platform(), "loadavg_start": loadavg()}
    side = MailDevSide(opts, ui, script)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in SIDES}
    for k in range(opts.runs):
        for name in order_of(k):
            ui.line(f"run {k + 1}/{opts.runs}: {name}…")
            load = loadavg()
            run = await (side.run(k) if name == "maildev" else mailsac_run(opts, ui, k))
            runs[name].append({**run, "loadavg": load})
    host["loadavg_end"] = loadavg()
    extra = {"host": host, "maildev": {"version": version, "script": str(script),
                                       "semantics": maildev.SEMANTICS}}
    return build_report(opts, runs, extra)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}" if isinstance(value, float) else f"{value:,}"


def render_compare(report: dict[str, Any]) -> str:
    s, host = report["scenario"], report["host"]
    lines = [
        f"mailsac vs MailDev {report['maildev']['version']} — scenario {s['name']}: "
        f"{s['messages']:,} × {s['sizes']} over {s['sessions']} sessions, "
        f"{report['runs_requested']} run(s) each, alternating; probe "
        f"{report['probe_rate']:g} req/s per endpoint (open loop)",
        f"  host: {host.get('cpus')} CPUs, node {host.get('node')}, load average "
        f"{(host.get('loadavg_start') or ['-'])[0]} at start, "
        f"{(host.get('loadavg_end') or ['-'])[0]} at end",
        "", f"  {'median of the runs':<44}{'mailsac':>10}{'MailDev':>10}{'ratio':>8}  better",
    ]
    for row in report["versus"]:
        if row["mailsac"] is None and row["maildev"] is None:
            continue
        lines.append(f"  {row['label']:<44}{_fmt(row['mailsac']):>10}{_fmt(row['maildev']):>10}"
                     f"{_fmt(row['ratio']):>8}  {row['better'] or '='}")
    lines += ["", "  per run (msg/s, list p99 flood ms, CPU ms/msg, load average at start):"]
    for k, order in enumerate(report["order"]):
        cells = []
        for name in order:
            run = report["sides"][name]["runs"][k]
            cells.append(f"{name} {_fmt(run['flood']['msgs_per_s'])} / "
                         f"{_fmt(run['latency']['flood']['list']['p99_ms'])} / "
                         f"{_fmt((run.get('server') or {}).get('cpu_ms_per_msg'))} "
                         f"(load {(run.get('loadavg') or ['-'])[0]})")
        lines.append(f"    run {k + 1}: " + ", then ".join(cells))
    lines += ["", "  MailDev as run (its defaults):"]
    lines += [f"    {key}: {text}" for key, text in report["maildev"]["semantics"].items()]
    return "\n".join(lines)
