"""A bare aiosmtpd server that accepts and discards everything: the yardstick.

It runs unthreaded on its own asyncio loop in a subprocess (``python -m
mailsac.bench.baseline``), like mailsac's listener, with stock aiosmtpd (line-by-line DATA)
and ``PIPELINING`` advertised so the client speaks the same protocol to both servers. What
mailsac does on top (parsing, spam scoring, fsync of the blob, the metadata commit) is
exactly what the throughput ratio measures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from aiosmtpd.smtp import SMTP, Envelope, Session

from mailsac.childproc import terminate


class DiscardHandler:
    """aiosmtpd hooks: advertise PIPELINING, answer 250 to DATA, keep nothing."""

    def __init__(self) -> None:
        self.accepted = 0

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname
        return responses[:-1] + ["250-PIPELINING"] + responses[-1:]

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.accepted += 1
        return "250 2.0.0 OK: discarded"


async def serve(host: str, port: int, ready: Path | None, max_size: int) -> None:
    loop = asyncio.get_running_loop()
    handler = DiscardHandler()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="baseline.bench.test", data_size_limit=max_size,
                     enable_SMTPUTF8=True, decode_data=False, loop=loop),
        host=host, port=port, reuse_address=True)
    bound = int(server.sockets[0].getsockname()[1])
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    if ready is not None:
        tmp = ready.with_suffix(".tmp")
        tmp.write_text(json.dumps({"smtp_port": bound}))
        tmp.replace(ready)
    await stopping.wait()
    server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="bare aiosmtpd accept-and-discard server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ready", type=Path, default=None, help="write {smtp_port} here")
    parser.add_argument("--max-size", type=int, default=64 * 1024 * 1024)
    args = parser.parse_args(argv)
    import logging

    logging.getLogger("mail.log").setLevel(logging.WARNING)
    asyncio.run(serve(args.host, args.port, args.ready, args.max_size))
    return 0


class BaselineServer:
    """``with BaselineServer() as b: b.port`` — the discard server in a subprocess."""

    def __init__(self, host: str = "127.0.0.1", max_size: int = 64 * 1024 * 1024) -> None:
        self.host = host
        self.max_size = max_size
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="mailsac-bench-baseline-")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self, timeout: float = 30.0) -> None:
        ready = Path(self._dir.name) / "ready.json"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mailsac.bench.baseline", "--host", self.host,
             "--port", "0", "--ready", str(ready), "--max-size", str(self.max_size)],
            stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"baseline server exited with {self.proc.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError("baseline server did not start")
            time.sleep(0.02)
        self.port = int(json.loads(ready.read_text())["smtp_port"])

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc, 10)
        self._dir.cleanup()

    def __enter__(self) -> BaselineServer:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


if __name__ == "__main__":
    sys.exit(main())
