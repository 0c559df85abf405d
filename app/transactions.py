"""Write intent: a check-then-act transaction serialised with every other writer, on any engine."""

from __future__ import annotations

import sqlite3

from sqlalchemy import Select
from sqlalchemy.orm import Session

# The statement app/runtime/database.py recognises to queue this thread as the writer first.
SQLITE_BEGIN_WRITE = "BEGIN IMMEDIATE"


def begin_write(session: Session) -> None:
    """Serialise the rest of this transaction with every other writer of the database.

    Call it before the reads a write decides on (the key before a rotation, the owner count
    before a demotion). PostgreSQL: nothing to do here; the caller's `SELECT ... FOR UPDATE`
    row locks serialise, and that clause is a no-op on SQLite. SQLite: its one write lock,
    taken now with `BEGIN IMMEDIATE`. Under pysqlite's default transaction control a SELECT
    runs outside any transaction and a transaction only begins at the first write, so two
    requests could both read, both decide, then write one after the other (two current
    secrets, zero owners). Taken before those reads, the lock makes the second request read
    what the first one committed. Reads before this call ran in autocommit and hold nothing;
    the caller re-reads what it decides on (populate_existing). If this transaction has
    written already it holds the lock, and nothing happens.
    """
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        return
    raw = connection.connection.dbapi_connection
    if isinstance(raw, sqlite3.Connection) and not raw.in_transaction:
        connection.exec_driver_sql(SQLITE_BEGIN_WRITE)


def locked(session: Session, query: Select) -> Select:
    """`query` as the read a write decides on: the write lock taken first (begin_write), its
    rows locked (FOR UPDATE; a no-op on SQLite) and re-read over any copy this session holds
    (populate_existing), so a concurrent change is never decided on stale data."""
    begin_write(session)
    return query.with_for_update().execution_options(populate_existing=True)
