"""Engine settings per backend: SQLite pragmas, PostgreSQL timeouts, commit modes, readiness."""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any

from sqlalchemy import event, exc, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import ConnectionPoolEntry, Pool, QueuePool

from app.durability import SQLITE_RELAXED
from app.runtime import metrics
from app.transactions import SQLITE_BEGIN_WRITE

SQLITE_BUSY_TIMEOUT_MS = 5000

_configured = False


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the writer; synchronous=FULL fsyncs every commit, so a
    # committed revocation survives a crash or power loss (NORMAL would only survive a crash).
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()




def _restore_full_sync(dbapi_connection, connection_record) -> None:
    """Pool checkin: a connection relaxed for one issuance goes back to synchronous=FULL.

    Checkin happens when the session releases the connection (after its commit or rollback,
    or when a failed request is cleaned up), so the next transaction on this connection,
    whatever it is, starts at FULL again.
    """
    if connection_record.info.pop(SQLITE_RELAXED, False) and isinstance(dbapi_connection,
                                                                   sqlite3.Connection):
        dbapi_connection.execute("PRAGMA synchronous=FULL")


# A pooled connection idle for longer than this is pinged before use; one used more recently
# is trusted. pool_pre_ping would ping on every checkout: one more round trip per request
# (on PostgreSQL 1 of 5 on an introspection), to guard against what is rare.
PING_AFTER_IDLE_S = 1.0
_LAST_CHECKIN = "keymint_last_checkin"


def _note_checkin(dbapi_connection, connection_record) -> None:
    connection_record.info[_LAST_CHECKIN] = time.monotonic()


def _ping_if_idle(dbapi_connection, connection_record, _proxy) -> None:
    """Pool checkout: ping a connection that sat idle; a dead one is replaced, not used.

    Raising DisconnectionError makes the pool discard this connection and check out (or open)
    another, so after a database restart the first request is served on a fresh connection.
    A connection that dies while in steady use fails its next request with a 503 instead;
    that error invalidates the whole pool, so each process loses at most that one request.
    """
    idle_since = connection_record.info.get(_LAST_CHECKIN)
    if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_S:
        return
    try:
        cursor = dbapi_connection.cursor()
        cursor.execute("SELECT 1")
        cursor.close()
        if not isinstance(dbapi_connection, sqlite3.Connection):
            dbapi_connection.rollback()  # the ping opened a transaction (non-autocommit DBAPI)
    except Exception as error:
        raise exc.DisconnectionError(f"stale pooled connection: {error}") from error


# --- SQLite: one writer at a time per process, waiting in a queue rather than in sleeps -------
#
# SQLite admits one writer per database. A second connection that wants to write gets
# SQLITE_BUSY and its busy handler sleeps and retries (1, 2, 5 ... 100 ms apart), so under
# concurrent writes a request could wait hundreds of milliseconds after the lock was free:
# measured, 4 threads committing WAL transactions at synchronous=FULL had a worst commit of
# 0.6-1.6 s that way, and of 32-70 ms when they queued on a lock first (and 1.2-3x the
# throughput). Threads of one process now take a per-database lock before their first write
# statement (or the BEGIN IMMEDIATE of app.transactions.begin_write, which takes SQLite's
# write lock before a transaction's reads) and give it back when the connection returns to
# the pool, right after its commit or rollback. Other processes (more workers, the CLI) still
# meet SQLite's busy handler.

_WRITE_STATEMENTS = ("INSERT", "UPDATE", "DELETE")
_HOLDS_WRITE_LOCK = "keymint_sqlite_write_lock"
_write_locks: dict[str, tuple[threading.Lock, list[int | None]]] = {}
_write_locks_guard = threading.Lock()


def _write_lock_for(database: str) -> tuple[threading.Lock, list[int | None]]:
    with _write_locks_guard:
        return _write_locks.setdefault(database, (threading.Lock(), [None]))


def _takes_write_lock(statement: str) -> bool:
    return (statement[:6].upper() in _WRITE_STATEMENTS
            or statement[:len(SQLITE_BEGIN_WRITE)].upper() == SQLITE_BEGIN_WRITE)


