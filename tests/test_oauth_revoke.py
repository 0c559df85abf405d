"""POST /oauth/revoke (RFC 7009): own tokens only, idempotent, committed before 200."""

from tests.support import all_rows, audit_actions, introspect, mint


def test_revoking_own_token_makes_it_inactive_and_is_audited(app, client, factory):
    key = factory.key()
    token = mint(client, key)
    response = client.post("/oauth/revoke", data={"token": token}, auth=key.auth)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert introspect(client, key, token) == {"active": False}
    assert "token.revoked" in audit_actions(app)
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_revoking_twice_or_unknown_or_garbage_is_200_and_changes_nothing(app, client, factory):
    key = factory.key()
    token = mint(client, key)
    client.post("/oauth/revoke", data={"token": token}, auth=key.auth)
    before = all_rows(app, "access_tokens"), audit_actions(app)
    for value in (token, "at_unknown", "garbage"):
        response = client.post("/oauth/revoke", data={"token": value}, auth=key.auth)
        assert response.status_code == 200
    assert (all_rows(app, "access_tokens"), audit_actions(app)) == before


def test_another_keys_token_is_not_revoked(client, factory):
    owner = factory.key()
    other = factory.key(owner.workspace)
    token = mint(client, owner)
    response = client.post("/oauth/revoke", data={"token": token}, auth=other.auth)
    assert response.status_code == 200
    assert introspect(client, owner, token)["active"] is True


def test_wrong_token_type_hint_is_not_an_error(client, factory):
    key = factory.key()
    token = mint(client, key)
    response = client.post("/oauth/revoke", data={"token": token, "token_type_hint": "bogus"},
                           auth=key.auth)
    assert response.status_code == 200
    assert introspect(client, key, token) == {"active": False}


def test_revocation_needs_client_authentication(client, factory):
    key = factory.key()
    token = mint(client, key)
    response = client.post("/oauth/revoke", data={"token": token})
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_client"
    assert introspect(client, key, token)["active"] is True


def test_missing_token_parameter_is_invalid_request(client, factory):
    response = client.post("/oauth/revoke", data={}, auth=factory.key().auth)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"
