"""GET /api/v1/me with a bearer token."""

from tests.support import mint


def test_me_describes_the_credential(client, factory):
    key = factory.key(scopes="introspect read")
    token = mint(client, key, scope="read")
    response = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    body = response.get_json()
    assert body["credential"] == "access_token"
    assert body["user"]["email"] == key.email and body["user"]["role"] == "owner"
    assert body["workspace"]["slug"] == key.workspace
    assert body["key"]["client_id"] == key.client_id
    assert body["scopes"] == ["read"]
    assert body["token"]["expires_at"].endswith("Z")


def test_missing_or_bad_bearer_is_401_with_challenge(client):
    for headers in ({}, {"Authorization": "Bearer at_garbage"}, {"Authorization": "Basic eDp5"}):
        response = client.get("/api/v1/me", headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].lower().startswith("bearer")
        assert "error" in response.get_json()
