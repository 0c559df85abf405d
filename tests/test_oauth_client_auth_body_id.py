"""Basic authentication with the same client_id repeated in the body (RFC 6749 §2.3.1, #15)."""

from __future__ import annotations

import pytest
import requests
from oauthlib.oauth2 import BackendApplicationClient
from requests_oauthlib import OAuth2Session

from tests.support import introspect, mint

GRANT = {"grant_type": "client_credentials"}


@pytest.fixture
def key(factory):
    return factory.key(scopes="introspect keys:read")


def test_basic_plus_the_same_client_id_in_the_body_mints_a_token(client, key):
    # client_id in the body is not an authentication method (only client_id + client_secret
    # is), so this is one method: client_secret_basic.
    response = client.post("/oauth/token", data={**GRANT, "client_id": key.client_id},
                           auth=key.auth)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["token_type"] == "Bearer"


def test_basic_plus_the_same_client_id_works_on_every_endpoint(client, key):
    token = mint(client, key)
    body_id = {"client_id": key.client_id}
    introspected = client.post("/oauth/introspect", data={"token": token, **body_id},
                               auth=key.auth)
    assert introspected.status_code == 200 and introspected.get_json()["active"] is True
    rotated = client.post("/oauth/rotate", data={"token": token, **body_id}, auth=key.auth)
    assert rotated.status_code == 200, rotated.get_json()
    replacement = rotated.get_json()["access_token"]
    revoked = client.post("/oauth/revoke", data={"token": replacement, **body_id},
                          auth=key.auth)
    assert revoked.status_code == 200
    assert introspect(client, key, replacement) == {"active": False}


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/introspect", "/oauth/revoke",
                                  "/oauth/rotate"])
def test_a_different_client_id_in_the_body_is_invalid_request(client, factory, key, path):
    other = factory.key()
    response = client.post(path, data={**GRANT, "token": "x", "client_id": other.client_id},
                           auth=key.auth)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"


@pytest.mark.parametrize("body", [
    {"client_secret": "SECRET"},
    {"client_id": "ID", "client_secret": "SECRET"},
    {"client_id": "ID", "client_secret": ""},
], ids=["secret", "id-and-secret", "id-and-empty-secret"])
def test_basic_plus_a_client_secret_in_the_body_is_invalid_request(client, key, body):
    # Two authentication methods in one request: RFC 6749 §2.3.1 forbids it.
    data = {name: {"ID": key.client_id, "SECRET": key.secret}.get(value, value)
            for name, value in body.items()}
    response = client.post("/oauth/token", data={**GRANT, **data}, auth=key.auth)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"


@pytest.mark.slow
def test_requests_oauthlib_include_client_id_with_basic(live_server, key, monkeypatch):
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # loopback test server only
    session = OAuth2Session(client=BackendApplicationClient(client_id=key.client_id))
    sent: list[requests.PreparedRequest] = []
    session.hooks["response"].append(lambda response, **_: sent.append(response.request))
    token = session.fetch_token(token_url=f"{live_server.url}/oauth/token",
                                auth=requests.auth.HTTPBasicAuth(key.client_id, key.secret),
                                include_client_id=True)
    # What went over the wire: Basic credentials plus client_id (and no secret) in the body.
    assert sent[0].headers["Authorization"].startswith("Basic ")
    assert f"client_id={key.client_id}" in sent[0].body and "client_secret" not in sent[0].body
    assert token["token_type"] == "Bearer"
    me = requests.get(f"{live_server.url}/api/v1/me", timeout=10,
                      headers={"Authorization": f"Bearer {token['access_token']}"})
    assert me.status_code == 200 and me.json()["key"]["client_id"] == key.client_id
