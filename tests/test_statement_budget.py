"""SQL statements and transactions per token-path request: a guard that times nothing.

Counted on the engine around one test-client request, on both backends:

- statements: every `before_cursor_execute` except transaction control;
- transactions: the BEGIN / COMMIT / ROLLBACK that really reach the database. PostgreSQL
  (psycopg): a BEGIN is sent before a statement run outside autocommit while the connection
  is idle, a COMMIT or ROLLBACK only when a transaction is open. SQLite (sqlite3's default
  transaction control): a BEGIN before the first INSERT/UPDATE/DELETE, a COMMIT or ROLLBACK
  only when a transaction is open. An explicit BEGIN/COMMIT statement counts as one too.

A request that only reads runs no transaction; one that writes runs exactly one. The budgets
(docs/performance.md, "The one-statement token path"):
introspection 1 statement, no transaction; the Bearer check (GET /api/v1/me) 1, none;
issuance 3 (credential read; token row; audit row), one transaction; revocation 3 (caller and
token read together; the conditional UPDATE; the audit row), one; rotation 5 (the read; claim
the old token; token row; audit row; link the old token to the new), one.

Each key is used once before counting: its `last_used_at` is written at most once per
KEYMINT_LAST_USED_INTERVAL, and that write is not part of the steady-state path.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import event

from tests.support import ALL_SCOPES, bearer, introspect, mint, post

_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "END")
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


@dataclass
class Count:
    statements: int = 0
    transactions: int = 0  # BEGINs that reached the database
    ends: int = 0  # COMMITs and ROLLBACKs that reached the database
    sql: list[str] | None = None


def _in_transaction(raw: Any) -> bool:
    if isinstance(raw, sqlite3.Connection):
        return raw.in_transaction
    from psycopg.pq import TransactionStatus

    return raw.info.transaction_status != TransactionStatus.IDLE


def _opens_transaction(raw: Any, statement: str) -> bool:
    """This statement makes the driver send a BEGIN of its own first."""
    if _in_transaction(raw):
        return False
    if isinstance(raw, sqlite3.Connection):
        return raw.isolation_level is not None and statement.lstrip()[:7].upper().startswith(
            _WRITES)
    return not raw.autocommit


@contextmanager
def counted(app: Any) -> Iterator[Count]:
    from app.extensions import db

    with app.app_context():
        engine = db.engine
    count = Count(sql=[])

    def on_execute(conn, _cursor, statement, *_args) -> None:
        raw = conn.connection.dbapi_connection
        head = statement.lstrip()[:9].upper()
        if head.startswith(_CONTROL):
            if head.startswith("BEGIN"):
                count.transactions += 1
            elif not head.startswith(("SAVEPOINT", "RELEASE")):
                count.ends += 1
            return
        if _opens_transaction(raw, statement):
            count.transactions += 1
        count.statements += 1
        count.sql.append(statement)

    def on_end(conn) -> None:
        if _in_transaction(conn.connection.dbapi_connection):
            count.ends += 1

    event.listen(engine, "before_cursor_execute", on_execute)
    event.listen(engine, "commit", on_end)
    event.listen(engine, "rollback", on_end)
    try:
        yield count
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
        event.remove(engine, "commit", on_end)
        event.remove(engine, "rollback", on_end)


# endpoint -> (statements at most, transactions exactly)
BUDGET = {
    "introspect": (1, 0),
    "me": (1, 0),
    "token": (3, 1),
    "revoke": (3, 1),
    "rotate": (5, 1),
}


@pytest.fixture
def keys(client: Any, factory: Any) -> tuple[Any, Any]:
    """An introspecting key and a key with every scope in the same workspace, both used once."""
    owner = factory.user()
    slug = factory.workspace(owner=owner)
    caller = factory.key(slug, owner, scopes="introspect")
    subject = factory.key(slug, owner, scopes=ALL_SCOPES)
    warm = mint(client, subject)
    introspect(client, caller, warm)  # both keys' last_used_at written now, not below
    return caller, subject


def _check(name: str, count: Count) -> None:
    statements, transactions = BUDGET[name]
    assert count.statements <= statements, (name, count.sql)
    assert count.transactions == count.ends == transactions, (name, count)


def test_introspection_is_one_statement_and_no_transaction(app, client, keys):
    caller, subject = keys
    token = mint(client, subject)
    with counted(app) as count:
        assert introspect(client, caller, token)["active"] is True
    _check("introspect", count)


def test_bearer_check_is_one_statement_and_no_transaction(app, client, keys):
    _, subject = keys
    token = mint(client, subject)
    with counted(app) as count:
        response = client.get("/api/v1/me", headers=bearer(token))
    assert response.status_code == 200
    _check("me", count)


def test_bearer_check_refusing_a_token_for_other_resources_is_one_statement(app, client,
                                                                            factory):
    from tests.support import ORDERS, add_resource

    add_resource(app, ORDERS, "orders:read")
    key = factory.key(scopes="orders:read keys:read")
    for_orders = post(client, "/oauth/token", {"grant_type": "client_credentials",
                                               "resource": ORDERS}, key)
    assert for_orders.status_code == 200, for_orders.text
    with counted(app) as count:
        response = client.get("/api/v1/me", headers=bearer(for_orders.json["access_token"]))
    assert response.status_code == 401 and response.json["error"] == "invalid_token"
    _check("me", count)


def test_issuance_is_one_read_then_one_transaction(app, client, keys):
    _, subject = keys
    with counted(app) as count:
        mint(client, subject)
    _check("token", count)


def test_revocation_is_one_read_then_one_transaction(app, client, keys):
    caller, subject = keys
    token = mint(client, subject)
    with counted(app) as count:
        assert post(client, "/oauth/revoke", {"token": token}, subject).status_code == 200
    _check("revoke", count)
    assert introspect(client, caller, token) == {"active": False}


def test_rotation_is_one_read_then_one_transaction(app, client, keys):
    _, subject = keys
    token = mint(client, subject)
    with counted(app) as count:
        assert post(client, "/oauth/rotate", {"token": token}, subject).status_code == 200
    _check("rotate", count)


@pytest.mark.parametrize("token", ["garbage", "at_" + "A" * 40])
def test_bad_tokens_add_no_statement(app, client, keys, token):
    caller, _ = keys
    with counted(app) as count:
        assert introspect(client, caller, token) == {"active": False}
    # the caller's credential only (a value without keymint's prefix also asks the legacy
    # table); and no transaction
    assert count.statements <= (1 if token.startswith("at_") else 2), count.sql
    assert count.transactions == count.ends == 0, count


def test_failed_client_authentication_costs_the_same_for_unknown_and_wrong(app, client, keys):
    caller, subject = keys
    token = mint(client, subject)
    work = []
    for auth in [(caller.client_id, "sk_" + "x" * 40), ("key_" + "y" * 24, caller.secret)]:
        with counted(app) as count:
            assert post(client, "/oauth/introspect", {"token": token}, auth).status_code == 401
        work.append(count.statements)
    assert work[0] == work[1]


def test_issuance_still_commits_relaxed_on_postgres(app, client, keys, backend):
    """The synchronous_commit hint rides in the token INSERT (RETURNING set_config(...)),
    not in a SET LOCAL of its own: the issuance transaction still commits with it off, and a
    revocation's commit stays synchronous."""
    if backend != "postgres":
        return  # SQLite: tests/test_commit_durability.py
    from app.extensions import db

    with app.app_context():
        engine = db.engine
    seen: list[str] = []

    def at_commit(conn) -> None:
        raw = conn.connection.dbapi_connection
        if _in_transaction(raw):
            seen.append(raw.execute("SHOW synchronous_commit").fetchone()[0])

    _, subject = keys
    event.listen(engine, "commit", at_commit)
    try:
        token = mint(client, subject)
        assert seen == ["off"]
        assert post(client, "/oauth/revoke", {"token": token}, subject).status_code == 200
        assert seen == ["off", "on"]
    finally:
        event.remove(engine, "commit", at_commit)
