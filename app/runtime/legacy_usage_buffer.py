"""The per-process buffer of legacy key usage: recording, the flush thread, fork and exit hooks."""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from datetime import datetime

from flask import Flask, current_app
from sqlalchemy.orm import Session

from app.runtime import lifecycle, metrics
from app.services import legacy_usage
from app.services.audit import Actor
from app.services.legacy import LegacyRow
from app.services.legacy_usage import Announced, Batch, Tally

log = logging.getLogger("keymint.legacy")

EXTENSION = "keymint_legacy_usage"

_BUFFERS: weakref.WeakSet[UsageBuffer] = weakref.WeakSet()


class UsageBuffer:
    """Counts legacy uses in memory and writes them in one transaction per flush.

    A request costs a dict update under a lock, not a database write. A flush happens
    at the end of the request that brings `threshold` events pending, every `interval`
    seconds in a background thread (real time, not the app clock), and at process exit.
    Counts are increments, so any number of processes and nodes add up exactly; a failed
    flush puts its counts back.
    """

    def __init__(self, app: Flask, interval: int, threshold: int) -> None:
        self._app = app
        self.interval = interval
        self.threshold = threshold
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._pending: Batch = {}
        self._pending_events = 0
        # Days for which this process knows the daily audit event is already written.
        self._announced: Announced = {}
        self._thread: threading.Thread | None = None
        self._thread_pid: int | None = None
        self._stop = threading.Event()
        _BUFFERS.add(self)

    # recording (the hot path) ------------------------------------------------------------

    def record_use(self, row: LegacyRow, now: datetime, actor: Actor) -> None:
        self._record("use", row, now, actor, None)

    def record_rejection(self, row: LegacyRow, now: datetime, actor: Actor, reason: str) -> None:
        self._record("reject", row, now, actor, reason)

    def _record(self, kind: str, row: LegacyRow, now: datetime, actor: Actor,
                reason: str | None) -> None:
        metrics.count_legacy_use("accepted" if kind == "use" else reason or kind)
        slot = (kind, row.id, now.date())
        with self._lock:
            tally = self._pending.get(slot)
            if tally is None:
                tally = self._pending[slot] = Tally(row.workspace_id)
            tally.add(now, actor, reason)
            self._pending_events += 1
        self._ensure_thread()

    @property
    def pending_events(self) -> int:
        return self._pending_events

    def flush_due(self) -> bool:
        """The threshold is checked at the end of each request; the interval by the flusher."""
        return self._pending_events >= self.threshold

    def flush_if_due(self) -> None:
        if self.flush_due():
            self.flush()

    # writing -------------------------------------------------------------------------------

    def _take(self) -> Batch:
        with self._lock:
            batch, self._pending, self._pending_events = self._pending, {}, 0
        return batch

    def _put_back(self, batch: Batch) -> None:
        with self._lock:
            for slot, tally in batch.items():
                mine = self._pending.get(slot)
                if mine is None:
                    self._pending[slot] = tally
                else:
                    mine.merge(tally)
                self._pending_events += tally.count

    def flush(self) -> int:
        """Write every pending count now; returns how many events were written."""
        with self._write_lock:  # one flush at a time per process keeps lock order simple
            batch = self._take()
            if not batch:
                return 0
            try:
                with self._app.app_context():
                    from app.extensions import db

                    with Session(db.engine) as session, session.begin():
                        announced = legacy_usage.write_batch(session, batch, self._announced)
            except Exception:
                self._put_back(batch)
                log.warning("could not write legacy key usage counters; will retry",
                            exc_info=True)
                return 0
            self._announced.update(announced)
            return sum(t.count for t in batch.values())

    def discard(self) -> None:
        """Drop pending counts and stop the flusher (tests; never in production)."""
        self._take()
        self._stop.set()

    # the periodic flusher ------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        pid = os.getpid()
        if self._thread is not None and self._thread_pid == pid:
            return
        with self._lock:
            if self._thread is not None and self._thread_pid == pid:
                return
            thread = threading.Thread(target=_flush_periodically,
                                      args=(weakref.ref(self), self._stop, self.interval),
                                      name="keymint-legacy-usage", daemon=True)
            self._thread, self._thread_pid = thread, pid
            thread.start()

    def _after_fork_in_child(self) -> None:
        # Counts of the parent belong to the parent; the child starts empty.
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._pending, self._pending_events = {}, 0
        self._thread = None


def _flush_periodically(ref: weakref.ref[UsageBuffer], stop: threading.Event,
                        interval: int) -> None:
    while not stop.wait(interval):
        buffer = ref()
        if buffer is None:
            return
        if buffer.pending_events:
            buffer.flush()
        del buffer


def flush_all() -> None:
    """Flush every live buffer of this process: at interpreter exit and server worker exit."""
    for buffer in list(_BUFFERS):
        try:
            buffer.flush()
        except Exception:  # exit must go on; the warning says what was lost
            log.exception("legacy usage counters lost at exit")


def _after_fork() -> None:
    for buffer in list(_BUFFERS):
        buffer._after_fork_in_child()


_process_hooks_installed = False


def _install_process_hooks() -> None:
    """Once per process: a forked child starts with empty buffers; exit flushes them all.

    Granian's forked workers end with os._exit, where atexit never runs; there the
    lifecycle flush (worker_exit) does it.
    """
    global _process_hooks_installed
    if not _process_hooks_installed:
        os.register_at_fork(after_in_child=_after_fork)
        atexit.register(flush_all)
        _process_hooks_installed = True


def of(app: Flask | None = None) -> UsageBuffer:
    """The buffer of `app` (default: the current app)."""
    return (app or current_app).extensions[EXTENSION]


def init_app(app: Flask) -> UsageBuffer:
    """Give `app` its buffer (KEYMINT_LEGACY_FLUSH_*), flushed at the end of requests and exit."""
    buffer = UsageBuffer(app, app.config["KEYMINT_LEGACY_FLUSH_INTERVAL"],
                         app.config["KEYMINT_LEGACY_FLUSH_THRESHOLD"])
    app.extensions[EXTENSION] = buffer
    lifecycle.register_flush(app, flush_all)  # keymint serve's worker exit
    _install_process_hooks()

    @app.teardown_request
    def _flush_usage(_exc: BaseException | None) -> None:
        # After the request's own transaction ended, so the flush never waits on it.
        buffer.flush_if_due()

    return buffer
