"""``GET /metrics``: Prometheus text format (prometheus-client), read at scrape time.

Label cardinality is bounded by construction: labels carry only limit names, rejection
reasons (exception class names), outcomes and states — never a sender, domain, address or
IP. The heaviest senders are available from ``GET /api/admin/top-offenders`` instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response


class ServiceCollector(Collector):
    """Turns the service's plain counters into metric families on each scrape."""

    def __init__(self, source: Callable[[], dict[str, Any]]) -> None:
        self._source = source

    def collect(self) -> Iterator[Any]:
        s = self._source()
        yield CounterMetricFamily("mailsac_messages_accepted", "Messages stored (250)",
                                  value=s["accepted"])
        rejected = CounterMetricFamily("mailsac_messages_rejected",
                                       "Messages or commands refused, by reason", labels=["reason"])
        for reason, count in sorted(s["rejections"].items()):
            rejected.add_metric([reason], count)
        yield rejected
        yield CounterMetricFamily("mailsac_bytes_received", "DATA bytes received",
                                  value=s["bytes_received"])
        sessions = GaugeMetricFamily("mailsac_smtp_sessions", "SMTP sessions", labels=["state"])
        sessions.add_metric(["active"], s["sessions_active"])
        sessions.add_metric(["waiting"], s["sessions_waiting"])
        yield sessions
        yield CounterMetricFamily("mailsac_smtp_connections_refused",
                                  "Connections refused after waiting for a slot",
                                  value=s["sessions_refused"])
        decisions = CounterMetricFamily("mailsac_throttle_decisions",
                                        "Rate-limit decisions by limit name",
                                        labels=["limit", "decision"])
        for name, counts in sorted(s["throttle"].items()):
            decisions.add_metric([name, "allowed"], counts["allowed"])
            decisions.add_metric([name, "denied"], counts["denied"])
        yield decisions
        yield GaugeMetricFamily("mailsac_throttle_entries", "Live counter entries",
                                value=s["throttle_entries"])
        yield CounterMetricFamily("mailsac_throttle_evictions",
                                  "Counter entries evicted at the memory cap",
                                  value=s["throttle_evictions"])
        yield from _throttle_sync(s.get("throttle_sync") or {})
        yield GaugeMetricFamily("mailsac_event_loop_lag_seconds", "Last measured loop lag",
                                value=s["loop_lag"])
        yield CounterMetricFamily("mailsac_db_commits", "Metadata group commits",
                                  value=s["db_commits"])
        yield CounterMetricFamily("mailsac_db_commit_seconds", "Time spent in metadata commits",
                                  value=s["db_commit_seconds"])
        yield GaugeMetricFamily("mailsac_writer_queue_depth", "Deliveries waiting to commit",
                                value=s["writer_queue"])
        yield GaugeMetricFamily("mailsac_hub_subscribers", "Hub subscribers",
                                value=s["hub_subscribers"])
        yield CounterMetricFamily("mailsac_hub_dropped_subscribers",
                                  "Subscribers dropped for being too slow", value=s["hub_dropped"])
        passes = CounterMetricFamily("mailsac_retention_passes",
                                     "Retention passes run here, or skipped (another node "
                                     "held the cluster lock)", labels=["outcome"])
        passes.add_metric(["run"], s["retention_passes"])
        passes.add_metric(["skipped"], s["retention_skipped"])
        yield passes
        yield CounterMetricFamily("mailsac_cluster_notifications",
                                  "Message change notifications received from the database",
                                  value=s["cluster_notifications"])
        yield CounterMetricFamily("mailsac_cluster_events_published",
                                  "Other nodes' changes published to this node's hub",
                                  value=s["cluster_published"])
        webhooks = CounterMetricFamily("mailsac_webhook_attempts", "Webhook/Slack attempts",
                                       labels=["outcome"])
        for outcome, count in sorted(s["webhooks"].items()):
            webhooks.add_metric([outcome], count)
        yield webhooks
        smtp_auth = CounterMetricFamily("mailsac_smtp_auth", "SMTP AUTH attempts by outcome",
                                        labels=["outcome"])
        for outcome, count in sorted(s["smtp_auth"].items()):
            smtp_auth.add_metric([outcome], count)
        yield smtp_auth
        yield CounterMetricFamily("mailsac_spam_followed_updates",
                                  "Spam feedback updates learned from other nodes",
                                  value=s["spam_followed"])
        autolearn = CounterMetricFamily("mailsac_spam_autolearn",
                                        "Auto-learning candidates by outcome",
                                        labels=["outcome"])
        for outcome, count in sorted(s["spam_autolearn"].items()):
            autolearn.add_metric([outcome], count)
        yield autolearn
        yield GaugeMetricFamily("mailsac_parsed_cache_bytes", "Parsed-message cache size",
                                value=s["cache_bytes"])
        yield GaugeMetricFamily("mailsac_render_cache_bytes", "Body-rendering cache size",
                                value=s["render_cache_bytes"])
        yield GaugeMetricFamily("mailsac_smtp_data_memory_bytes",
                                "In-flight SMTP DATA held in memory (MAILSAC_DATA_MEMORY_BUDGET)",
                                value=s["data_memory_used"])
        yield CounterMetricFamily("mailsac_smtp_data_memory_refused",
                                  "DATA commands refused (451 4.3.1) for lack of memory budget",
                                  value=s["data_memory_refused"])
        yield GaugeMetricFamily("mailsac_http_connections", "Open HTTP connections",
                                value=s["http_connections"])
        yield CounterMetricFamily("mailsac_http_connections_refused",
                                  "HTTP connections refused (503) at a connection cap",
                                  value=s["http_refused"])
        yield CounterMetricFamily("mailsac_http_header_timeouts",
                                  "HTTP connections closed for not sending headers in time",
                                  value=s["http_header_timeouts"])
        yield CounterMetricFamily("mailsac_http_oversized_heads",
                                  "HTTP connections closed (431) for a request head over 64 KiB",
                                  value=s["http_oversized_heads"])
        yield GaugeMetricFamily("mailsac_database_available",
                                "1 while the database liveness probe gets answers",
                                value=int(s["db_available"]))
        yield from _chaos(s.get("chaos") or {})


