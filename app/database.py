"""Engine settings per backend: SQLite durability pragmas and foreign keys."""

from __future__ import annotations

import sqlite3

from sqlalchemy import event
from sqlalchemy.engine import Engine

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
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def configure_engine_events() -> None:
    global _configured
    if not _configured:
        event.listen(Engine, "connect", _sqlite_pragmas)
        _configured = True
