"""One request boundary for the whole app: where it sits, and that every hook sees its answer."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError

from app.extensions import db
from app.web import boundary


def test_the_boundary_is_one_app_wide_hook_that_runs_first(app):
    app_hooks = app.after_request_funcs[None]
    assert app_hooks.count(boundary.finish) == 1
    assert app_hooks[-1] is boundary.finish  # Flask runs them in reverse: the boundary first
    for name, hooks in app.after_request_funcs.items():
        assert name is None or boundary.finish not in hooks


def test_a_refused_commit_is_the_answer_every_other_hook_sees(client, factory, monkeypatch):
    key = factory.key()

    def refused():
        raise IntegrityError("COMMIT", {}, Exception("unique"))

    monkeypatch.setattr(db.session, "commit", refused)
    response = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                           auth=key.auth)
    assert response.status_code == 409
    assert response.get_json()["error"] == "conflict"
    # headers added by hooks that run after the boundary
    assert response.headers["X-Request-ID"]
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_a_failed_authentication_is_audited_after_the_rollback(app, client, factory):
    from app.models import AuditEvent

    key = factory.key()
    response = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                           auth=(key.client_id, "sk_wrong"))
    assert response.status_code == 401
    with app.app_context():
        count = db.session.scalar(select(func.count()).select_from(AuditEvent)
                                  .where(AuditEvent.action == "client.auth_failed"))
        db.session.rollback()
    assert count == 1


def test_a_best_effort_write_that_fails_keeps_the_answer(app, monkeypatch):
    from flask import Response

    def broken(_session):
        raise OperationalError("INSERT", {}, Exception("gone"))

    with app.test_request_context("/oauth/token", method="POST"):
        boundary.write_after("ratelimit.exceeded", broken, best_effort=True)
        response = boundary.finish(Response("{}", status=429))
    assert response.status_code == 429


def test_a_required_write_that_fails_is_a_503(app):
    from flask import Response

    def broken(_session):
        raise OperationalError("INSERT", {}, Exception("gone"))

    with app.test_request_context("/oauth/token", method="POST"):
        boundary.write_after("client.auth_failed", broken)
        response = boundary.finish(Response("{}", status=401))
    assert response.status_code == 503
    assert response.headers["Retry-After"]