def _chaos(chaos: dict[str, Any]) -> Iterator[Any]:
    """SMTP failure injection (mailsac.chaos): labels are scope, stage and action names."""
    injected = CounterMetricFamily("mailsac_chaos_injected", "Failures injected by chaos "
                                   "rules", labels=["scope", "stage", "action"])
    for (scope, stage, action), count in sorted(chaos.get("injected", {}).items()):
        injected.add_metric([scope, stage, action], count)
    yield injected
    yield GaugeMetricFamily("mailsac_chaos_rules", "Live chaos rules known to this node",
                            value=chaos.get("rules", 0))
    yield CounterMetricFamily("mailsac_chaos_skipped", "Chaos firings skipped: the database "
                              "could not count one of a rule's times", value=chaos.get(
                                  "unavailable", 0))


def _throttle_sync(sync: dict[str, Any]) -> Iterator[Any]:
    """Throttle counts shared with the cluster (nothing when sharing is off)."""
    if not sync:
        return
    syncs = CounterMetricFamily("mailsac_throttle_sync", "Exchanges of throttle counts with "
                                "the cluster's other nodes", labels=["outcome"])
    syncs.add_metric(["ok"], sync["ok"])
    syncs.add_metric(["failed"], sync["failed"])
    yield syncs
    rows = CounterMetricFamily("mailsac_throttle_sync_rows", "Shared throttle rows",
                               labels=["direction"])
    rows.add_metric(["written"], sync["rows_written"])
    rows.add_metric(["read"], sync["rows_read"])
    yield rows
    yield CounterMetricFamily("mailsac_throttle_sync_seconds", "Time spent syncing counts",
                              value=sync["seconds"])
    yield CounterMetricFamily("mailsac_throttle_sync_untallied",
                              "Events not shared: too many distinct keys in one bucket",
                              value=sync["untallied"])
    yield GaugeMetricFamily("mailsac_throttle_shared_available", "1 while the other nodes' "
                            "counts are current (0: limiting on local counts only)",
                            value=int(sync["available"]))
    remote = GaugeMetricFamily("mailsac_throttle_shared_remote", "Events the other nodes "
                               "counted in the window, all keys, by limit", labels=["limit"])
    for name, count in sorted(sync["remote"].items()):
        remote.add_metric([name], count)
    yield remote


async def metrics(request: Request) -> Response:
    """Prometheus scrape endpoint (no key: it holds no per-user data)."""
    registry: CollectorRegistry | None = getattr(request.app.state, "metrics_registry", None)
    if registry is None:
        registry = CollectorRegistry(auto_describe=True)
        registry.register(ServiceCollector(request.app.state.ctx.metrics))
        request.app.state.metrics_registry = registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
