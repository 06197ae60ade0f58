"""Result documents: per-run JSON, medians over runs, reference targets, the terminal table.

The JSON document (``--json``) is the source of truth; the table is rendered from it.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, TextIO

from mailsac.bench.smtp_load import FloodResult
from mailsac.bench.stats import SLOW_MS, LatencyStats, dig, spread

MIB = 2**20

#: name → path into one run's JSON; the summary holds the spread of each over the runs.
SUMMARY_PATHS = {
    "msgs_per_s": "flood.msgs_per_s",
    "mib_per_s": "flood.mib_per_s",
    "baseline_msgs_per_s": "baseline.msgs_per_s",
    "baseline_mib_per_s": "baseline.mib_per_s",
    "ratio": "ratio",
    "loss": "verification.loss",
    "raw_mismatched": "verification.raw_mismatched",
    "smtp_p50_ms": "flood.smtp_ms.p50_ms",
    "smtp_p99_ms": "flood.smtp_ms.p99_ms",
    "idle_list_p50_ms": "latency.idle.list.p50_ms",
    "idle_list_p99_ms": "latency.idle.list.p99_ms",
    "idle_get_p50_ms": "latency.idle.get.p50_ms",
    "idle_get_p99_ms": "latency.idle.get.p99_ms",
    "flood_list_p50_ms": "latency.flood.list.p50_ms",
    "flood_list_p99_ms": "latency.flood.list.p99_ms",
    "flood_list_max_ms": "latency.flood.list.max_ms",
    "flood_get_p50_ms": "latency.flood.get.p50_ms",
    "flood_get_p99_ms": "latency.flood.get.p99_ms",
    "flood_get_max_ms": "latency.flood.get.max_ms",
    "flood_slow_requests": "latency.flood_slow",
    "client_cpu_pct": "flood.client_cpu_pct",
    "server_cpu_pct": "server.cpu_pct",
    "db_cpu_pct": "server.db_cpu_pct",
    "rss_max_mib": "server.rss_max_mib",
    "total_cpu_pct": "server.total_cpu_pct",
    "cpu_ms_per_msg": "server.cpu_ms_per_msg",
}

#: Reference targets per scenario (measured on the project's 2-CPU CI-class machine).
#: (metric, op, limit, label[, which of the spread is judged: median unless given]).
TARGETS: dict[str, list[tuple[str, str, float, str] | tuple[str, str, float, str, str]]] = {
    "a": [("msgs_per_s", ">=", 1000, "stored msg/s"), ("ratio", ">=", 0.9, "× baseline"),
          ("flood_list_p99_ms", "<=", 50, "list p99 ms during flood"),
          ("flood_max_ms", "<=", SLOW_MS, "slowest request ms during flood (any run)", "max"),
          ("idle_list_p99_ms", "<=", 5, "list p99 ms idle"),
          ("idle_get_p99_ms", "<=", 5, "get p99 ms idle"), ("loss_total", "<=", 0, "lost")],
    "b": [("mib_per_s", ">=", 60, "stored MiB/s"), ("loss_total", "<=", 0, "lost")],
    "c": [("flood_list_p99_ms", "<=", 100, "list p99 ms during flood"),
          ("loss_total", "<=", 0, "lost"), ("raw_mismatched", "<=", 0, "corrupted")],
    "d": [("idle_list_p99_ms", "<=", 10, "list p99 ms idle, big store"),
          ("idle_get_p99_ms", "<=", 10, "get p99 ms idle, big store"),
          ("rss_max_mib", "<=", 250, "server RSS MiB")],
}


def flood_json(result: FloodResult, messages: int, procs: int) -> dict[str, Any]:
    seconds = result.seconds
    accepted = len(result.accepted)
    return {
        "messages": messages, "attempted": result.attempted, "accepted": accepted,
        "failed": dict(sorted(result.failures.items())), "seconds": round(seconds, 3),
        "msgs_per_s": round(accepted / seconds, 1),
        "mib_per_s": round(result.accepted_bytes / seconds / MIB, 2),
        "bytes": result.accepted_bytes,
        "smtp_ms": LatencyStats.of(result.latencies_ms).to_json(),
        "client_cpu_pct": round(100 * result.client_cpu / seconds, 1),
        "client_procs": procs, "connections": result.connections, "aborted": result.aborted,
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {name: spread(dig(run, path) for run in runs)
                               for name, path in SUMMARY_PATHS.items()}
    summary["flood_max_ms"] = spread(
        max((v for v in (dig(r, "latency.flood.list.max_ms"), dig(r, "latency.flood.get.max_ms"))
             if v is not None), default=None) for r in runs)
    losses = [dig(r, "verification.loss") for r in runs]
    summary["loss_total"] = sum(v for v in losses if v is not None)
    return summary


def _value(summary: dict[str, Any], name: str, which: str = "median") -> float | None:
    entry = summary.get(name)
    value = entry.get(which) if isinstance(entry, dict) else entry
    return None if value is None else float(value)


def evaluate_targets(scenario: str, summary: dict[str, Any],
                     store: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Each reference target of the scenario with the measured median and whether it is met."""
    merged = dict(summary)
    if store is not None:  # the big-store scenario judges its idle latency on the store
        for kind in ("list", "get"):
            merged[f"idle_{kind}_p99_ms"] = dig(store, f"latency_idle.{kind}.p99_ms")
        merged["rss_max_mib"] = dig(store, "server_overall.rss_max_mib") or _value(
            summary, "rss_max_mib")
    out = []
    for name, op, limit, label, *which in TARGETS.get(scenario, []):
        value = _value(merged, name, which[0] if which else "median")
        met = None if value is None else (value >= limit if op == ">=" else value <= limit)
        out.append({"metric": name, "label": label, "op": op, "limit": limit,
                    "value": value, "met": met})
    return out


