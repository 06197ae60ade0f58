"""A throw-away S3 API server on loopback (moto's standalone server) for the ``s3`` blob
backend in benchmarks (``bench --blob-backend s3``) and tests.

moto comes with the test extras (``pip install -e '.[test]'``); it keeps objects in memory,
so it measures our client path, not a real object store's disks.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalS3:
    """``python -m moto.server`` on 127.0.0.1 with one bucket (:meth:`start`/:meth:`stop`)."""

    bucket: str = "mailsac-blobs"
    port: int = 0
    log_path: Path | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, prefix: str = "") -> dict[str, str]:
        """The MAILSAC_* settings of a server storing its blobs here."""
        return {
            "MAILSAC_BLOB_BACKEND": "s3",
            "MAILSAC_S3_ENDPOINT_URL": self.endpoint_url,
            "MAILSAC_S3_BUCKET": self.bucket,
            "MAILSAC_S3_REGION": "us-east-1",
            "MAILSAC_S3_ACCESS_KEY_ID": "testing",
            "MAILSAC_S3_SECRET_ACCESS_KEY": "testing",
            "MAILSAC_S3_PATH_STYLE": "true",
            "MAILSAC_S3_PREFIX": prefix,
        }

    def start(self, timeout: float = 60.0) -> None:
        self.port = self.port or free_port()
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        finally:
            if not isinstance(out, int):
                out.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto server exited with {self.proc.returncode}")
            try:
                # moto does not check signatures: a plain PUT creates the bucket.
                response = httpx.put(f"{self.endpoint_url}/{self.bucket}", timeout=5)
                if response.status_code < 300 or b"BucketAlready" in response.content:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError("moto server did not start in time")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
