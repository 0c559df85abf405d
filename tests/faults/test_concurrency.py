"""Concurrency invariants on PostgreSQL with real server processes and many threads."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import requests
from sqlalchemy import func, select

from app.clock import utcnow
from app.extensions import db
from app.models import AuditEvent, KeySecret
from app.services import keys
from app.services.audit import Actor
from tests.support import introspect, mint, start_server

pytestmark = [pytest.mark.faults, pytest.mark.slow,
              pytest.mark.parametrize("database_url", ["postgres"], indirect=True)]

HAMMER_THREADS = 8


@pytest.fixture
def node(database_url, servers):
    # 2 workers x 4 threads: requests really run in parallel against PostgreSQL.
    return start_server(servers, database_url, workers=2)


def _hammer_while(node, auth, change, settle_after: float = 0.5, min_before: int = 20):
    """Threads mint tokens until `settle_after` s after `change()` has committed.

    Returns (tokens minted, status counts, tokens answered 200 after the change committed).
    """
    stop = threading.Event()
    committed = threading.Event()
    lock = threading.Lock()
    minted: list[str] = []
    after_commit: list[str] = []
    statuses: Counter[int] = Counter()

    def worker() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                started_after_commit = committed.is_set()
                response = session.post(node.url + "/oauth/token", auth=auth, timeout=15,
                                        data={"grant_type": "client_credentials"})
                with lock:
                    statuses[response.status_code] += 1
                    if response.status_code == 200:
                        minted.append(response.json()["access_token"])
                        if started_after_commit:
                            after_commit.append(response.json()["access_token"])

    with ThreadPoolExecutor(HAMMER_THREADS) as pool:
        futures = [pool.submit(worker) for _ in range(HAMMER_THREADS)]
        deadline = time.monotonic() + 30
        while len(minted) < min_before and time.monotonic() < deadline:
            time.sleep(0.01)
        change()
        committed.set()
        time.sleep(settle_after)
        stop.set()
        for future in futures:
            future.result(timeout=30)
    return minted, statuses, after_commit


def _watcher(factory, key):
    return factory.key(key.workspace, scopes="introspect")


@pytest.mark.parametrize("round_", range(3))
def test_no_token_of_a_revoked_key_is_ever_active(app, factory, node, round_):
    key = factory.key(scopes="introspect keys:read")
    watcher = _watcher(factory, key)

    def revoke() -> None:
        with app.app_context():
            keys.revoke_key(db.session, keys.get_key(db.session, key.client_id), Actor.cli())
            db.session.commit()

    minted, statuses, after_commit = _hammer_while(node, key.auth, revoke)

    assert set(statuses) <= {200, 401}, statuses  # never a 5xx under the race
    assert statuses[200] >= 20 and statuses[401] > 0
    assert after_commit == []  # once the revocation committed, nothing more was issued
    with requests.Session() as session:
        for token in minted:  # including any minted concurrently with the revocation
            response = session.post(node.url + "/oauth/introspect", auth=watcher.auth,
                                    data={"token": token}, timeout=15)
            assert response.json() == {"active": False}
            me = session.get(node.url + "/api/v1/me", timeout=15,
                             headers={"Authorization": f"Bearer {token}"})
            assert me.status_code == 401


def test_no_token_minted_with_a_rotated_out_secret_stays_active(app, factory, node):
    key = factory.key(scopes="introspect")
    new_secret: list[str] = []

    def rotate_now() -> None:
        with app.app_context():
            rotated = keys.rotate_secret(db.session, keys.get_key(db.session, key.client_id),
                                         Actor.cli(), grace_period=0)
            db.session.commit()
            new_secret.append(rotated.client_secret)

    minted, statuses, after_commit = _hammer_while(node, key.auth, rotate_now)

    assert set(statuses) <= {200, 401}, statuses
    assert after_commit == []
    new_auth = (key.client_id, new_secret[0])
    for token in minted:  # also those whose issuance raced the rotation
        assert introspect(node, new_auth, token) == {"active": False}
    assert introspect(node, new_auth, mint(node, new_auth))["active"] is True


def test_fifty_parallel_secret_rotations(app, factory, node):
    key = factory.key(scopes="introspect")
    barrier = threading.Barrier(50)

    def rotate_once() -> str:
        with app.app_context():  # each thread: its own app context, session and connection
            barrier.wait(timeout=30)
            rotated = keys.rotate_secret(db.session, keys.get_key(db.session, key.client_id),
                                         Actor.cli(), grace_period=3600)
            db.session.commit()
            secret = rotated.client_secret
            db.session.remove()
            return secret

    with ThreadPoolExecutor(50) as pool:
        secrets = [f.result(timeout=60) for f in [pool.submit(rotate_once) for _ in range(50)]]

    assert len(set(secrets)) == 50
    with app.app_context():
        now = utcnow()
        rows = db.session.scalars(select(KeySecret).join(KeySecret.key)
                                  .where(KeySecret.key.has(client_id=key.client_id))).all()
        current = [s for s in rows if s.revoked_at is None and s.expires_at is None]
        previous = [s for s in rows if s.revoked_at is None and s.expires_at is not None
                    and s.expires_at > now]
        assert len(rows) == 51 and len(current) == 1 and len(previous) == 1
        assert previous[0].expires_at <= now + timedelta(seconds=3600)
        audited = db.session.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "key.secret_rotated", AuditEvent.target_id == key.client_id))
        assert audited == 50
    working = [s for s in [key.secret, *secrets]
               if requests.post(node.url + "/oauth/token", auth=(key.client_id, s), timeout=15,
                                data={"grant_type": "client_credentials"}).status_code == 200]
    assert len(working) == 2  # exactly the current and the one previous secret


@pytest.mark.parametrize("round_", range(3))
def test_parallel_rotations_of_one_token_have_one_winner(app, factory, node, round_):
    key = factory.key(scopes="introspect")
    token = mint(node, key.auth)
    barrier = threading.Barrier(12)

    def rotate() -> requests.Response:
        barrier.wait(timeout=30)
        return requests.post(node.url + "/oauth/rotate", auth=key.auth, timeout=15,
                             data={"token": token})

    with ThreadPoolExecutor(12) as pool:
        responses = [f.result(timeout=60) for f in [pool.submit(rotate) for _ in range(12)]]

    winners = [r for r in responses if r.status_code == 200]
    assert len(winners) == 1, [r.status_code for r in responses]
    assert all(r.status_code == 400 and r.json()["error"] == "invalid_grant"
               for r in responses if r is not winners[0])
    assert introspect(node, key.auth, token) == {"active": False}
    # A loser that read the token before the winner committed is refused quietly; one that
    # read it after presented an already rotated token: reuse, the lineage is revoked.
    with app.app_context():
        reuse = db.session.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "token.reuse_detected"))
    successor = introspect(node, key.auth, winners[0].json()["access_token"])
    assert successor["active"] is (reuse == 0)
