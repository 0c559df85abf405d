"""Pooled connections: an idle one is pinged and replaced if dead; one in steady use is not."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from app.extensions import db
from app.runtime import database
from tests.support import introspect, mint, token_response


@pytest.fixture
def postgres_only(backend: str) -> None:
    if backend != "postgres":
        pytest.skip("a pooled SQLite connection cannot be killed from outside")


def _kill_pooled_connection(app) -> None:
    """Terminate the server side of the app's pooled connection, as a database restart would."""
    with app.app_context():
        pid = db.session.scalar(text("SELECT pg_backend_pid()"))
        db.session.remove()
        admin = create_engine(db.engine.url, poolclass=NullPool)
    with admin.begin() as conn:
        assert conn.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    admin.dispose()


def test_a_dead_idle_connection_is_replaced_before_the_request_uses_it(
        app, client, factory, postgres_only, monkeypatch):
    key = factory.key(scopes="introspect")
    token = mint(client, key)
    _kill_pooled_connection(app)
    monkeypatch.setattr(database, "PING_AFTER_IDLE_S", 0.0)  # every checkout counts as idle
    assert introspect(client, key, token)["active"] is True


def test_a_connection_in_steady_use_is_not_pinged_so_one_request_fails_then_all_recover(
        app, client, factory, postgres_only, monkeypatch):
    key = factory.key(scopes="introspect")
    token = mint(client, key)
    monkeypatch.setattr(database, "PING_AFTER_IDLE_S", 3600.0)  # nothing counts as idle
    _kill_pooled_connection(app)
    # Issuance reads and writes in one transaction: the dead connection fails it.
    failed = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                         auth=key.auth)
    assert failed.status_code == 503, failed.get_data(as_text=True)
    assert failed.get_json()["error"] == "temporarily_unavailable"
    # The disconnect invalidated the pool: the next request runs on a new connection.
    assert token_response(client, key).status_code == 200
    assert introspect(client, key, token)["active"] is True


def test_a_token_path_read_that_meets_a_dead_connection_answers_from_a_fresh_one(
        app, client, factory, postgres_only, monkeypatch):
    # Introspection's one read (services.reads.HotRead) runs outside any transaction, so
    # nothing is lost by running it again: the dead connection is invalidated and the read
    # is answered, instead of a 503.
    key = factory.key(scopes="introspect")
    token = mint(client, key)
    monkeypatch.setattr(database, "PING_AFTER_IDLE_S", 3600.0)
    _kill_pooled_connection(app)
    assert introspect(client, key, token)["active"] is True
    assert introspect(client, key, token)["active"] is True


def test_a_pinged_idle_connection_serves_the_request(app, client, factory, backend,
                                                       monkeypatch):
    monkeypatch.setattr(database, "PING_AFTER_IDLE_S", 0.0)
    key = factory.key(scopes="introspect")
    token = mint(client, key)
    assert introspect(client, key, token)["active"] is True


# --- SQLite: writers of one process queue on a lock, held from first write to commit ----------


@pytest.fixture
def sqlite_write_lock(app, backend):
    if backend != "sqlite":
        pytest.skip("PostgreSQL has row locks; the queue is for SQLite's single writer")
    with app.app_context():
        lock, _owner = database._write_lock_for(db.engine.url.database)
    return lock


@pytest.mark.parametrize("end", ["commit", "rollback"])
def test_the_write_lock_is_taken_by_the_first_write_and_given_back_at_the_end(
        app, factory, sqlite_write_lock, end):
    factory.key()
    with app.app_context():
        db.session.execute(text("SELECT count(*) FROM api_keys"))
        assert not sqlite_write_lock.locked()  # reading takes no turn
        db.session.execute(text("UPDATE api_keys SET name = name"))
        assert sqlite_write_lock.locked()
        db.session.execute(text("UPDATE api_keys SET name = name"))  # same transaction: no wait
        getattr(db.session, end)()
        assert not sqlite_write_lock.locked()


def test_requests_leave_no_write_lock_behind(app, client, factory, sqlite_write_lock):
    key = factory.key(scopes="introspect")
    token = mint(client, key)
    assert not sqlite_write_lock.locked()
    assert client.post("/oauth/revoke", data={"token": token}, auth=key.auth).status_code == 200
    assert not sqlite_write_lock.locked()
    wrong = (key.client_id, "sk_" + "A" * 46)
    assert token_response(client, wrong).status_code == 401  # rolled back, then audited
    assert not sqlite_write_lock.locked()
    with app.app_context():
        db.session.execute(text("UPDATE api_keys SET name = name"))
        db.session.remove()  # a request torn down without commit
    assert not sqlite_write_lock.locked()


@pytest.mark.parametrize("end", ["commit", "rollback"])
def test_begin_write_queues_first_then_holds_sqlites_lock_before_any_read(
        app, factory, sqlite_write_lock, end):
    import sqlite3

    from app.transactions import begin_write

    factory.key()
    with app.app_context():
        begin_write(db.session)
        assert sqlite_write_lock.locked()  # the thread queued before BEGIN IMMEDIATE
        other = sqlite3.connect(db.engine.url.database, timeout=0.05)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")  # another process could not write now
        db.session.execute(text("SELECT count(*) FROM api_keys"))
        begin_write(db.session)  # already the writer: nothing more to take
        getattr(db.session, end)()
        assert not sqlite_write_lock.locked()
        other.execute("BEGIN IMMEDIATE")
        other.rollback()
        other.close()


def test_an_exhausted_pool_is_a_503_with_retry_after_not_a_500(app, client, factory,
                                                                monkeypatch):
    # QueuePool raises sqlalchemy.exc.TimeoutError (not a DBAPIError) when no connection
    # frees up within pool_timeout: an overloaded server, so clients should come back.
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    from app.services import tokens

    key = factory.key(scopes="introspect")
    token = mint(client, key)

    def exhausted(*_args, **_kwargs):
        raise PoolTimeout("QueuePool limit of size 5 overflow 10 reached")

    monkeypatch.setattr(tokens, "load_caller_and_token", exhausted)
    response = client.post("/oauth/introspect", data={"token": token}, auth=key.auth)
    assert response.status_code == 503
    assert response.get_json()["error"] == "temporarily_unavailable"
    assert int(response.headers["Retry-After"]) >= 1
