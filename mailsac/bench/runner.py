"""One benchmark invocation, end to end: target, optional store seeding, K runs, report.

Each run: an idle latency probe, then the flood against mailsac with a concurrent probe
(and, with ``--baseline``, the same-shaped flood against the bare aiosmtpd server, the two
in alternating order so drift hits both), then verification that every ``250`` is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import platform
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from mailsac import __version__
from mailsac.bench import http_probe
from mailsac.bench.baseline import BaselineServer
from mailsac.bench.http_probe import ProbeTarget, api_client
from mailsac.bench.report import Progress, evaluate_targets, flood_json, summarize
from mailsac.bench.scenarios import Scenario
from mailsac.bench.smtp_load import FloodConfig, FloodProcess, FloodResult, run_flood
from mailsac.bench.spawn import Sampler, SpawnedServer, Usage
from mailsac.bench.workload import SizeMix, Workload

PROBE_INBOXES, PROBE_MESSAGES = 5, 20
P = TypeVar("P")


@dataclass
class Options:
    scenario: Scenario
    runs: int = 1
    baseline: bool = False
    spawn: bool = False
    url: str = ""
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    key: str = ""
    pid: int | None = None  # the server's pid, for RSS/CPU (spawned: known)
    database_url: str = ""  # for seeding an existing deployment
    data_dir: Path | None = None  # its data directory (blobs/) for the seeded blob
    client_procs: int = 1
    client_loop: str = "auto"
    idle_requests: int = 200  # per endpoint
    probe_rate: float = 10.0  # requests per second per endpoint (open loop)
    max_seconds: float = 900.0
    seed: int = 0
    keep: bool = False
    server_env: dict[str, str] = field(default_factory=dict)
    starttls: bool = False


@dataclass
class Target:
    smtp_host: str
    smtp_port: int
    url: str
    key: str
    pid: int | None
    database_url: str
    data_dir: Path | None
    description: str


@contextlib.asynccontextmanager
async def target_of(opts: Options) -> AsyncIterator[Target]:
    """The server under test: spawned for the duration, or the one the options point at."""
    if not opts.spawn:
        yield Target(opts.smtp_host, opts.smtp_port, opts.url, opts.key, opts.pid,
                     opts.database_url, opts.data_dir,
                     f"existing deployment smtp {opts.smtp_host}:{opts.smtp_port}, {opts.url}")
        return
    largest = SizeMix.parse(opts.scenario.sizes).largest
    server = SpawnedServer(max_message_size=max(25 * 2**20, largest * 5 // 4),
                           extra_env=opts.server_env, keep=opts.keep)
    await asyncio.to_thread(server.start)
    try:
        from mailsac.storage.db import asyncpg_dsn

        url = server.database_url()
        yield Target("127.0.0.1", server.smtp_port, server.http_url, server.key, server.pid,
                     asyncpg_dsn(url) if url else "", server.data_dir,
                     f"spawned mailsac {__version__} (pid {server.pid}, data {server.data_dir})")
    finally:
        code = await asyncio.to_thread(server.stop)
        if code not in (0, None):
            raise RuntimeError(f"the spawned server exited with {code}:\n{server.log_tail()}")


async def flood_while_probing(
    process: FloodProcess, ui: Progress, label: str, count: int,
    probe: Callable[[asyncio.Event], Awaitable[P]] | None,
) -> tuple[FloodResult, P | None]:
    """Run the flood ``process`` (with a progress bar) while ``probe(stop)`` measures the
    API; ``stop`` is set when the flood ends. The flood's result and the probe's."""
    ui.line(f"{label}: building messages…")
    stop = asyncio.Event()
    prober: asyncio.Task[P] | None = None
    try:
        await process.start()
        if probe is not None:
            prober = asyncio.ensure_future(probe(stop))
        started = time.monotonic()
        process.go()
        while not process.done():
            ui.bar(label, process.progress, count, started)
            await asyncio.sleep(0.1)
        result = await process.result()
        stop.set()
        return result, (await prober if prober is not None else None)
    finally:
        stop.set()
        if prober is not None and not prober.done():
            prober.cancel()
        process.kill()


class Bench:
    def __init__(self, opts: Options, target: Target, client: httpx.AsyncClient,
                 ui: Progress) -> None:
        self.opts, self.target, self.client, self.ui = opts, target, client, ui
        self.scenario = opts.scenario
        self.sampler = Sampler(target.pid) if target.pid else None
        self.base_id = secrets.token_hex(3)
        self.targets: list[ProbeTarget] = []

    def workload(self, run_id: str, count: int, **kw: Any) -> Workload:
        s = self.scenario
        return Workload(run_id, count, SizeMix.parse(s.sizes), attachment_ratio=s.attachments,
                        seed=self.opts.seed, **kw)

    def flood_config(self, port: int, workload: Workload, sessions: int) -> FloodConfig:
        return FloodConfig(self.target.smtp_host, port, sessions, workload,
                           per_session=self.scenario.per_session,
                           max_seconds=self.opts.max_seconds, starttls=self.opts.starttls)

    async def prepare_probe_targets(self) -> None:
        """A few inboxes of 20 messages each, so list/get have something real to return."""
        self.ui.line("preparing probe inboxes…")
        w = Workload(self.base_id + "p", PROBE_INBOXES * PROBE_MESSAGES, SizeMix.parse("4k"),
                     inboxes=PROBE_INBOXES, attachment_ratio=0.3, seed=self.opts.seed)
        sent = await run_flood(self.flood_config(self.target.smtp_port, w, PROBE_INBOXES))
        if not sent.accepted:
            raise RuntimeError(f"the server accepted none of the probe messages: {sent.failures}")
        inboxes = sorted({w.inbox(i) for i in range(w.count)})
        self.targets = await http_probe.targets_of(self.client, inboxes)
        if not self.targets:
            raise RuntimeError("the probe messages were accepted but cannot be listed")

    async def flood(self, port: int, workload: Workload, label: str,
                    probe: bool) -> tuple[FloodResult, http_probe.ProbeResult | None]:
        process = FloodProcess(self.flood_config(port, workload, self.scenario.sessions),
                               self.opts.client_procs, self.opts.client_loop)

        def prober(stop: asyncio.Event) -> Awaitable[http_probe.ProbeResult]:
            return http_probe.probe(
                self.target.url, self.target.key, self.targets, stop=stop,
                rate=self.opts.probe_rate, max_seconds=self.opts.max_seconds + 60,
                seed=self.opts.seed)

        return await flood_while_probing(process, self.ui, label, workload.count,
                                         prober if probe else None)

    async def one_run(self, k: int, baseline: BaselineServer | None) -> dict[str, Any]:
        run_id = f"{self.base_id}r{k}"
        n = self.scenario.messages
        tag = f"run {k + 1}/{self.opts.runs}"
        self.ui.line(f"{tag}: idle probe…")
        idle = await http_probe.probe(self.target.url, self.target.key, self.targets,
                                      requests=self.opts.idle_requests,
                                      rate=self.opts.probe_rate, seed=self.opts.seed + k)
        out: dict[str, Any] = {"run": k + 1, "run_id": run_id, "baseline": None, "ratio": None}
        order = ["mailsac", "baseline"] if k % 2 else ["baseline", "mailsac"]
        for which in order:
            if which == "baseline" and baseline is not None:
                res, _ = await self.flood(baseline.port, self.workload(run_id + "b", n),
                                          f"{tag} baseline", probe=False)
                out["baseline"] = flood_json(res, n, self.opts.client_procs)
            elif which == "mailsac":
                workload = self.workload(run_id, n)
                mark = self.sampler.mark() if self.sampler else None
                res, during = await self.flood(self.target.smtp_port, workload,
                                               f"{tag} mailsac", probe=True)
                usage: Usage | None = self.sampler.usage(mark) if self.sampler and mark else None
                out["flood"] = flood_json(res, n, self.opts.client_procs)
                assert during is not None
                out["latency"] = {"idle": idle.to_json(), "flood": during.to_json(),
                                  "flood_slow": during.list.slow + during.get.slow}
                out["server"] = usage.to_json() if usage else None
                if usage and usage.cpu_seconds is not None and res.accepted:
                    # every process: the server (or --processes supervisor and its
                    # nodes), their analysis workers, the embedded PostgreSQL
                    out["server"]["cpu_ms_per_msg"] = round(
                        1000 * usage.cpu_seconds / len(res.accepted), 3)
                    out["server"]["total_cpu_pct"] = round(
                        100 * usage.cpu_seconds / max(1e-9, res.seconds), 1)
                self.ui.line(f"{tag}: verifying {len(res.accepted):,} messages…")
                checked = await http_probe.verify(self.client, workload, res.accepted,
                                                  raw_sample=self.scenario.raw_check)
                out["verification"] = checked.to_json()
        if out["baseline"] and out["baseline"]["msgs_per_s"]:
            out["ratio"] = round(out["flood"]["msgs_per_s"] / out["baseline"]["msgs_per_s"], 3)
        self.ui.done(f"{tag}: {out['flood']['msgs_per_s']:,.0f} msg/s, "
                     f"{out['flood']['mib_per_s']} MiB/s, loss {out['verification']['loss']}"
                     + (f", ratio {out['ratio']}" if out["ratio"] is not None else ""))
        return out

    async def seed_store(self) -> dict[str, Any]:
        from mailsac.bench.seed import seed_store

        t = self.target
        if not t.database_url or t.data_dir is None:
            raise RuntimeError("seeding needs --spawn, or --database-url and --data-dir")
        count = self.scenario.seed_messages
        started = time.monotonic()
        mark = self.sampler.mark() if self.sampler else None

        def progress(done: int) -> None:
            self.ui.bar("seeding the store", done, count, started)

        seeded = await seed_store(t.database_url, t.data_dir / "blobs", count,
                                  run_id=self.base_id + "s", seed=self.opts.seed,
                                  progress=progress)
        self.ui.done(f"seeded {seeded.rows:,} rows in {seeded.seconds:.0f} s")
        seed_usage = self.sampler.usage(mark) if self.sampler and mark else None
        self.targets = seeded.targets
        self.ui.line("idle probe on the big store…")
        mark = self.sampler.mark() if self.sampler else None
        idle = await http_probe.probe(self.target.url, self.target.key, self.targets,
                                      requests=max(1000, self.opts.idle_requests),
                                      rate=self.opts.probe_rate, seed=self.opts.seed)
        probe_usage = self.sampler.usage(mark) if self.sampler and mark else None
        return {"seed": seeded.to_json(), "latency_idle": idle.to_json(),
                "server_seeding": seed_usage.to_json() if seed_usage else None,
                "server_probe": probe_usage.to_json() if probe_usage else None}


async def run_bench(opts: Options, ui: Progress,
                    on_run: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    s = opts.scenario
    report: dict[str, Any] = {
        "version": 1, "mailsac": __version__,
        "scenario": {"name": s.name, "title": s.title, "messages": s.messages,
                     "sessions": s.sessions, "sizes": s.sizes, "attachments": s.attachments,
                     "per_session": s.per_session, "seed_messages": s.seed_messages},
        "runs_requested": opts.runs, "baseline": opts.baseline,
        "host": {"cpus": _cpus(), "python": platform.python_version(),
                 "platform": platform.platform(), "loadavg_start": _loadavg()},
    }
    baseline = BaselineServer(max_size=max(64 * 2**20, SizeMix.parse(s.sizes).largest * 2))
    async with target_of(opts) as target:
        report["target"] = {"description": target.description, "spawned": opts.spawn,
                            "smtp": f"{target.smtp_host}:{target.smtp_port}", "url": target.url}
        async with api_client(target.url, target.key) as client:
            bench = Bench(opts, target, client, ui)
            if bench.sampler:
                bench.sampler.start()
            overall = bench.sampler.mark() if bench.sampler else None
            try:
                if opts.baseline:
                    await asyncio.to_thread(baseline.start)
                if s.seed_messages:
                    report["store"] = await bench.seed_store()
                else:
                    await bench.prepare_probe_targets()
                runs = []
                for k in range(opts.runs):
                    runs.append(await bench.one_run(k, baseline if opts.baseline else None))
                    if on_run is not None:
                        on_run(runs[-1])
                report["runs"] = runs
                if bench.sampler and overall:
                    report["server_overall"] = {
                        **bench.sampler.usage(overall).to_json(),
                        "rss_timeline_mib": bench.sampler.timeline()}
                    if "store" in report:
                        report["store"]["server_overall"] = report["server_overall"]
            finally:
                ui.done()
                if bench.sampler:
                    await bench.sampler.stop()
                await asyncio.to_thread(baseline.stop)
    report["host"]["loadavg_end"] = _loadavg()
    report["summary"] = summarize(report["runs"])
    report["targets"] = evaluate_targets(s.name, report["summary"], report.get("store"))
    return report


async def run_processes(opts: Options, ui: Progress, processes: int) -> dict[str, Any]:
    """``--processes N``: the same scenario against a spawned server with 1 and with N
    processes, one run of each at a time, alternating which goes first so that drift on a
    shared machine hits both. Reports each side and the ratio of the medians."""
    counts = [1, processes]
    reports: dict[int, dict[str, Any]] = {}
    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in counts}
    for k in range(opts.runs):
        for n in counts if k % 2 == 0 else counts[::-1]:
            ui.line(f"run {k + 1}/{opts.runs}: {n} process(es)…")
            env = {**opts.server_env, "MAILSAC_PROCESSES": str(n)}
            report = await run_bench(dataclasses.replace(opts, runs=1, server_env=env), ui)
            runs[n].append({**report["runs"][0], "run": k + 1})
            reports[n] = report
    for n in counts:
        report = reports[n]
        report.update(processes=n, runs=runs[n], runs_requested=opts.runs,
                      summary=summarize(runs[n]))
        report["targets"] = evaluate_targets(opts.scenario.name, report["summary"])

    def median(n: int, name: str) -> float | None:
        value = (reports[n]["summary"].get(name) or {}).get("median")
        return None if value is None else float(value)

    one, many = median(1, "msgs_per_s"), median(processes, "msgs_per_s")
    return {
        "version": 1, "mailsac": __version__, "processes": counts,
        "reports": {str(n): reports[n] for n in counts},
        "comparison": {
            "msgs_per_s": {str(n): median(n, "msgs_per_s") for n in counts},
            "cpu_ms_per_msg": {str(n): median(n, "cpu_ms_per_msg") for n in counts},
            "total_cpu_pct": {str(n): median(n, "total_cpu_pct") for n in counts},
            "client_cpu_pct": {str(n): median(n, "client_cpu_pct") for n in counts},
            "ratio": round(many / one, 3) if one and many is not None else None},
        "summary": {"loss_total": sum(reports[n]["summary"]["loss_total"] for n in counts)},
    }


def _cpus() -> int | None:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _loadavg() -> list[float] | None:
    """The machine's 1/5/15-minute load: other work on the host skews every number."""
    import os

    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None
