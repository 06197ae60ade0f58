"""``python -m mailsac bench``: argument parsing and the entry point.

Wire-up: ``register(subparsers)`` adds the ``bench`` command; it sets
``args.handler(args) -> int`` and needs no settings or database of its own.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import socket
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mailsac.bench.scenarios import ALIASES, SCENARIOS, Scenario, get_scenario

__all__ = ["handler", "options_from_args", "register"]

EPILOG = """scenarios:
""" + "\n".join(f"  {name:<6} {s.title}" for name, s in SCENARIOS.items()) + f"""
  (aliases: {", ".join(f"{k}={v}" for k, v in ALIASES.items())})

The target should run with generous limits, or the rate limiter is what gets measured:
  MAILSAC_LIMITS=ip=0,network=0,sender_org=0,reply_to_org=0,rcpt_public=0,rcpt_private=0,\
ip_connections=0
  MAILSAC_PUBLIC_INBOX_LIMIT=1000000   (0 disables a limit; --spawn sets all of this)
"""


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``bench`` to ``subparsers`` (from ``ArgumentParser.add_subparsers()``)."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "bench", help="load-test a mailsac deployment (SMTP flood + API latency)",
        description="Flood a mailsac server over SMTP while probing its HTTP API; check "
        "that every accepted message is retrievable; report throughput, latency and RSS.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", default="a", metavar="NAME",
                   help="preset: a, b, c, d, mix, smoke (default: a)")
    g = p.add_argument_group("workload (override the preset)")
    g.add_argument("--messages", type=_positive, help="messages per run")
    g.add_argument("--sessions", type=_positive, help="parallel SMTP sessions")
    g.add_argument("--sizes", help="size mix, e.g. 4k or '4k:70,64k:25,1m:5'")
    g.add_argument("--attachments", type=float, help="share of messages with an attachment")
    g.add_argument("--per-session", type=_positive, help="messages per SMTP connection")
    g.add_argument("--seed-messages", type=int, help="rows to bulk-load first (big store)")
    g.add_argument("--raw-check", type=int, help="messages to compare byte for byte")
    t = p.add_argument_group("target")
    t.add_argument("--spawn", action="store_true",
                   help="start a fresh local `python -m mailsac serve` and stop it at the end")
    t.add_argument("--url", help="HTTP API base URL, e.g. http://127.0.0.1:8080")
    t.add_argument("--smtp", type=_host_port, help="SMTP HOST:PORT, e.g. 127.0.0.1:2525")
    t.add_argument("--key", help="an API key of the target")
    t.add_argument("--pid", type=int, help="the target server's pid (for RSS/CPU sampling)")
    t.add_argument("--database-url", help="the target's PostgreSQL (only to seed a store)")
    t.add_argument("--data-dir", type=Path, help="the target's data dir (only to seed a store)")
    t.add_argument("--allow-remote", action="store_true",
                   help="allow a target that is not on this machine's loopback")
    t.add_argument("--server-env", type=_env_pair, action="append", default=[],
                   metavar="NAME=VALUE", help="extra environment for --spawn (repeatable)")
    t.add_argument("--keep", action="store_true", help="keep the spawned server's data dir")
    t.add_argument("--blob-backend", choices=("local", "postgres", "s3"), default="local",
                   help="blob store of the spawned servers (s3: a moto server started for "
                        "the run; needs the test extras)")
    t.add_argument("--processes", type=_positive, default=1, metavar="N",
                   help="with --spawn and N > 1: run the scenario against 1 and against N "
                   "processes (serve --processes N), alternating, and report the ratio")
    t.add_argument("--cluster", type=_positive, default=1, metavar="N",
                   help="N > 1: start N nodes on one database and report cross-node "
                   "notification latency (commit on the first, frame on the last; "
                   "mailsac.bench.cluster) instead of a scenario")
    r = p.add_argument_group("run")
    r.add_argument("--runs", type=_positive, default=1, help="repeat; report medians")
    r.add_argument("--starttls", action="store_true",
                   help="every SMTP session upgrades with STARTTLS first (with --per-session 1: "
                   "one TLS handshake per message)")
    r.add_argument("--baseline", action="store_true",
                   help="also flood a bare aiosmtpd discard server and report the ratio")
    r.add_argument("--compare", choices=("maildev",),
                   help="maildev: also measure MailDev (npm install into ~/.cache/mailsac-bench "
                   "on first use) in the same runs, alternating, and report the ratios "
                   "(mailsac.bench.compare)")
    r.add_argument("--maildev-version", default=None, metavar="VERSION",
                   help="the MailDev release --compare installs (default: the pinned one)")
    r.add_argument("--client-procs", type=_positive, default=1,
                   help="client processes sharing the sessions (default 1)")
    r.add_argument("--client-loop", choices=("auto", "asyncio", "uvloop"), default="auto")
    r.add_argument("--idle-requests", type=_positive, default=200,
                   help="idle-probe requests per endpoint per run (list and get)")
    r.add_argument("--probe-rate", type=float, default=10.0,
                   help="open-loop probe: requests per second per endpoint (default 10)")
    r.add_argument("--max-seconds", type=float, default=900.0,
                   help="stop sending after this long (per flood)")
    r.add_argument("--seed", type=int, default=0, help="workload seed")
    o = p.add_argument_group("output")
    o.add_argument("--json", action="store_true", help="print the JSON report on stdout")
    o.add_argument("--out", type=Path, help="also write the JSON report to this file")
    o.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=handler)
    return p


def _is_loopback(host: str) -> bool:
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def options_from_args(args: argparse.Namespace) -> Any:
    """Validate ``args`` and build :class:`mailsac.bench.runner.Options` (ValueError if bad)."""
    from mailsac.bench.runner import Options
    from mailsac.bench.workload import SizeMix

    base = get_scenario(args.scenario)
    overrides = {name: getattr(args, name) for name in
                 ("messages", "sessions", "sizes", "attachments", "per_session",
                  "seed_messages", "raw_check") if getattr(args, name) is not None}
    scenario = Scenario(**{**base.__dict__, **overrides})
    SizeMix.parse(scenario.sizes)  # raises ValueError with a readable message
    if not 0 <= scenario.attachments <= 1:
        raise ValueError("--attachments must be between 0 and 1")
    opts = Options(scenario=scenario, runs=args.runs, baseline=args.baseline, spawn=args.spawn,
                   client_procs=args.client_procs, client_loop=args.client_loop,
                   idle_requests=args.idle_requests, probe_rate=args.probe_rate,
                   max_seconds=args.max_seconds, seed=args.seed, keep=args.keep,
                   server_env=dict(args.server_env), starttls=args.starttls)
    if args.starttls and args.baseline:
        raise ValueError("--starttls: the bare aiosmtpd baseline has no TLS; drop --baseline "
                         "(benchmarks/tls_bench.py compares with and without TLS)")
    if args.processes > 1 and not args.spawn:
        raise ValueError("--processes compares spawned servers: add --spawn")
    if getattr(args, "compare", None) and (args.processes > 1 or scenario.seed_messages):
        raise ValueError("--compare runs one server against MailDev: no --processes, and no "
                         "seeded store (MailDev keeps mail in memory)")
    if args.blob_backend != "local":
        if not args.spawn:
            raise ValueError("--blob-backend configures spawned servers: add --spawn")
        opts.server_env.setdefault("MAILSAC_BLOB_BACKEND", args.blob_backend)
    if args.spawn:
        if args.url or args.smtp or args.key:
            raise ValueError("--spawn starts its own server: drop --url/--smtp/--key")
        return opts
    if not (args.url and args.smtp and args.key):
        raise ValueError("give --spawn, or all of --url, --smtp and --key")
    opts.url, (opts.smtp_host, opts.smtp_port), opts.key = args.url, args.smtp, args.key
    opts.pid, opts.database_url, opts.data_dir = args.pid, args.database_url or "", args.data_dir
    hosts = {opts.smtp_host, urlsplit(args.url).hostname or ""}
    if not args.allow_remote and not all(_is_loopback(h) for h in hosts):
        raise ValueError(f"{', '.join(sorted(hosts))} is not loopback; pass --allow-remote "
                         "to load-test another machine")
    if scenario.seed_messages and not (opts.database_url and opts.data_dir):
        raise ValueError("seeding a store needs --database-url and --data-dir (or --spawn)")
    return opts


def handler(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import os
    import signal

    from mailsac.bench.report import Progress, render
    from mailsac.bench.runner import run_bench, run_processes

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.cluster > 1:
        from mailsac.bench.cluster import run_cluster

        report = asyncio.run(run_cluster(args.cluster, keep=args.keep,
                                         server_env=dict(args.server_env)))
        print(json.dumps(report, indent=2))
        if args.out:
            Path(args.out).write_text(json.dumps(report, indent=2))
        return 0
    try:
        opts = options_from_args(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ui = Progress(enabled=False if args.no_progress else None)
    # SIGTERM stops the run like Ctrl-C does: the spawned servers are stopped, not orphaned.
    signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGINT))
    s3 = None
    try:
        if opts.server_env.get("MAILSAC_BLOB_BACKEND") == "s3" and args.blob_backend == "s3":
            from mailsac.bench.s3local import LocalS3

            s3 = LocalS3()
            s3.start()
            opts.server_env = {**s3.env(), **opts.server_env}
        if args.compare == "maildev":
            from mailsac.bench.compare import run_compare
            from mailsac.bench.maildev import MAILDEV_VERSION

            report = asyncio.run(run_compare(opts, ui, args.maildev_version or MAILDEV_VERSION))
        elif args.processes > 1:
            report = asyncio.run(run_processes(opts, ui, args.processes))
        else:
            report = asyncio.run(run_bench(opts, ui))
    except KeyboardInterrupt:
        return 130
    except (RuntimeError, TimeoutError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if s3 is not None:
            s3.stop()
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    if not args.json and args.compare:
        from mailsac.bench.compare import render_compare

        print(render_compare(report))
    else:
        print(text if args.json else render(report))
    lost = report["summary"]["loss_total"]
    return 1 if lost else 0
