"""What a TLS handshake costs per SMTP connection: the same flood with and without STARTTLS.

One freshly spawned server (``python -m mailsac serve`` with the generated certificate and
the benchmark's generous limits); floods of ``--messages`` 4 KiB messages over
``--sessions`` parallel sessions, alternating plain and STARTTLS ``--runs`` times each (so
both modes see the same machine state), for every ``--per-session`` value (1 = a new
connection, hence a handshake, per message). The flood runs in a child process
(:class:`mailsac.bench.smtp_load.FloodProcess`). Reported per mode: median messages/s
(min-max), server CPU per message (the main process, from /proc), client CPU per message,
and the TLS/plain throughput ratio; the difference in server CPU per message at
``per_session=1`` is what one TLS connection costs the server (the handshake plus the
STARTTLS command and the second EHLO it takes).

Usage: ``python benchmarks/tls_bench.py [--runs 3] [--messages 2000] [--sessions 20]
[--per-session 1 20] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mailsac.bench.smtp_load import FloodConfig, FloodProcess  # noqa: E402
from mailsac.bench.spawn import SpawnedServer, cpu_seconds  # noqa: E402
from mailsac.bench.workload import SizeMix, Workload  # noqa: E402


async def flood(server: SpawnedServer, run_id: str, args: argparse.Namespace,
                per_session: int, starttls: bool) -> dict[str, float]:
    workload = Workload(run_id, args.messages, SizeMix.parse("4k"), attachment_ratio=0.0)
    config = FloodConfig("127.0.0.1", server.smtp_port, args.sessions, workload,
                         per_session=per_session, starttls=starttls)
    process = FloodProcess(config)
    try:
        await process.start()
        before = cpu_seconds(server.pid)
        process.go()
        result = await process.result()
        after = cpu_seconds(server.pid)
    finally:
        process.kill()
    if result.failures or len(result.accepted) != args.messages:
        raise RuntimeError(f"{run_id}: {len(result.accepted)} accepted, {result.failures}")
    n = len(result.accepted)
    return {"msgs_per_s": n / result.seconds,
            "server_cpu_ms": (after[0] - before[0]) * 1000 / n,
            "server_all_cpu_ms": (after[0] + after[1] - before[0] - before[1]) * 1000 / n,
            "client_cpu_ms": result.client_cpu * 1000 / n,
            "connections": result.connections}


def summary(runs: list[dict[str, float]]) -> dict[str, Any]:
    rates = [r["msgs_per_s"] for r in runs]
    return {"msgs_per_s": statistics.median(rates), "min": min(rates), "max": max(rates),
            "server_cpu_ms": statistics.median(r["server_cpu_ms"] for r in runs),
            "server_all_cpu_ms": statistics.median(r["server_all_cpu_ms"] for r in runs),
            "client_cpu_ms": statistics.median(r["client_cpu_ms"] for r in runs),
            "connections": runs[0]["connections"], "runs": runs}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    server = SpawnedServer()
    server.start()
    report: dict[str, Any] = {"messages": args.messages, "sessions": args.sessions,
                              "results": {}}
    try:
        for per_session in args.per_session:
            modes: dict[str, list[dict[str, float]]] = {"plain": [], "starttls": []}
            for k in range(args.runs):
                order = ["plain", "starttls"] if k % 2 == 0 else ["starttls", "plain"]
                for mode in order:
                    run_id = f"t{per_session}{mode[0]}{k}"
                    modes[mode].append(await flood(server, run_id, args, per_session,
                                                   mode == "starttls"))
                    print(f"per_session={per_session} {mode:8} run {k + 1}: "
                          f"{modes[mode][-1]['msgs_per_s']:.0f} msg/s", file=sys.stderr)
            plain, tls = summary(modes["plain"]), summary(modes["starttls"])
            report["results"][str(per_session)] = {
                "plain": plain, "starttls": tls,
                "ratio": tls["msgs_per_s"] / plain["msgs_per_s"],
                "ratios": [t["msgs_per_s"] / p["msgs_per_s"]
                           for p, t in zip(modes["plain"], modes["starttls"], strict=True)],
                "handshake_server_cpu_ms": tls["server_cpu_ms"] - plain["server_cpu_ms"]}
    finally:
        server.stop()
    return report


def render(report: dict[str, Any]) -> str:
    lines = [f"{report['messages']} x 4 KiB over {report['sessions']} sessions; medians "
             "(min-max); CPU in ms per message",
             "msgs/conn  mode       msg/s              server CPU  (+workers/PG)  client CPU",
             ]
    for per_session, r in report["results"].items():
        for mode in ("plain", "starttls"):
            m = r[mode]
            lines.append(f"{per_session:>9}  {mode:<9} {m['msgs_per_s']:6.0f} "
                         f"({m['min']:.0f}-{m['max']:.0f})   {m['server_cpu_ms']:8.2f}  "
                         f"({m['server_all_cpu_ms']:6.2f})        {m['client_cpu_ms']:6.2f}")
        extra = r["handshake_server_cpu_ms"]
        cost = (f"server CPU per connection (handshake, STARTTLS and the second EHLO) "
                f"+{extra:.2f} ms" if per_session == "1" else
                f"server CPU per message (handshake shared by {per_session}) +{extra:.2f} ms")
        lines.append(f"{'':>9}  ratio starttls/plain {r['ratio']:.2f} (per run "
                     f"{', '.join(f'{x:.2f}' for x in r['ratios'])}); {cost}")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--per-session", type=int, nargs="+", default=[1, 20])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    out = asyncio.run(main(args))
    print(json.dumps(out, indent=2) if args.json else render(out))
