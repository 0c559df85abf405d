"""JWTs from a real `keymint serve` configured through the environment, checked over HTTP
by discovery (RFC 8414 metadata -> jwks_uri), as a resource server would."""

from __future__ import annotations

import json

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.support import SIGNING_KEK, keymint_cli, mint, start_server

pytestmark = pytest.mark.slow


def test_a_live_server_issues_jwts_its_jwks_verifies(servers, database_url, factory,
                                                     monkeypatch):
    monkeypatch.setenv("KEYMINT_SIGNING_KEY_ENCRYPTION_KEY", SIGNING_KEK)
    kid = json.loads(keymint_cli(database_url, "signing-keys", "rotate", "--now", "--json"))["kid"]
    owner = factory.user()
    key = factory.key(factory.workspace(owner=owner, token_format="jwt"), owner)
    server = start_server(servers, database_url, KEYMINT_SIGNING_KEY_ENCRYPTION_KEY=SIGNING_KEK)

    token = mint(server, key)
    metadata = requests.get(f"{server.url}/.well-known/oauth-authorization-server",
                            timeout=10).json()
    jwks = requests.get(metadata["jwks_uri"], timeout=10)
    assert jwks.headers["Cache-Control"] == "public, max-age=300"
    decoded = jwt.decode(token, KeySet.import_key_set(jwks.json()), algorithms=["ES256"])
    assert decoded.header == {"typ": "at+jwt", "alg": "ES256", "kid": kid}
    jwt.JWTClaimsRegistry(iss={"essential": True, "value": metadata["issuer"]},
                          aud={"essential": True, "value": metadata["issuer"] + "/api/v1"}
                          ).validate(decoded.claims)
    assert SIGNING_KEK not in server.output() and token not in server.output()


def test_a_live_server_without_the_key_answers_503_and_says_why(servers, database_url,
                                                                 factory):
    owner = factory.user()
    key = factory.key(factory.workspace(owner=owner, token_format="jwt"), owner)
    server = start_server(servers, database_url)
    response = requests.post(f"{server.url}/oauth/token",
                             data={"grant_type": "client_credentials"}, auth=key.auth,
                             timeout=10)
    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable"
    assert "KEYMINT_SIGNING_KEY_ENCRYPTION_KEY is not set" in server.output()
