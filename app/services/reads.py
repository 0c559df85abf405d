"""Reads that open no transaction: the hot path's lookups, run on an autocommit connection."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Executable, Row
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, scoped_session

_autocommit_engines: WeakKeyDictionary[Engine, Engine] = WeakKeyDictionary()


def _autocommit(engine: Engine) -> Engine:
    found = _autocommit_engines.get(engine)
    if found is None:
        if engine.dialect.name == "sqlite":
            # pysqlite already runs a SELECT outside any transaction (it begins one only
            # before a write), so the engine as it is reads in autocommit. Its AUTOCOMMIT
            # switch would cost far more than it saves: putting the connection back sends
            # `PRAGMA read_uncommitted`, which expires every prepared statement of that
            # connection, so the next read re-prepares its query (~250 us for the
            # introspection join, ten times the query itself).
            found = engine
        else:
            # Shares the engine's pool; a connection is switched to autocommit at checkout
            # and back at checkin (a driver attribute on psycopg, no round trip).
            found = engine.execution_options(isolation_level="AUTOCOMMIT")
        _autocommit_engines[engine] = found
    return found


@contextmanager
def connection(session: Session | scoped_session) -> Iterator[Connection]:
    """A connection for one read that needs no transaction of its own.

    Inside a unit of work that has begun (it wrote, or read something it will act on), the
    session's own connection: the read sees that transaction's writes and snapshot. Otherwise
    a pooled connection in autocommit mode, given back at once: a single SELECT is atomic by
    itself, and PostgreSQL then gets no BEGIN and no COMMIT (two round trips each), while the
    session stays untouched, so the request boundary's commit sends nothing either. Never
    cached: each read sees what is committed when it runs.
    """
    current = session() if isinstance(session, scoped_session) else session
    if current.in_transaction():
        yield current.connection()
        return
    with _autocommit(session.get_bind()).connect() as conn:
        yield conn


def in_unit_of_work(session: Session | scoped_session) -> None:
    """Let this session's following reads run in its transaction, on its connection.

    For a request that is going to write anyway (issuance, revocation, rotation): on
    PostgreSQL its reads then cost no extra round trip (the BEGIN is sent once either way) and
    no second pooled connection is checked out for them.
    """
    session.connection()


def all_rows(session: Session, statement: Executable,
             params: Mapping[str, Any]) -> list[Row[Any]]:
    """Every row of one read (see connection())."""
    with connection(session) as conn:
        return list(conn.execute(statement, params))


def first_row(session: Session, statement: Executable,
              params: Mapping[str, Any]) -> Row[Any] | None:
    """The first row of one read (see connection())."""
    with connection(session) as conn:
        return conn.execute(statement, params).first()
