"""OAuth errors that echo client input stay RFC 6749 §5.2-safe instead of becoming 500s."""

from __future__ import annotations

import pytest

from tests.support import mint


@pytest.mark.parametrize("body", [
    "grant_type=client_credentials&scope=caf%C3%A9",
    "grant_type=client_credentials&scope=%22quoted%22",
    "grant_type=client_credentials&scope=" + "x" * 2000,
    "grant_type=client_credentials&%C3%A9=1&%C3%A9=2",
    "grant_type=client_credentials&%0A=1&%0A=2",
])
def test_unsafe_characters_in_echoed_input_are_400(client, factory, body):
    key = factory.key(scopes="introspect")
    r = client.post("/oauth/token", data=body, auth=key.auth,
                    content_type="application/x-www-form-urlencoded")
    assert r.status_code == 400
    payload = r.get_json()
    assert payload["error"] in {"invalid_scope", "invalid_request"}
    assert all(0x20 <= ord(c) <= 0x7E and c not in '"\\\\' for c in payload["error_description"])


def test_rotate_with_unsafe_scope_is_400(client, factory):
    key = factory.key(scopes="introspect")
    token = mint(client, key)
    r = client.post("/oauth/rotate", data={"token": token, "scope": "intr\u00f6spect"},
                    auth=key.auth)
    assert r.status_code == 400 and r.get_json()["error"] == "invalid_scope"
