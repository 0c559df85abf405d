"""The webhook delivery worker: claims due deliveries, posts them signed, records outcomes."""

from __future__ import annotations

import contextlib
import http.client
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.extensions import db
from app.runtime import metrics
from app.services import webhooks
from app.services.errors import InvalidInput

log = logging.getLogger("keymint.webhooks")

# Enough of a response to show what a receiver said; a body is never kept whole.
RESPONSE_READ_LIMIT = 1024
SCAN_INTERVAL_SECONDS = 60.0
IDLE_SLEEP_SECONDS = 1.0
ERROR_SLEEP_SECONDS = 5.0
BATCH = webhooks.CLAIM_BATCH

# Attempts made by this worker process; the backlog is read from the database at each scrape.
ATTEMPTS = Counter("keymint_webhook_attempts", "Delivery attempts by this worker, by outcome "
                   "(delivered, retried: will be tried again, failed: given up).",
                   ("outcome",), registry=None)


class _Backlog:
    """Collector: the outbox as stored at this scrape (app/runtime/metrics.py)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self.app.app_context():
            try:
                now = utcnow()
                found = webhooks.backlog(db.session, now)
            finally:
                db.session.remove()
        yield from metrics.webhook_backlog_families(found, now)


def metrics_registry(app: Any) -> CollectorRegistry:
    """What `keymint webhooks run --metrics-port` serves: this worker's attempts, and the
    backlog the API servers' /metrics shows too."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(ATTEMPTS)
    registry.register(_Backlog(app))  # type: ignore[arg-type]
    return registry


class _BoundedConnection:
    """The connection part of one attempt: it connects to the address that was checked
    (whatever the name resolves to by now), and `abort()` ends it from another thread.

    A socket timeout bounds each read, not the attempt: a receiver sending a byte every few
    seconds would keep a plain connection busy for ever (past the claim's lease, when
    another worker may post the same delivery again). So every blocking step gets at most
    what is left until the deadline, and a timer aborts whatever is still running then.
    """

    _address: str
    _deadline: float
    host: str
    port: int

    def _setup(self, address: str, deadline: float) -> None:
        self._address = address
        self._deadline = deadline
        self._lock = threading.Lock()
        self._guard: socket.socket | None = None  # a duplicate of the connected socket
        self.aborted = False

    def remaining(self) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("attempt deadline passed")
        return left

    def _open(self) -> socket.socket:
        sock = socket.create_connection((self._address, self.port), self.remaining())
        with self._lock:
            if self.aborted:
                sock.close()
                raise TimeoutError("attempt deadline passed")
            # A duplicate survives wrap_socket() (which detaches the original), so abort()
            # reaches the connection during a TLS handshake too.
            self._guard = sock.dup()
        try:
            sock.settimeout(self.remaining())
        except TimeoutError:
            sock.close()
            raise
        return sock

    def abort(self) -> None:
        """Shut the connection down: a read or write blocked in the attempt returns now."""
        with self._lock:
            self.aborted = True
            if self._guard is not None:
                with contextlib.suppress(OSError):
                    self._guard.shutdown(socket.SHUT_RDWR)

    def _release(self) -> None:
        with self._lock:
            if self._guard is not None:
                self._guard.close()
                self._guard = None


class _PinnedHTTPConnection(_BoundedConnection, http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: str, deadline: float) -> None:
        http.client.HTTPConnection.__init__(self, host, port,
                                            timeout=max(deadline - time.monotonic(), 0.001))
        self._setup(address, deadline)

    def connect(self) -> None:
        self.sock = self._open()

    def close(self) -> None:
        super().close()
        self._release()


class _PinnedHTTPSConnection(_BoundedConnection, http.client.HTTPSConnection):
    """HTTPS to the checked address; the certificate is still verified for the host name."""

    def __init__(self, host: str, port: int, address: str, deadline: float) -> None:
        http.client.HTTPSConnection.__init__(self, host, port,
                                             timeout=max(deadline - time.monotonic(), 0.001),
                                             context=ssl.create_default_context())
        self._setup(address, deadline)

    def connect(self) -> None:
        sock = self._open()
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]

    def close(self) -> None:
        super().close()
        self._release()


def _resolve_by(resolver: webhooks.Resolver, deadline: float) -> webhooks.Resolver:
    """`resolver`, given until `deadline`: getaddrinfo() has no timeout of its own, so it
    runs in a thread of its own that the attempt stops waiting for (TimeoutError)."""

    def bounded(host: str, port: int) -> Sequence[str]:
        result: list[Any] = []

        def run() -> None:
            try:
                result.append(list(resolver(host, port)))
            except Exception as exc:  # handed to the attempt below
                result.append(exc)

        thread = threading.Thread(target=run, name="webhook-dns", daemon=True)
        thread.start()
        thread.join(max(deadline - time.monotonic(), 0))
        if not result:
            raise TimeoutError("name resolution did not finish in time")
        if isinstance(result[0], Exception):
            raise result[0]
        return result[0]

    return bounded


def post(job: webhooks.Job, *, allow_private: bool,
         timeout: float | None = None, resolver: webhooks.Resolver | None = None
         ) -> webhooks.Outcome:
    """One attempt, over within `timeout` seconds all told (webhooks.TIMEOUT_SECONDS):
    resolve and check the target now (DNS rebinding), connect, POST without following
    redirects, read the status, headers and at most RESPONSE_READ_LIMIT bytes of body."""
    timeout = webhooks.TIMEOUT_SECONDS if timeout is None else timeout
    started = time.monotonic()
    deadline = started + timeout

    def elapsed() -> int:
        return int((time.monotonic() - started) * 1000)

    def timed_out() -> webhooks.Outcome:
        return webhooks.Outcome(error=f"timed out after {timeout:g} s", duration_ms=elapsed())

    try:
        target, addresses = webhooks.delivery_addresses(
            job.url, allow_private=allow_private,
            resolver=_resolve_by(resolver or webhooks.resolve, deadline))
    except InvalidInput as exc:
        return webhooks.Outcome(error=f"target refused: {exc.message}", refused=True)
    except TimeoutError:
        return timed_out()
    parts = urlsplit(job.url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    kind = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
    conn = kind(target.host, target.port, addresses[0], deadline)
    watchdog = threading.Timer(max(deadline - time.monotonic(), 0), conn.abort)
    watchdog.daemon = True
    watchdog.start()
    try:
        conn.request("POST", path, body=job.body, headers=job.headers)
        response = conn.getresponse()
        snippet = response.read(RESPONSE_READ_LIMIT)
        if conn.aborted:  # what was read may be cut short: the attempt did not finish
            return timed_out()
        retry_after = response.getheader("Retry-After")
        error = None
        if not 200 <= response.status < 300:
            text = snippet.decode("utf-8", "replace")[:webhooks.ERROR_SNIPPET_LEN]
            error = f"HTTP {response.status}: {text}".strip()
        return webhooks.Outcome(status=response.status, error=error, duration_ms=elapsed(),
                                retry_after=retry_after)
    except TimeoutError:
        return timed_out()
    except (OSError, http.client.HTTPException) as exc:
        if conn.aborted:
            return timed_out()
        return webhooks.Outcome(error=f"network error: {type(exc).__name__}",
                                duration_ms=elapsed())
    finally:
        watchdog.cancel()
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
