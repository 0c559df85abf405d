"""POST /oauth/token parameter rules from the security review (issue #15)."""

from __future__ import annotations

import pytest

from tests.support import token_response


@pytest.fixture
def key(factory):
    return factory.key(scopes="introspect keys:read")


@pytest.mark.parametrize("data", [{}, {"grant_type": ""}, {"scope": "keys:read"}],
                         ids=["absent", "empty", "absent-with-scope"])
@pytest.mark.parametrize("with_auth", [True, False], ids=["auth", "no-auth"])
def test_missing_grant_type_is_invalid_request(client, key, data, with_auth):
    # RFC 6749 §5.2: a missing required parameter is invalid_request; §3.1: a parameter sent
    # without a value is treated as omitted.
    response = client.post("/oauth/token", data=data, auth=key.auth if with_auth else None,
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == "invalid_request"
    assert "grant_type" in body["error_description"]
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"


@pytest.mark.parametrize("grant_type", ["password", "authorization_code", "refresh_token",
                                        "CLIENT_CREDENTIALS"])
def test_unknown_grant_type_stays_unsupported_grant_type(client, key, grant_type):
    response = token_response(client, key, grant_type=grant_type)
    assert response.status_code == 400
    assert response.get_json()["error"] == "unsupported_grant_type"
