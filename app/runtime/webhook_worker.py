"""The webhook delivery worker: claims due deliveries, posts them signed, records outcomes."""

from __future__ import annotations

import http.client
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.extensions import db
from app.services import webhooks
from app.services.errors import InvalidInput

log = logging.getLogger("keymint.webhooks")

# Enough of a response to show what a receiver said; a body is never kept whole.
RESPONSE_READ_LIMIT = 1024
SCAN_INTERVAL_SECONDS = 60.0
IDLE_SLEEP_SECONDS = 1.0
ERROR_SLEEP_SECONDS = 5.0
BATCH = 10

# Attempts made by this worker process; the backlog is read from the database at each scrape.
ATTEMPTS = Counter("keymint_webhook_attempts", "Delivery attempts by this worker, by outcome "
                   "(delivered, retried: will be tried again, failed: given up).",
                   ("outcome",), registry=None)


class _Backlog:
    """Collector: deliveries by status and the age of the oldest due one, as stored now
    (so every worker reports the same, whichever of them is scraped)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self.app.app_context():
            try:
                now = utcnow()
                counts = webhooks.count_by_status(db.session)
                oldest = webhooks.oldest_due(db.session, now)
            finally:
                db.session.remove()
        by_status = GaugeMetricFamily("keymint_webhook_deliveries",
                                      "Deliveries by status (pending: queued or retrying).",
                                      labels=["status"])
        for status in webhooks.DeliveryStatus:
            by_status.add_metric([status.value], counts.get(status.value, 0))
        yield by_status
        yield GaugeMetricFamily("keymint_webhook_oldest_due_age_seconds",
                                "How long the longest-waiting due delivery has been due.",
                                value=(now - oldest).total_seconds() if oldest else 0.0)


def metrics_registry(app: Any) -> CollectorRegistry:
    """What `keymint webhooks run --metrics-port` serves."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(ATTEMPTS)
    registry.register(_Backlog(app))  # type: ignore[arg-type]
    return registry


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the address that was checked, whatever the name resolves to by now."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to the checked address; the certificate is still verified for the host name."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def post(job: webhooks.Job, *, allow_private: bool,
         timeout: float | None = None, resolver: webhooks.Resolver | None = None
         ) -> webhooks.Outcome:
    """One attempt: resolve and check the target now (DNS rebinding), POST without
    following redirects, read at most RESPONSE_READ_LIMIT bytes of the answer."""
    timeout = webhooks.TIMEOUT_SECONDS if timeout is None else timeout
    started = time.monotonic()

    def elapsed() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        target, addresses = webhooks.delivery_addresses(job.url, allow_private=allow_private,
                                                        resolver=resolver)
    except InvalidInput as exc:
        return webhooks.Outcome(error=f"target refused: {exc.message}", refused=True)
    parts = urlsplit(job.url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    kind = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
    conn = kind(target.host, target.port, addresses[0], timeout)
    try:
        conn.request("POST", path, body=job.body, headers=job.headers)
        response = conn.getresponse()
        snippet = response.read(RESPONSE_READ_LIMIT)
        retry_after = response.getheader("Retry-After")
        error = None
        if not 200 <= response.status < 300:
            text = snippet.decode("utf-8", "replace")[:webhooks.ERROR_SNIPPET_LEN]
            error = f"HTTP {response.status}: {text}".strip()
        return webhooks.Outcome(status=response.status, error=error, duration_ms=elapsed(),
                                retry_after=retry_after)
    except TimeoutError:
        return webhooks.Outcome(error=f"timed out after {timeout:g} s", duration_ms=elapsed())
    except (OSError, http.client.HTTPException) as exc:
        return webhooks.Outcome(error=f"network error: {type(exc).__name__}",
                                duration_ms=elapsed())
    finally:
        conn.close()


@dataclass
class Stats:
    queued: int = 0
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    by_endpoint: dict[int, int] = field(default_factory=dict)

    @property
    def attempted(self) -> int:
        return self.delivered + self.retried + self.failed


def deliver_due(session: Session, *, allow_private: bool, now: datetime | None = None,
                limit: int = BATCH, timeout: float | None = None) -> Stats:
    """Claim a batch (committed at once, so the lease holds if this process dies), post
    each, and commit each outcome on its own."""
    stats = Stats()
    try:
        jobs = webhooks.claim(session, now or utcnow(), limit)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    for job in jobs:
        outcome = post(job, allow_private=allow_private, timeout=timeout)
        try:
            delivery = webhooks.record_outcome(session, job.delivery_id, outcome, utcnow())
            session.commit()
        except BaseException:
            session.rollback()
            raise
        if delivery is None:
            continue
        if delivery.status == webhooks.DeliveryStatus.SUCCEEDED:
            stats.delivered += 1
            ATTEMPTS.labels("delivered").inc()
        elif delivery.status == webhooks.DeliveryStatus.FAILED:
            stats.failed += 1
            ATTEMPTS.labels("failed").inc()
        else:
            stats.retried += 1
            ATTEMPTS.labels("retried").inc()
        # No URL, body or receiver text: those are the receiver's, not the log's.
        log.info("webhook delivery %s attempt %d: %s (%s)", delivery.public_id,
                 delivery.attempts, delivery.status,
                 f"HTTP {outcome.status}" if outcome.status is not None
                 else (outcome.error or "").split(":", 1)[0])
    return stats


def scan(session: Session, now: datetime | None = None,
         legacy_sunset: datetime | None = None) -> int:
    try:
        queued = webhooks.scan_schedule(session, now or utcnow(), legacy_sunset)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return queued


def run_once(session: Session, *, allow_private: bool,
             legacy_sunset: datetime | None = None) -> Stats:
    """`keymint webhooks run --once`: the schedule, then every delivery due now."""
    stats = Stats(queued=scan(session, legacy_sunset=legacy_sunset))
    while True:
        batch = deliver_due(session, allow_private=allow_private)
        stats.delivered += batch.delivered
        stats.retried += batch.retried
        stats.failed += batch.failed
        if batch.attempted < BATCH:
            return stats


def run_forever(session: Session, stop: threading.Event, *, allow_private: bool,
                legacy_sunset: datetime | None = None) -> None:
    """`keymint webhooks run`: until `stop` is set; the batch in hand is finished first."""
    next_scan = 0.0
    while not stop.is_set():
        try:
            if time.monotonic() >= next_scan:
                scan(session, legacy_sunset=legacy_sunset)
                next_scan = time.monotonic() + SCAN_INTERVAL_SECONDS
            batch = deliver_due(session, allow_private=allow_private)
        except Exception:
            # The database is away, or a deadlock victim: what was claimed and not
            # recorded is due again when its lease ends. Keep going; never die of it.
            log.exception("webhook worker pass failed; retrying in %s s", ERROR_SLEEP_SECONDS)
            stop.wait(ERROR_SLEEP_SECONDS)
            continue
        if batch.attempted == 0:
            stop.wait(IDLE_SLEEP_SECONDS)