# -- terminal output ---------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and abs(value) >= 1000:
        return f"{value:,.0f}"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if value < 100 else f"{value:.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


ROWS = [
    ("stored msg/s", "msgs_per_s"), ("stored MiB/s", "mib_per_s"),
    ("baseline msg/s (bare aiosmtpd)", "baseline_msgs_per_s"),
    ("baseline MiB/s", "baseline_mib_per_s"), ("ratio to baseline", "ratio"),
    ("SMTP transaction p50 ms", "smtp_p50_ms"), ("SMTP transaction p99 ms", "smtp_p99_ms"),
    ("list-inbox p50 ms, idle", "idle_list_p50_ms"),
    ("list-inbox p99 ms, idle", "idle_list_p99_ms"),
    ("get-message p50 ms, idle", "idle_get_p50_ms"),
    ("get-message p99 ms, idle", "idle_get_p99_ms"),
    ("list-inbox p50 ms, flood", "flood_list_p50_ms"),
    ("list-inbox p99 ms, flood", "flood_list_p99_ms"),
    ("list-inbox max ms, flood", "flood_list_max_ms"),
    ("get-message p50 ms, flood", "flood_get_p50_ms"),
    ("get-message p99 ms, flood", "flood_get_p99_ms"),
    ("get-message max ms, flood", "flood_get_max_ms"),
    (f"requests > {SLOW_MS:.0f} ms, flood", "flood_slow_requests"),
    ("client CPU % (of one core)", "client_cpu_pct"), ("server CPU %", "server_cpu_pct"),
    ("child processes CPU % (analysis workers, PostgreSQL)", "db_cpu_pct"),
    ("server RSS max MiB", "rss_max_mib"),
    ("all server processes CPU %", "total_cpu_pct"),
    ("server CPU ms per message", "cpu_ms_per_msg"),
]


