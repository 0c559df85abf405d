"""The request boundary maps commit failures: constraint → 409, database down → 503."""

import pytest
from flask import Response
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

        monkeypatch.setattr(db.session, "commit", failing_commit)
        response = finish(Response("{}", status=200))
    assert response.status_code == status
    assert response.get_json()["error"] == code
    if status == 503:
        assert response.headers["Retry-After"]
