"""Prometheus metrics: what keymint counts, and how one process or many server workers expose it.

Single process: metrics live in this module's registry. Under `keymint serve`,
`enable_multiprocess()` (called by the main process before it forks the workers) switches
prometheus_client to its multiprocess mode, so every worker writes to files in
PROMETHEUS_MULTIPROC_DIR and a scrape of any worker sums them all.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prom_multiprocess
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import event
from sqlalchemy.orm import Session

from app.services import token_counts, webhooks

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """Every metric keymint exports, registered in one registry."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        labels = ("endpoint", "method", "status")
        self.requests = Counter("keymint_http_requests", "HTTP requests answered.", labels,
                                registry=registry)
        self.latency = Histogram("keymint_http_request_duration_seconds",
                                 "Time to answer an HTTP request.", labels,
                                 buckets=LATENCY_BUCKETS, registry=registry)
        self.tokens_issued = Counter("keymint_tokens_issued", "Access tokens issued.",
                                     ("grant",), registry=registry)
        self.tokens_revoked = Counter("keymint_tokens_revoked", "Access tokens revoked.",
                                      ("reason",), registry=registry)
        self.tokens_rotated = Counter("keymint_tokens_rotated",
                                      "Access tokens rotated through /oauth/rotate.",
                                      registry=registry)
        self.auth_failures = Counter("keymint_auth_failures", "Failed authentications.",
                                     ("reason",), registry=registry)
        self.rate_limited = Counter("keymint_rate_limited_requests",
                                    "Requests refused with 429 by a rate limit.",
                                    ("limit", "endpoint"), registry=registry)
        self.rate_limit_alerts = Counter("keymint_rate_limit_alerts",
                                         "Requests over an alert-only threshold (refused "
                                         "nothing), e.g. failed authentications per client_id.",
                                         ("limit",), registry=registry)
        # The labelled children of the request metrics by (endpoint, method, status), so a
        # request skips .labels() (validation and a lock); as bounded as the series are.
        self.request_series: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.legacy_uses = Counter("keymint_legacy_key_uses",
                                   "Requests presenting a legacy API key.", ("outcome",),
                                   registry=registry)
        # Per process; across `serve` workers the highest (any worker in fallback shows 1).
        self.ratelimit_fallback = Gauge(
            "keymint_rate_limit_storage_fallback",
            "1 while rate limits are counted per process because the configured storage "
            "(Redis) is unreachable, else 0.", registry=registry, multiprocess_mode="livemax")
        self.ratelimit_fallbacks = Counter(
            "keymint_rate_limit_storage_fallbacks",
            "Times a process lost its rate-limit storage and fell back to counting in memory.",
            registry=registry)
        # Summed over the live `serve` workers (each has its own pool).
        self.pool_in_use = Gauge("keymint_db_pool_connections_in_use",
                                 "Database connections checked out of the pool now.",
                                 registry=registry, multiprocess_mode="livesum")
        self.pool_overflow = Gauge("keymint_db_pool_overflow",
                                   "Connections open beyond the pool size (pool_size).",
                                   registry=registry, multiprocess_mode="livesum")
        self.pool_capacity = Gauge("keymint_db_pool_capacity",
                                   "Connections the pool may open: pool_size + max_overflow.",
                                   registry=registry, multiprocess_mode="livesum")
        self.pool_waits = Counter("keymint_db_pool_waits",
                                  "Checkouts that found every connection in use and waited.",
                                  registry=registry)
        self.pool_timeouts = Counter("keymint_db_pool_timeouts",
                                     "Checkouts that waited pool_timeout in vain.",
                                     registry=registry)


REGISTRY = CollectorRegistry(auto_describe=True)
METRICS = Metrics(REGISTRY)


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def enable_multiprocess(directory: str) -> None:
    """Switch this process (and the workers it forks) to prometheus multiprocess mode.

    prometheus_client picks its value store when it is imported; keymint's metrics already
    exist by the time `serve` runs, so the store is switched and the metrics re-created.
    """
    global METRICS, REGISTRY
    from prometheus_client import values

    os.environ[MULTIPROC_ENV] = directory
    values.ValueClass = values.get_value_class()
    REGISTRY = CollectorRegistry(auto_describe=True)
    METRICS = Metrics(REGISTRY)


def mark_process_dead(pid: int) -> None:
    """A worker process exits: drop its live-only series (called by the worker itself)."""
    if multiprocess_dir():
        prom_multiprocess.mark_process_dead(pid)


