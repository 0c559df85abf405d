"""Which commits may skip the fsync: plain issuance only; revocation and rotation stay FULL."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import event

from app.extensions import db
from tests.support import mint, token_response

FULL, NORMAL = 2, 1


@pytest.fixture
def sqlite_commits(app, backend):
    """The SQLite `synchronous` level in force at each commit, in order."""
    if backend != "sqlite":
        pytest.skip("PostgreSQL relaxes with SET LOCAL (tests/faults covers the crash side)")
    seen: list[int] = []

    def on_commit(conn) -> None:
        raw = conn.connection.dbapi_connection
        if isinstance(raw, sqlite3.Connection):
            seen.append(raw.execute("PRAGMA synchronous").fetchone()[0])

    with app.app_context():
        engine = db.engine
    event.listen(engine, "commit", on_commit)
    yield seen
    event.remove(engine, "commit", on_commit)


def _level_of_a_fresh_checkout(app) -> int:
    with app.app_context(), db.engine.connect() as conn:
        return conn.exec_driver_sql("PRAGMA synchronous").scalar()


def test_issuance_commits_relaxed_and_the_connection_goes_back_to_full(
        app, client, factory, sqlite_commits):
    key = factory.key(scopes="keys:read")
    mint(client, key)  # the first use also writes last_used_at: that one stays FULL
    sqlite_commits.clear()
    assert token_response(client, key).status_code == 200
    assert sqlite_commits == [NORMAL]
    assert _level_of_a_fresh_checkout(app) == FULL


def test_revocation_and_rotation_commit_at_full(app, client, factory, sqlite_commits):
    key = factory.key(scopes="keys:read")
    first = mint(client, key)
    second = mint(client, key)
    sqlite_commits.clear()
    assert client.post("/oauth/revoke", data={"token": first}, auth=key.auth).status_code == 200
    assert client.post("/oauth/rotate", data={"token": second},
                       auth=key.auth).status_code == 200
    assert sqlite_commits == [FULL, FULL]
    assert _level_of_a_fresh_checkout(app) == FULL


def test_issuance_with_an_earlier_write_in_its_transaction_stays_full(
        app, client, factory, sqlite_commits):
    app.config["KEYMINT_LAST_USED_INTERVAL"] = 0  # last_used_at is written before the token
    key = factory.key(scopes="keys:read")
    sqlite_commits.clear()
    assert token_response(client, key).status_code == 200
    assert sqlite_commits == [FULL]


def test_durable_issuance_setting_keeps_full(app, client, factory, sqlite_commits):
    app.config["KEYMINT_ASYNC_ISSUANCE_COMMIT"] = False
    key = factory.key(scopes="keys:read")
    mint(client, key)
    sqlite_commits.clear()
    assert token_response(client, key).status_code == 200
    assert sqlite_commits == [FULL]
