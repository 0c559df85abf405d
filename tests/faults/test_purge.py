"""`keymint tokens purge`: exactly the rows past retention, in batches, idempotent, live-safe."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
from datetime import datetime, timedelta

import pytest
import requests
from freezegun import freeze_time
from sqlalchemy import func, select, text

from app.extensions import db
from app.models import AccessToken, ApiKey, AuditEvent
from tests.support import REPO, introspect, start_server

pytestmark = pytest.mark.faults

T = datetime.fromisoformat("2026-06-01T12:00:00+00:00")
DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)


def _add(key: ApiKey, label: str, *, expires_at: datetime, revoked_at: datetime | None = None,
         issued_at: datetime | None = None) -> AccessToken:
    row = AccessToken(digest=secrets.token_hex(32), jti=label[:32], key_id=key.id,
                      user_id=key.user_id, workspace_id=key.workspace_id, scopes="introspect",
                      issued_at=issued_at or expires_at - timedelta(minutes=15),
                      expires_at=expires_at, revoked_at=revoked_at,
                      revoked_reason="revoked" if revoked_at else None)
    db.session.add(row)
    db.session.flush()
    return row


def _seed(app, factory) -> None:
    handle = factory.key(scopes="introspect")
    cutoff = T - 7 * DAY
    with app.app_context():
        key = db.session.scalar(select(ApiKey).where(ApiKey.client_id == handle.client_id))
        _add(key, "gone-expired", expires_at=cutoff - SECOND)
        _add(key, "kept-expired-at-cutoff", expires_at=cutoff)
        _add(key, "kept-expired-recently", expires_at=T - DAY)
        _add(key, "gone-revoked", expires_at=T + DAY, revoked_at=cutoff - SECOND,
             issued_at=T - 9 * DAY)
        _add(key, "kept-revoked-at-cutoff", expires_at=T + DAY, revoked_at=cutoff,
             issued_at=T - 9 * DAY)
        _add(key, "kept-active", expires_at=T + 10 * 60 * SECOND, issued_at=T)
        # Rotation lineage: an old ancestor goes, its live successor stays unharmed.
        ancestor = _add(key, "gone-ancestor", expires_at=T - 10 * DAY,
                        revoked_at=T - 10 * DAY - 60 * SECOND)
        successor = _add(key, "kept-successor", expires_at=T + 600 * SECOND, issued_at=T)
        ancestor.replaced_by_id, successor.rotated_from_id = successor.id, ancestor.id
        # An old chain goes entirely.
        first = _add(key, "gone-chain-1", expires_at=T - 20 * DAY, revoked_at=T - 20 * DAY)
        second = _add(key, "gone-chain-2", expires_at=T - 19 * DAY)
        first.replaced_by_id, second.rotated_from_id = second.id, first.id
        db.session.commit()


def _remaining(app) -> dict[str, AccessToken]:
    with app.app_context():
        rows = db.session.scalars(select(AccessToken)).all()
        db.session.expunge_all()
        return {row.jti: row for row in rows}


@pytest.mark.parametrize("batch_size", ["1", "5000"])
def test_purge_removes_exactly_the_rows_past_retention(app, factory, batch_size):
    _seed(app, factory)
    runner = app.test_cli_runner()
    with freeze_time(T):
        result = runner.invoke(args=["tokens", "purge", "--batch-size", batch_size])
    assert result.exit_code == 0, result.output
    assert "purged 5 token row(s)" in result.output

    left = _remaining(app)
    assert sorted(left) == sorted([
        "kept-expired-at-cutoff", "kept-expired-recently", "kept-revoked-at-cutoff",
        "kept-active", "kept-successor"])
    assert left["kept-successor"].rotated_from_id is None  # pointer to the purged row cleared
    with app.app_context():
        events = db.session.scalars(select(AuditEvent).where(AuditEvent.action ==
                                                             "token.purged")).all()
        # one event per batch, committed with that batch's deletions
        assert sum(e.details["count"] for e in events) == 5
        assert all(e.details["retention_days"] == 7 for e in events)

    with freeze_time(T):  # idempotent: a second run finds nothing more
        again = runner.invoke(args=["tokens", "purge", "--batch-size", batch_size])
    assert again.exit_code == 0 and "purged 0 token row(s)" in again.output
    assert sorted(_remaining(app)) == sorted(left)


def test_retention_comes_from_the_environment_setting(app, factory):
    _seed(app, factory)
    app.config["KEYMINT_TOKEN_RETENTION_DAYS"] = 30
    with freeze_time(T):
        result = app.test_cli_runner().invoke(args=["tokens", "purge"])
    assert result.exit_code == 0 and "purged 0 token row(s)" in result.output
    with freeze_time(T):
        result = app.test_cli_runner().invoke(args=["tokens", "purge", "--retention-days", "0"])
    # Retention 0: everything expired or revoked before now goes; live tokens stay.
    assert sorted(_remaining(app)) == ["kept-active", "kept-successor"]


def test_progress_bar_on_request(app, factory):
    _seed(app, factory)
    with freeze_time(T):
        result = app.test_cli_runner().invoke(args=["tokens", "purge", "--progress"])
    assert result.exit_code == 0
    assert "purging tokens" in result.output  # the runner mixes stderr into output


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_purge_while_tokens_are_issued(app, factory, database_url, servers):
    handle = factory.key(scopes="introspect")
    with app.app_context():
        key = db.session.scalar(select(ApiKey).where(ApiKey.client_id == handle.client_id))
        db.session.execute(text(
            "INSERT INTO access_tokens (digest, jti, key_id, user_id, workspace_id, scopes, "
            "issued_at, expires_at) SELECT md5('d' || i) || md5('e' || i), md5('j' || i), "
            ":key, :user, :ws, '', now() - interval '30 days', now() - interval '29 days' "
            "FROM generate_series(1, 20000) AS i"),
            {"key": key.id, "user": key.user_id, "ws": key.workspace_id})
        db.session.commit()
    server = start_server(servers, database_url)
    stop = threading.Event()
    issued: list[str] = []
    failures: list[int] = []

    def issue() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                r = session.post(server.url + "/oauth/token", auth=handle.auth, timeout=15,
                                 data={"grant_type": "client_credentials"})
                (issued.append(r.json()["access_token"]) if r.status_code == 200
                 else failures.append(r.status_code))

    threads = [threading.Thread(target=issue) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        purge = subprocess.run(
            [sys.executable, "-m", "app.cli", "tokens", "purge", "--batch-size", "500"],
            cwd=REPO, capture_output=True, timeout=120, check=False,
            env={**os.environ, "KEYMINT_DATABASE_URL": database_url})
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert purge.returncode == 0, purge.stderr.decode()
    assert "purged 20000 token row(s)" in purge.stdout.decode()
    assert failures == [] and issued
    for token in issued[-20:]:
        assert introspect(server, handle.auth, token)["active"] is True
    with app.app_context():
        left = db.session.scalar(select(func.count()).select_from(AccessToken))
        assert left == len(issued)
