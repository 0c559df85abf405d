"""A running keymint loses its PostgreSQL: it fails closed with 503 and recovers by itself."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import requests
from sqlalchemy import create_engine, func, select

from app.models import AccessToken, AuditEvent
from tests.support import introspect, mint, post, start_server, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.slow]

REQUEST_TIMEOUT = 15  # every request below must be answered, never hang


def _counts(url: str) -> tuple[int, int, int]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            tokens = conn.scalar(select(func.count()).select_from(AccessToken))
            revoked = conn.scalar(select(func.count()).select_from(AccessToken)
                                  .where(AccessToken.revoked_at.is_not(None)))
            events = conn.scalar(select(func.count()).select_from(AuditEvent))
            return tokens, revoked, events
    finally:
        engine.dispose()


def _assert_unavailable(response: requests.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers.get("Retry-After", "").isdigit()
    body = response.json()
    assert body["error"] == "temporarily_unavailable"
    assert body.get("active") is not True
    assert "access_token" not in body


def test_outage_fails_closed_and_recovers_without_restart(own_pg_cluster, servers,
                                                          app_factory):
    url = own_pg_cluster.url("keymint")
    _app, factory = app_factory(url)
    key = factory.key(scopes="introspect keys:read")
    server = start_server(servers, url)
    pid = server.proc.pid
    # Warm the pool so the outage hits connections that were open and then died.
    token = mint(server, key.auth)
    assert introspect(server, key.auth, token)["active"] is True
    # Issuance commits asynchronously by default (a token lost in a crash just stops
    # working); a checkpoint makes the warm-up durable so the counts below are exact.
    own_pg_cluster.admin("CHECKPOINT")
    before = _counts(url)

    own_pg_cluster.crash()

    _assert_unavailable(post(server, "/oauth/token", {"grant_type": "client_credentials"},
                             key.auth, timeout=REQUEST_TIMEOUT))
    _assert_unavailable(post(server, "/oauth/introspect", {"token": token}, key.auth,
                             timeout=REQUEST_TIMEOUT))
    _assert_unavailable(post(server, "/oauth/revoke", {"token": token}, key.auth,
                             timeout=REQUEST_TIMEOUT))
    _assert_unavailable(post(server, "/oauth/rotate", {"token": token}, key.auth,
                             timeout=REQUEST_TIMEOUT))
    bearer = requests.get(server.url + "/api/v1/me", timeout=REQUEST_TIMEOUT,
                          headers={"Authorization": f"Bearer {token}"})
    assert bearer.status_code == 503, bearer.text
    ready = requests.get(server.url + "/readyz", timeout=REQUEST_TIMEOUT)
    assert ready.status_code == 503
    assert ready.json()["database"] == "unreachable"
    assert requests.get(server.url + "/healthz", timeout=REQUEST_TIMEOUT).status_code == 200

    own_pg_cluster.start()

    # Nothing was issued, revoked, rotated or audited while the database was away.
    assert _counts(url) == before
    assert wait_until(lambda: requests.get(server.url + "/readyz", timeout=REQUEST_TIMEOUT)
                      .status_code == 200, timeout=20)
    # The same process serves again: the dead pooled connections were replaced.
    assert server.proc.poll() is None and server.proc.pid == pid
    assert introspect(server, key.auth, token)["active"] is True
    fresh = mint(server, key.auth)
    assert introspect(server, key.auth, fresh)["active"] is True
    rotated = post(server, "/oauth/rotate", {"token": fresh}, key.auth)
    assert rotated.status_code == 200, rotated.text
    assert post(server, "/oauth/revoke", {"token": token}, key.auth).status_code == 200
    assert introspect(server, key.auth, token) == {"active": False}


def test_database_down_at_start_then_up(own_pg_cluster, servers, app_factory):
    url = own_pg_cluster.url("keymint")
    _app, factory = app_factory(url)
    key = factory.key(scopes="introspect")
    own_pg_cluster.stop()
    server = start_server(servers, url)  # keymint starts without its database
    assert requests.get(server.url + "/healthz", timeout=REQUEST_TIMEOUT).status_code == 200
    assert requests.get(server.url + "/readyz", timeout=REQUEST_TIMEOUT).status_code == 503
    _assert_unavailable(post(server, "/oauth/token", {"grant_type": "client_credentials"},
                             key.auth, timeout=REQUEST_TIMEOUT))
    own_pg_cluster.start()
    assert wait_until(lambda: requests.get(server.url + "/readyz", timeout=REQUEST_TIMEOUT)
                      .status_code == 200, timeout=20)
    assert introspect(server, key.auth, mint(server, key.auth))["active"] is True


@pytest.fixture
def silent_database() -> Iterator[int]:
    """A TCP port that completes the handshake and then never says a word (a hung server)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)  # never accept(): the kernel queues connections, nobody answers
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


def test_unresponsive_database_answers_503_quickly(silent_database, servers):
    url = f"postgresql+psycopg://postgres@127.0.0.1:{silent_database}/keymint"
    server = start_server(servers, url, KEYMINT_DATABASE_CONNECT_TIMEOUT="2")
    auth = ("key_" + "a" * 24, "sk_" + "b" * 46)
    # A hang would surface as a ReadTimeout here (the server itself never times a request out).
    _assert_unavailable(post(server, "/oauth/token", {"grant_type": "client_credentials"},
                             auth, timeout=REQUEST_TIMEOUT))
    assert requests.get(server.url + "/readyz", timeout=REQUEST_TIMEOUT).status_code == 503