def _queue_sqlite_writer(conn, _cursor, statement: str, _parameters, _context,
                         _executemany) -> None:
    if conn.dialect.name != "sqlite" or not _takes_write_lock(statement):
        return
    info = conn.connection.info
    if _HOLDS_WRITE_LOCK in info:
        return
    lock, owner = _write_lock_for(conn.engine.url.database or "")
    me = threading.get_ident()
    if owner[0] == me:
        return  # this thread writes on another connection already: SQLite itself decides
    # Never wait longer than SQLite's own busy timeout would; then SQLite decides.
    if lock.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
        owner[0] = me
        info[_HOLDS_WRITE_LOCK] = lock, owner


def _release_sqlite_writer(_dbapi_connection, connection_record, *_args) -> None:
    held = connection_record.info.pop(_HOLDS_WRITE_LOCK, None)
    if held is not None:
        lock, owner = held
        owner[0] = None
        lock.release()


def configure_engine_events() -> None:
    global _configured
    if not _configured:
        event.listen(Engine, "connect", _sqlite_pragmas)
        event.listen(Pool, "checkin", _restore_full_sync)
        event.listen(Pool, "checkin", _note_checkin)
        event.listen(Pool, "checkout", _ping_if_idle)
        event.listen(Engine, "before_cursor_execute", _queue_sqlite_writer)
        event.listen(Pool, "checkin", _release_sqlite_writer)
        event.listen(Pool, "invalidate", _release_sqlite_writer)
        _configured = True


# The readiness probe's statement; tests swap in a slow one to prove the timeout is real.
READINESS_PROBE = "SELECT 1"


def probe(engine: Engine, timeout_ms: int) -> None:
    """Run READINESS_PROBE on its own connection, aborted after `timeout_ms` on both backends.

    PostgreSQL: a server-side statement_timeout for this transaction only (the connect
    timeout is the engine's connect_timeout). SQLite: a progress handler interrupts the
    statement at the deadline and busy_timeout bounds the wait for a lock.
    Raises sqlalchemy.exc.DBAPIError when the database is unreachable, slow or locked.
    """
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        if isinstance(raw, sqlite3.Connection):
            deadline = time.monotonic() + timeout_ms / 1000
            raw.set_progress_handler(lambda: int(time.monotonic() > deadline), 1000)
            raw.execute(f"PRAGMA busy_timeout={int(timeout_ms)}")
            try:
                conn.execute(text(READINESS_PROBE)).all()
            finally:
                raw.set_progress_handler(None, 0)
                raw.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
                conn.rollback()
        else:
            with conn.begin():
                conn.execute(text(f"SET LOCAL statement_timeout = {int(timeout_ms)}"))
                conn.execute(text(READINESS_PROBE)).all()


class MeteredQueuePool(QueuePool):
    """SQLAlchemy's QueuePool that reports its use to /metrics: connections in use, overflow,
    and checkouts that had to wait for a connection (or waited in vain).

    Pool events fire only once a connection is handed out, too late to see a wait; the
    checkout itself is the one place that knows. The bookkeeping is two integer reads and
    three gauge sets per checkout and checkin; SQLAlchemy's own logic is unchanged.
    """

    def _do_get(self) -> ConnectionPoolEntry:
        capacity = self.size() + max(self._max_overflow, 0)
        if self._max_overflow > -1 and self.checkedout() >= capacity:
            metrics.count_pool_wait()
        try:
            record = super()._do_get()
        except exc.TimeoutError:
            metrics.count_pool_timeout()
            raise
        metrics.set_pool_usage(self.checkedout(), self.overflow(), capacity)
        return record

    def _do_return_conn(self, record: ConnectionPoolEntry) -> None:
        super()._do_return_conn(record)
        metrics.set_pool_usage(self.checkedout(), self.overflow(),
                               self.size() + max(self._max_overflow, 0))


def engine_options(uri: str, connect_timeout: int) -> dict[str, Any]:
    """Per-backend engine options (stale pooled connections: _ping_if_idle above).

    PostgreSQL: an unreachable server must turn into a quick 503, not a request that hangs
    until a worker timeout. connect_timeout bounds a new connection; TCP keepalives and
    tcp_user_timeout bound a query on a connection whose peer silently disappeared.
    """
    if not uri.startswith("postgresql"):
        return {}
    timeout_ms = max(connect_timeout, 1) * 2000
    return {
        "poolclass": MeteredQueuePool,
        "pool_timeout": max(connect_timeout, 1),
        "connect_args": {
            "connect_timeout": max(connect_timeout, 2),  # libpq's minimum useful value
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 3,
            "tcp_user_timeout": timeout_ms,
        },
    }