class _Families:
    """Collector of metric families read at this scrape (not kept between scrapes)."""

    def __init__(self, families: Sequence[GaugeMetricFamily]) -> None:
        self.families = list(families)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        return iter(self.families)


def render(extra: Sequence[GaugeMetricFamily] = ()) -> tuple[bytes, str]:
    """The exposition text of every metric of every worker, then `extra` (gauges read from
    the database at this scrape, the same from every worker, so never summed)."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        prom_multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    body = generate_latest(registry)
    if extra:
        scraped = CollectorRegistry(auto_describe=False)
        scraped.register(_Families(extra))  # type: ignore[arg-type]
        body += generate_latest(scraped)
    return body, CONTENT_TYPE_LATEST


def webhook_backlog_families(backlog: webhooks.Backlog,
                             now: datetime) -> list[GaugeMetricFamily]:
    """The webhook outbox as gauges: served by the API servers' /metrics and by
    `keymint webhooks run --metrics-port` alike."""
    oldest = backlog.oldest_due_at
    return [
        GaugeMetricFamily("keymint_webhook_deliveries_queued",
                          "Deliveries not yet delivered nor given up (new, waiting for a "
                          "retry, or being posted).", value=backlog.queued),
        GaugeMetricFamily("keymint_webhook_deliveries_due",
                          "Deliveries due now and waiting for a worker.", value=backlog.due),
        GaugeMetricFamily("keymint_webhook_deliveries_failed",
                          "Deliveries given up (4xx, refused target, or retried for 24 h), "
                          "as kept.", value=backlog.failed),
        GaugeMetricFamily("keymint_webhook_oldest_due_age_seconds",
                          "How long the longest-waiting due delivery has been due (0: none).",
                          value=max((now - oldest).total_seconds(), 0.0) if oldest else 0.0),
    ]


# --- counters other modules call -------------------------------------------------------------


def count_request(endpoint: str, method: str, status: int, seconds: float) -> None:
    metrics = METRICS
    series = metrics.request_series.get((endpoint, method, status))
    if series is None:
        labels = (endpoint, method, str(status))
        series = (metrics.requests.labels(*labels), metrics.latency.labels(*labels))
        metrics.request_series[(endpoint, method, status)] = series
    series[0].inc()
    series[1].observe(seconds)


def count_auth_failure(reason: str) -> None:
    METRICS.auth_failures.labels(reason).inc()


def count_rate_limited(limit: str, endpoint: str) -> None:
    METRICS.rate_limited.labels(limit, endpoint).inc()


def count_rate_limit_alert(limit: str) -> None:
    METRICS.rate_limit_alerts.labels(limit).inc()


def count_legacy_use(outcome: str) -> None:
    """A request presented a known legacy key: "accepted", "disabled", "sunset", "brownout"."""
    METRICS.legacy_uses.labels(outcome).inc()


def set_rate_limit_fallback(active: bool) -> None:
    """The rate limiter switched to (True) or back from (False) per-process counting."""
    metrics = METRICS
    metrics.ratelimit_fallback.set(1 if active else 0)
    if active:
        metrics.ratelimit_fallbacks.inc()


def set_pool_usage(in_use: int, overflow: int, capacity: int) -> None:
    metrics = METRICS
    metrics.pool_in_use.set(in_use)
    metrics.pool_overflow.set(max(overflow, 0))  # SQLAlchemy counts up from -pool_size
    metrics.pool_capacity.set(capacity)


def count_pool_wait() -> None:
    METRICS.pool_waits.inc()


def count_pool_timeout() -> None:
    METRICS.pool_timeouts.inc()


# --- token counts, from what the services note on a session that commits ----------------------


def _after_commit(session: Session) -> None:
    for what, label, count in token_counts.take(session):
        if what == token_counts.ISSUED:
            METRICS.tokens_issued.labels(label).inc(count)
        elif what == token_counts.ROTATED:
            METRICS.tokens_rotated.inc(count)
        elif what == token_counts.REVOKED:
            METRICS.tokens_revoked.labels(label).inc(count)


def _after_rollback(session: Session, _previous: Any) -> None:
    token_counts.drop(session)


_hooks_installed = False


def install_session_hooks() -> None:
    """Count tokens when the transaction that made them commits: rolled-back work never counts.

    Services note their results on the session (app/services/token_counts.py), whether or
    not auditing is on.
    """
    global _hooks_installed
    if _hooks_installed:
        return
    event.listen(Session, "after_commit", _after_commit)
    event.listen(Session, "after_soft_rollback", _after_rollback)
    _hooks_installed = True
