"""kill -9 everything right after a revocation or rotation: after restart it still holds."""

from __future__ import annotations

import pytest

from tests.faults.support import crash_after_commit, kill_group
from tests.support import introspect, mint, post, start_server, token_response

pytestmark = [pytest.mark.faults, pytest.mark.slow]


@pytest.fixture
def crash_everything(request, database_url, backend):
    """Kill -9 the server's process group; on PostgreSQL also crash the cluster (no
    checkpoint, recovery from WAL), then bring the database back."""

    def crash(*servers) -> None:
        for server in servers:
            kill_group(server)
        if backend == "postgres":
            cluster = request.getfixturevalue("pg_cluster")
            cluster.crash()
            cluster.start()

    return crash


def test_revoked_token_stays_revoked_after_crash(database_url, factory, servers,
                                                 crash_everything):
    key = factory.key(scopes="introspect")
    server = start_server(servers, database_url)
    token = mint(server, key.auth)
    assert introspect(server, key.auth, token)["active"] is True
    assert post(server, "/oauth/revoke", {"token": token}, key.auth).status_code == 200

    crash_everything(server)  # right after the 200: nothing else happened in between

    restarted = start_server(servers, database_url)
    assert introspect(restarted, key.auth, token) == {"active": False}


def test_revoked_key_stays_revoked_after_crash(database_url, factory, servers,
                                               crash_everything):
    key = factory.key(scopes="introspect")
    watcher = factory.key(key.workspace, scopes="introspect")
    server = start_server(servers, database_url)
    token = mint(server, key.auth)

    crash_after_commit(database_url, "revoke-key", key.client_id)
    crash_everything(server)

    restarted = start_server(servers, database_url)
    response = token_response(restarted, key)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert introspect(restarted, watcher.auth, token) == {"active": False}


def test_rotated_secret_stays_rotated_after_crash(database_url, factory, servers,
                                                  crash_everything):
    key = factory.key(scopes="introspect")
    server = start_server(servers, database_url)
    old_token = mint(server, key.auth)

    new_secret = crash_after_commit(database_url, "rotate-secret", key.client_id,
                                    "0")["client_secret"]
    crash_everything(server)

    restarted = start_server(servers, database_url)
    refused = token_response(restarted, key)
    assert refused.status_code == 401
    new_auth = (key.client_id, new_secret)
    assert introspect(restarted, new_auth, mint(restarted, new_auth))["active"] is True
    # grace 0: the token minted with the old secret died with it.
    assert introspect(restarted, new_auth, old_token) == {"active": False}
