"""The request boundary maps commit failures: constraint → 409, database down → 503."""

import pytest
from flask import Response
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError

from app.extensions import db
from app.web.boundary import finish


@pytest.mark.parametrize("error, status, code", [
    (IntegrityError("INSERT", {}, Exception("unique")), 409, "conflict"),
    (OperationalError("COMMIT", {}, Exception("gone")), 503, "temporarily_unavailable"),
])
def test_commit_failures_are_answered_not_raised(app, monkeypatch, error, status, code):
    with app.test_request_context("/api/v1/keys", method="POST"):
        def failing_commit():
            raise error

        db.session.execute(text("SELECT 1"))  # the request's transaction has begun
        monkeypatch.setattr(db.session, "commit", failing_commit)
        response = finish(Response("{}", status=200))
    assert response.status_code == status
    assert response.get_json()["error"] == code
    if status == 503:
        assert response.headers["Retry-After"]


def test_a_request_that_never_touched_the_database_ends_nothing(app, monkeypatch):
    """No transaction begun and nothing staged: the boundary neither commits nor rolls back
    (and builds no session to do so)."""
    def must_not_run():
        raise AssertionError("the boundary ended a transaction that never began")

    with app.test_request_context("/healthz"):
        monkeypatch.setattr(db.session, "commit", must_not_run)
        monkeypatch.setattr(db.session, "rollback", must_not_run)
        assert finish(Response("{}", status=200)).status_code == 200
        assert finish(Response("{}", status=400)).status_code == 400
        assert not db.session.registry.has()
