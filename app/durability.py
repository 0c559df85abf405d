"""Per-transaction commit durability hints, for services to ask for without knowing the engine."""

from __future__ import annotations

import sqlite3

from sqlalchemy import func, text
from sqlalchemy.orm import Session

# connection_record.info flag: this SQLite connection runs with synchronous=NORMAL right now
# (app/runtime/database.py restores FULL when the connection goes back to the pool).
SQLITE_RELAXED = "keymint_sqlite_relaxed"


# PostgreSQL: `SET LOCAL synchronous_commit = off` as an expression, for a write's RETURNING
# clause, so the hint rides on a statement the transaction runs anyway (no round trip).
RELAX_IN_STATEMENT = func.set_config("synchronous_commit", "off", True)


def relax_commit_durability(session: Session, *, in_next_write: bool = False) -> bool:
    """Let the current transaction commit without waiting for its WAL flush.

    Only for writes whose loss in a crash is harmless: a token issued in such a transaction
    and lost simply never works (fail closed). Revocations, rotations and every key or secret
    change keep full durability.

    PostgreSQL: `SET LOCAL synchronous_commit = off`, for this transaction only; with
    in_next_write nothing is sent and True comes back: the caller then adds
    RELAX_IN_STATEMENT to the RETURNING clause of its next write in this transaction.
    SQLite (WAL): `PRAGMA synchronous=NORMAL` on this connection, which SQLite only allows
    outside a transaction, so it is skipped (the commit stays FULL) when this transaction
    has already written something; the pool's checkin (app/runtime/database.py) puts FULL
    back before the connection is used again. A later FULL commit fsyncs the WAL with every
    frame before it, so a relaxed commit is at most lost together with the ones after it up
    to the next FULL one.
    """
    connection = session.connection()
    name = connection.dialect.name
    if name == "postgresql":
        if in_next_write:
            return True
        connection.execute(text("SET LOCAL synchronous_commit = off"))
    elif name == "sqlite":
        pooled = connection.connection
        raw = pooled.dbapi_connection
        if isinstance(raw, sqlite3.Connection) and not raw.in_transaction:
            raw.execute("PRAGMA synchronous=NORMAL")
            pooled.info[SQLITE_RELAXED] = True
    return False
