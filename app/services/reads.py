"""Reads that open no transaction: the hot path's lookups, run on an autocommit connection."""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NamedTuple
from weakref import WeakKeyDictionary

from sqlalchemy import Executable, Row, Select
from sqlalchemy.engine import Connection, Dialect, Engine
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


class _Compiled(NamedTuple):
    sql: str
    positional: tuple[str, ...] | None  # parameter order, for qmark/format drivers
    fixed: dict[str, Any]  # the statement's own bound values (literals), bind-processed
    bind_processors: dict[str, Callable[[Any], Any]]
    row: type  # a namedtuple named after the statement's column labels
    processors: tuple[Callable[[Any], Any] | None, ...]


class HotRead:
    """A SELECT on the token path, compiled once per dialect and run on the driver's cursor.

    The same statement through Connection.execute costs ~200 us of SQLAlchemy machinery
    (execution context, result metadata, row objects) around a query that takes ~30 us on
    SQLite: most of an introspection's database time. Here the SQL string, its parameter
    order and the columns' result processors are worked out once; each call checks out a
    Connection as reads.connection() does (autocommit on PostgreSQL, the pool's own events),
    fires the engine's before/after_cursor_execute listeners (the SQLite writer queue, the
    statement-count tests) and turns each row into a namedtuple read by name, with the same
    types as SQLAlchemy's rows. Inside a unit of work, or if the driver raises, it runs the
    statement the ordinary way, so errors, disconnect handling and pool invalidation are
    SQLAlchemy's own.
    """

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement
        self._by_dialect: dict[str, _Compiled] = {}

    def _compiled(self, dialect: Dialect) -> _Compiled:
        found = self._by_dialect.get(dialect.name)
        if found is None:
            compiled = self.statement.compile(dialect=dialect)
            columns = compiled._result_columns
            processors = tuple(column.type._cached_result_processor(dialect, None)
                               for column in columns)
            bind_processors = dict(compiled._bind_processors)
            placeholders = {name: None for name, bind in compiled.binds.items()
                            if bind.required}
            fixed = {name: value
                     for name, value in compiled.construct_params(placeholders).items()
                     if value is not None}
            fixed = {name: bind_processors[name](value) if name in bind_processors else value
                     for name, value in fixed.items()}
            positional = tuple(compiled.positiontup) if compiled.positiontup else None
            row = namedtuple("HotRow", [column.keyname for column in columns], rename=True)
            found = _Compiled(str(compiled), positional, fixed, bind_processors, row,
                              processors)
            self._by_dialect[dialect.name] = found
        return found

    def rows(self, source: Session | scoped_session | Engine,
             params: Mapping[str, Any]) -> list[Any]:
        """Every row, each a namedtuple of the statement's labelled columns. `source` is the
        request's session, or an Engine where no session exists (a read outside any unit of
        work: app/oauth/fast_introspection.py)."""
        if isinstance(source, Engine):
            engine = _autocommit(source)
            fallback: Any = source
        else:
            current = source() if isinstance(source, scoped_session) else source
            if current.in_transaction():
                return all_rows(current, self.statement, params)
            engine = _autocommit(current.get_bind())
            fallback = current
        compiled = self._compiled(engine.dialect)
        values = dict(compiled.fixed)
        for name, value in params.items():
            processor = compiled.bind_processors.get(name)
            values[name] = processor(value) if processor is not None else value
        arguments: Any = (values if compiled.positional is None
                          else tuple(values[name] for name in compiled.positional))
        with engine.connect() as conn:
            dispatch = conn.dispatch
            try:
                cursor = conn.connection.driver_connection.cursor()
                try:
                    if dispatch.before_cursor_execute:
                        dispatch.before_cursor_execute(conn, cursor, compiled.sql, arguments,
                                                       None, False)
                    cursor.execute(compiled.sql, arguments)
                    data = cursor.fetchall()
                    if dispatch.after_cursor_execute:
                        dispatch.after_cursor_execute(conn, cursor, compiled.sql, arguments,
                                                      None, False)
                finally:
                    cursor.close()
            except engine.dialect.loaded_dbapi.Error as error:
                if engine.dialect.is_disconnect(error, conn.connection, None):
                    conn.invalidate(error)
                data = None
        if data is None:  # SQLAlchemy's own path decides what the error means
            if isinstance(fallback, Engine):
                with _autocommit(fallback).connect() as conn:
                    return list(conn.execute(self.statement, params))
            return all_rows(fallback, self.statement, params)
        make, processors = compiled.row._make, compiled.processors
        return [make([value if process is None else process(value)
                      for process, value in zip(processors, record, strict=True)])
                for record in data]

    def first(self, source: Session | scoped_session | Engine,
              params: Mapping[str, Any]) -> Any:
        """The first row, or None."""
        found = self.rows(source, params)
        return found[0] if found else None
