"""A node dies mid-flood: nothing it acknowledged is lost, on every shared blob store.

Three nodes share the session's PostgreSQL and one blob store (each backend in turn). A
flood goes to node A; A is SIGKILLed while it runs; every message A answered ``250`` must
then be readable, exactly once and byte-intact, through node B."""

from __future__ import annotations

import signal

from tests.cluster.conftest import StartCluster
from tests.flood import Flood, reconcile
from tests.helpers import unique_inbox

# Public inboxes keep 6 messages by default, and the flood comes from one address.
FLOOD = {"MAILSAC_PUBLIC_INBOX_LIMIT": "100000",
         "MAILSAC_LIMITS": "rcpt_public=0,ip=0,network=0,sender_org=0"}


def test_sigkill_of_a_node_mid_flood_loses_nothing_it_acknowledged(
        cluster: StartCluster, shared_store: dict[str, str]) -> None:
    a, b, _ = cluster(3, {**FLOOD, **shared_store})
    inbox = unique_inbox("failover.test")
    with Flood(a, inbox) as flood:
        flood.wait_for_acks(40)
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(30)
    assert len(flood.acked) >= 40
    assert reconcile(b, inbox, flood.acked) >= len(flood.acked)
