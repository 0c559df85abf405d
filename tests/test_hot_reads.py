"""services.reads.HotRead: the token path's reads on the driver's cursor, same answers as Core."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import event, exc, select, text

from app.extensions import db
from app.models import ApiKey
from app.services import reads, tokens
from app.services.keys import CREDENTIAL_QUERY
from tests.support import mint


def _core_rows(statement, params):
    with db.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(statement, params)]


def test_rows_equal_what_sqlalchemy_returns_with_the_same_types(app, client, factory):
    key = factory.key(scopes="introspect")
    token = mint(client, key)
    from app import credentials

    params = {"client_id": key.client_id, "digest": credentials.digest(token)}
    with app.app_context():
        hot = reads.HotRead(tokens._CALLER_AND_TOKEN_QUERY).rows(db.session, params)
        core = _core_rows(tokens._CALLER_AND_TOKEN_QUERY, params)
    assert [tuple(row) for row in hot] == core
    row = hot[0]
    assert row.client_id == key.client_id and row.tok_jti.startswith("tok_")
    # timezone-aware UTC, as every datetime keymint reads (models.base.UTCDateTime)
    assert isinstance(row.tok_expires_at, datetime) and row.tok_expires_at.tzinfo == UTC
    assert row.tok_revoked_at is None


def test_no_row_and_unknown_parameters_are_plain_answers(app, factory):
    with app.app_context():
        assert reads.HotRead(CREDENTIAL_QUERY).rows(db.session, {"client_id": "key_nope"}) == []
        assert reads.HotRead(CREDENTIAL_QUERY).first(db.session,
                                                      {"client_id": "key_nope"}) is None


def test_the_read_is_seen_by_the_engines_statement_listeners(app, factory):
    key = factory.key()
    seen: list[str] = []

    def remember(_conn, _cursor, statement, *_args) -> None:
        seen.append(statement)

    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", remember)
        try:
            reads.HotRead(CREDENTIAL_QUERY).rows(db.session, {"client_id": key.client_id})
        finally:
            event.remove(db.engine, "before_cursor_execute", remember)
    assert len(seen) == 1 and "api_keys" in seen[0]


def test_inside_a_unit_of_work_the_read_sees_that_transactions_writes(app, factory):
    key = factory.key()
    statement = select(ApiKey.name.label("name")).where(ApiKey.client_id == key.client_id)
    with app.app_context():
        db.session.execute(text("UPDATE api_keys SET name = 'renamed, not committed'"))
        row = reads.HotRead(statement).first(db.session, {})
        db.session.rollback()
        assert row.name == "renamed, not committed"
        assert reads.HotRead(statement).first(db.session, {}).name != "renamed, not committed"


def test_a_driver_error_is_sqlalchemys_error_not_the_drivers(app):
    broken = select(text("no_such_column")).select_from(text("no_such_table"))
    with app.app_context(), pytest.raises(exc.DBAPIError):
        reads.HotRead(broken).rows(db.session, {})