def render(report: dict[str, Any]) -> str:
    if "comparison" in report:
        return render_processes(report)
    s = report["scenario"]
    t = report["target"]
    processes = f" — {report['processes']} process(es)" if "processes" in report else ""
    lines = [
        f"mailsac bench — scenario {s['name']}: {s['title']}{processes}",
        f"  {s['messages']:,} messages ({s['sizes']}) over {s['sessions']} sessions, "
        f"{report['runs_requested']} run(s); target: {t['description']}",
    ]
    host = report.get("host") or {}
    if host.get("loadavg_start") is not None:
        lines.append(f"  host: {host.get('cpus')} CPUs, load average {host['loadavg_start'][0]} "
                     f"at start, {(host.get('loadavg_end') or ['-'])[0]} at end")
    store = report.get("store")
    if store:
        seed = store["seed"]
        lines.append(f"  store: {seed['rows']:,} rows seeded in {seed['seconds']} s "
                     f"({_fmt(seed['rows_per_s'])} rows/s) over {seed['inboxes']:,} inboxes")
        for kind in ("list", "get"):
            lat = store["latency_idle"][kind]
            lines.append(f"  {kind} on the store, idle: p50 {_fmt(lat['p50_ms'], 2)} ms, "
                         f"p99 {_fmt(lat['p99_ms'], 2)} ms, max {_fmt(lat['max_ms'], 2)} ms "
                         f"({lat['count']} requests, {lat['errors']} errors)")
    summary = report["summary"]
    lines += ["", f"  {'metric':<34}{'median':>11}{'min':>11}{'max':>11}"]
    for label, name in ROWS:
        entry = summary.get(name) or {}
        if entry.get("median") is None:
            continue
        lines.append(f"  {label:<34}{_fmt(entry['median'], 2):>11}"
                     f"{_fmt(entry['min'], 2):>11}{_fmt(entry['max'], 2):>11}")
    lines.append(f"  {'lost (250 but not retrievable)':<34}{summary['loss_total']:>11}")
    overall = report.get("server_overall")
    if overall:
        lines.append(f"  server RSS over the whole bench: start {_fmt(overall['rss_start_mib'])} "
                     f"MiB, max {_fmt(overall['rss_max_mib'])} MiB, "
                     f"end {_fmt(overall['rss_end_mib'])} MiB")
    failed: dict[str, int] = {}
    for run in report["runs"]:
        for reason, n in run["flood"]["failed"].items():
            failed[reason] = failed.get(reason, 0) + n
    if failed:
        lines.append(f"  not accepted: {failed}")
    if report["targets"]:
        lines += ["", "  reference targets (this project's 2-CPU machine):"]
        for tg in report["targets"]:
            state = {True: "met ", False: "MISS", None: "n/a "}[tg["met"]]
            lines.append(f"    [{state}] {tg['label']} {tg['op']} {_fmt(float(tg['limit']))}: "
                         f"{_fmt(tg['value'], 2)}")
    return "\n".join(lines)


def render_processes(report: dict[str, Any]) -> str:
    """``--processes N``: each side's table, then the comparison."""
    parts = [render(report["reports"][str(n)]) for n in report["processes"]]
    c = report["comparison"]
    lines = ["", f"  {'processes':<34}" + "".join(f"{n:>11}" for n in report["processes"])]
    for label, name in (("stored msg/s (median)", "msgs_per_s"),
                        ("server CPU ms per message", "cpu_ms_per_msg"),
                        ("all server processes CPU %", "total_cpu_pct"),
                        ("client CPU % (of one core)", "client_cpu_pct")):
        lines.append(f"  {label:<34}" + "".join(
            f"{_fmt(c[name][str(n)], 2):>11}" for n in report["processes"]))
    n = report["processes"][-1]
    lines.append(f"  ratio msg/s, {n} / 1 process: {_fmt(c['ratio'], 3)}")
    return "\n\n".join(parts) + "\n" + "\n".join(lines)


class Progress:
    """A one-line progress display on a TTY (``\\r`` redraws); silent otherwise."""

    def __init__(self, stream: TextIO | None = None, enabled: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._width = 0
        self._last = 0.0

    def bar(self, label: str, done: int, total: int, started: float) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self._last < 0.1 and done < total):
            return
        self._last = now
        frac = min(1.0, done / total) if total else 1.0
        filled = int(frac * 30)
        rate = done / max(1e-9, now - started)
        self.line(f"{label} [{'#' * filled}{'.' * (30 - filled)}] {done:,}/{total:,} "
                  f"{rate:,.0f}/s")

    def line(self, text: str) -> None:
        if not self.enabled:
            return
        pad = max(0, self._width - len(text))
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()
        self._width = len(text)

    def done(self, text: str | None = None) -> None:
        """Finish the current line (keep ``text`` on screen, or clear it)."""
        if not self.enabled:
            return
        if text is None:
            self.stream.write("\r" + " " * self._width + "\r")
        else:
            self.line(text)
            self.stream.write("\n")
        self.stream.flush()
        self._width = 0
