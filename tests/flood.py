"""A flood of SMTP senders that records exactly which messages got 250, and the exact
reconciliation of what was acknowledged against what the API returns (fault tests)."""

from __future__ import annotations

import smtplib
import threading
import time
import uuid

from tests.helpers import ServerHandle, client, make_message


class Flood:
    """Senders in threads that record exactly which messages got 250 (and which did not)."""

    def __init__(self, server: ServerHandle, inbox: str, threads: int = 4) -> None:
        self.server = server
        self.inbox = inbox
        self.acked: dict[str, bytes] = {}
        self.replies: list[int] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.workers = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        while not self.stop.is_set():
            token = uuid.uuid4().hex
            raw = make_message(self.inbox, subject=f"flood {token}", body=f"body {token}\n")
            try:
                with smtplib.SMTP("127.0.0.1", self.server.smtp_port, timeout=30) as smtp:
                    code, _ = smtp.ehlo()
                    smtp.mail("flood@example.org")
                    smtp.rcpt(self.inbox)
                    code, _ = smtp.data(raw)
            except smtplib.SMTPResponseException as exc:  # a refusal: record its code
                with self.lock:
                    self.replies.append(exc.smtp_code)
                time.sleep(0.05)
                continue
            except (OSError, smtplib.SMTPException):
                time.sleep(0.05)
                continue
            with self.lock:
                self.replies.append(code)
                if code == 250:
                    self.acked[token] = raw

    def __enter__(self) -> Flood:
        for worker in self.workers:
            worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for worker in self.workers:
            worker.join(60)

    def wait_for_acks(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.acked) >= count, f"only {len(self.acked)} acknowledged"


def reconcile(server: ServerHandle, inbox: str, acked: dict[str, bytes]) -> int:
    """Every acknowledged message present exactly once and byte-intact; returns how many
    messages are stored in total (acked, plus any committed whose 250 was lost)."""
    with client(server, server.key) as api:
        stored = api.get(f"/api/addresses/{inbox}/messages", params={"limit": 1000}).json()
        tokens = [m["subject"].removeprefix("flood ") for m in stored]
        assert len(tokens) == len(set(tokens)), "a message was stored twice"
        missing = set(acked) - set(tokens)
        assert not missing, f"{len(missing)} acknowledged message(s) lost"
        for message in stored:
            token = message["subject"].removeprefix("flood ")
            raw = api.get(f"/api/raw/{inbox}/{message['_id']}")
            assert raw.status_code == 200
            if token in acked:
                assert raw.content.endswith(acked[token]), "a message is not intact"
    print(f"reconciled {inbox}: {len(acked)} acknowledged, {len(stored)} stored, 0 lost, "
          "0 duplicated")
    return len(stored)
