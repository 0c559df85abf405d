"""RFC 8414 §3.2 claim rules for /.well-known/oauth-authorization-server (issue #15)."""

from __future__ import annotations

METADATA = "/.well-known/oauth-authorization-server"


def test_no_claim_is_an_empty_list(client):
    # RFC 8414 §3.2: "Claims with zero elements MUST be omitted from the response."
    body = client.get(METADATA).get_json()
    empty = sorted(name for name, value in body.items() if value in ([], {}, "", None))
    assert empty == []


def test_response_types_supported_is_omitted(client):
    # keymint has no authorization endpoint: it serves only client_credentials.
    body = client.get(METADATA).get_json()
    assert "response_types_supported" not in body
    assert body["grant_types_supported"] == ["client_credentials"]
    assert "authorization_endpoint" not in body
