"""Engine settings per backend: SQLite pragmas, PostgreSQL timeouts, commit modes, readiness."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import Pool

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


# connection_record.info flag: this SQLite connection runs with synchronous=NORMAL right now.
_RELAXED = "keymint_sqlite_relaxed"


def _restore_full_sync(dbapi_connection, connection_record) -> None:
    """Pool checkin: a connection relaxed for one issuance goes back to synchronous=FULL.

    Checkin happens when the session releases the connection (after its commit or rollback,
    or when a failed request is cleaned up), so the next transaction on this connection,
    whatever it is, starts at FULL again.
    """
    if connection_record.info.pop(_RELAXED, False) and isinstance(dbapi_connection,
                                                                   sqlite3.Connection):
        dbapi_connection.execute("PRAGMA synchronous=FULL")


def configure_engine_events() -> None:
    global _configured
    if not _configured:
        event.listen(Engine, "connect", _sqlite_pragmas)
        event.listen(Pool, "checkin", _restore_full_sync)
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


def engine_options(uri: str, connect_timeout: int) -> dict[str, Any]:
    """Per-backend engine options; merged over the defaults in app.extensions (pre-ping).

    PostgreSQL: an unreachable server must turn into a quick 503, not a request that hangs
    until a worker timeout. connect_timeout bounds a new connection; TCP keepalives and
    tcp_user_timeout bound a query on a connection whose peer silently disappeared.

    SQLite: no pre-ping. A connection to a database file cannot go stale the way a network
    connection does, and the ping is a `SELECT 1` at the start of every request.
    """
    if uri.startswith("sqlite"):
        return {"pool_pre_ping": False}
    if not uri.startswith("postgresql"):
        return {}
    timeout_ms = max(connect_timeout, 1) * 2000
    return {
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


def relax_commit_durability(session: Session) -> None:
    """Let the current transaction commit without waiting for its WAL flush.

    Only for writes whose loss in a crash is harmless: a token issued in such a transaction
    and lost simply never works (fail closed). Revocations, rotations and every key or secret
    change keep full durability.

    PostgreSQL: `SET LOCAL synchronous_commit = off`, for this transaction only.
    SQLite (WAL): `PRAGMA synchronous=NORMAL` on this connection, which SQLite only allows
    outside a transaction, so it is skipped (the commit stays FULL) when this transaction
    has already written something; the pool's checkin puts FULL back before the connection
    is used again. A later FULL commit fsyncs the WAL with every frame before it, so a
    relaxed commit is at most lost together with the ones after it up to the next FULL one.
    """
    connection = session.connection()
    name = connection.dialect.name
    if name == "postgresql":
        connection.execute(text("SET LOCAL synchronous_commit = off"))
    elif name == "sqlite":
        pooled = connection.connection
        raw = pooled.dbapi_connection
        if isinstance(raw, sqlite3.Connection) and not raw.in_transaction:
            raw.execute("PRAGMA synchronous=NORMAL")
            pooled.info[_RELAXED] = True
