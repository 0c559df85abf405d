"""Unmodified OAuth clients against a real `keymint serve` process."""

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session as AuthlibSession
from oauthlib.oauth2 import BackendApplicationClient
from requests_oauthlib import OAuth2Session

from tests.support import introspect, mint

pytestmark = pytest.mark.slow


@pytest.fixture
def key(factory):
    return factory.key(scopes="introspect keys:read")


def _me(server, token):
    response = requests.get(f"{server.url}/api/v1/me",
                            headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code == 200
    return response.json()


def test_requests_oauthlib_backend_application_client(live_server, key, monkeypatch):
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # loopback test server only
    session = OAuth2Session(client=BackendApplicationClient(client_id=key.client_id))
    token = session.fetch_token(token_url=f"{live_server.url}/oauth/token",
                                client_id=key.client_id, client_secret=key.secret)
    assert token["token_type"] == "Bearer"
    assert _me(live_server, token["access_token"])["key"]["client_id"] == key.client_id
    # the session itself attaches the bearer token
    assert session.get(f"{live_server.url}/api/v1/me", timeout=10).status_code == 200


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_authlib_client_both_auth_methods(live_server, key, method):
    session = AuthlibSession(key.client_id, key.secret, token_endpoint_auth_method=method,
                             scope="keys:read")
    token = session.fetch_token(f"{live_server.url}/oauth/token",
                                grant_type="client_credentials")
    assert token["scope"] == "keys:read"
    assert _me(live_server, token["access_token"])["scopes"] == ["keys:read"]
    revoke = session.revoke_token(f"{live_server.url}/oauth/revoke", token["access_token"])
    assert revoke.status_code == 200
    gone = requests.get(f"{live_server.url}/api/v1/me",
                        headers={"Authorization": f"Bearer {token['access_token']}"}, timeout=10)
    assert gone.status_code == 401


def test_introspection_over_http(live_server, key):
    body = introspect(live_server, key, mint(live_server, key))
    assert body["active"] is True and body["client_id"] == key.client_id
    assert body["iss"] == live_server.url
