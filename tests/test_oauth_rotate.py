"""POST /oauth/rotate: replace a token atomically; presenting a rotated token is reuse."""

import threading

import pytest

from tests.support import all_rows, audit_actions, introspect, mint


def _rotate(client, key, token, **extra):
    return client.post("/oauth/rotate", data={"token": token, **extra}, auth=key.auth)


def test_rotation_revokes_the_old_token_and_issues_a_replacement(app, client, factory):
    key = factory.key(scopes="introspect read")
    old = mint(client, key)
    response = _rotate(client, key, old)
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert body["scope"] == "introspect read"
    assert introspect(client, key, old) == {"active": False}
    assert introspect(client, key, body["access_token"])["active"] is True
    rows = {r["id"]: r for r in all_rows(app, "access_tokens")}
    (old_row,) = [r for r in rows.values() if r["replaced_by_id"]]
    assert old_row["revoked_reason"] == "rotated"
    assert rows[old_row["replaced_by_id"]]["rotated_from_id"] == old_row["id"]
    assert "token.rotated" in audit_actions(app)


def test_rotation_can_narrow_but_not_widen_scope(client, factory):
    key = factory.key(scopes="introspect read write")
    token = mint(client, key, scope="introspect read")
    wider = _rotate(client, key, token, scope="introspect write")
    assert wider.status_code == 400 and wider.get_json()["error"] == "invalid_scope"
    narrower = _rotate(client, key, token, scope="introspect")
    assert narrower.status_code == 200 and narrower.get_json()["scope"] == "introspect"


def test_reuse_of_a_rotated_token_revokes_the_whole_lineage(app, client, factory):
    key = factory.key()
    first = mint(client, key)
    second = _rotate(client, key, first).get_json()["access_token"]
    third = _rotate(client, key, second).get_json()["access_token"]
    response = _rotate(client, key, first)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_grant"
    assert introspect(client, key, second) == {"active": False}
    assert introspect(client, key, third) == {"active": False}
    assert audit_actions(app).count("token.reuse_detected") == 1


def test_foreign_unknown_revoked_tokens_are_invalid_grant(client, factory):
    key = factory.key()
    other = factory.key(key.workspace)
    foreign = mint(client, other)
    revoked = mint(client, key)
    client.post("/oauth/revoke", data={"token": revoked}, auth=key.auth)
    for token in (foreign, "at_unknown", revoked):
        response = _rotate(client, key, token)
        assert response.status_code == 400
        assert response.get_json()["error"] == "invalid_grant"
    assert introspect(client, other, foreign)["active"] is True


def test_rotation_requires_client_auth_and_a_token(client, factory):
    key = factory.key()
    token = mint(client, key)
    assert client.post("/oauth/rotate", data={"token": token}).status_code == 401
    missing = client.post("/oauth/rotate", data={}, auth=key.auth)
    assert missing.status_code == 400 and missing.get_json()["error"] == "invalid_request"


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_concurrent_rotations_of_one_token_have_exactly_one_winner(app, factory):
    key = factory.key()
    token = mint(app.test_client(), key)
    statuses: list[int] = []
    barrier = threading.Barrier(8)

    def worker():
        local = app.test_client()
        barrier.wait()
        statuses.append(_rotate(local, key, token).status_code)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(statuses) == [200] + [400] * 7
    live = [r for r in all_rows(app, "access_tokens") if r["revoked_at"] is None]
    # A loser that arrived after the winner committed presented a rotated token: that is
    # reuse, and the winner's replacement dies with the lineage. Otherwise it survives.
    expected_live = 0 if "token.reuse_detected" in audit_actions(app) else 1
    assert len(live) == expected_live
