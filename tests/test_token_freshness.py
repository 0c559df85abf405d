"""No answer about a token outlives a change to what it stands on (issue #14 item 4, #15).

- Two server processes on one database: a revocation committed through one (of the token,
  its key, its secret, its owner, the owner's membership) is seen by the very next
  introspection through the other. Nothing about keys or tokens is cached.
- A token minted while its key was being narrowed (the state that race leaves: a live
  token holding a scope its key no longer has) is inactive, not honoured for its lifetime.
"""

from __future__ import annotations

from typing import Any

import requests
from sqlalchemy import text

from tests.support import (
    ALL_SCOPES,
    bearer,
    introspect,
    keymint_cli,
    make_team,
    mint,
    post,
    start_server,
)


def _api(server: Any, method: str, path: str, token: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, server.url + path, headers=bearer(token), timeout=10,
                            **kwargs)


def test_a_revocation_through_one_server_binds_the_other_at_once(
        app, client, factory, database_url, servers):
    team = make_team(client, factory)  # in-process: setup only
    owner = team["owner"]
    one = start_server(servers, database_url)
    other = start_server(servers, database_url)

    def subject(scopes: str = "keys:read") -> tuple[Any, str, str]:
        email = factory.member(team.slug)
        key = factory.key(team.slug, email, scopes=scopes)
        token = mint(one, key)
        assert introspect(other, owner.key, token)["active"] is True
        return key, token, email

    # the token itself
    key, token, _ = subject()
    assert post(one, "/oauth/revoke", {"token": token}, key).status_code == 200
    assert introspect(other, owner.key, token) == {"active": False}

    # its key
    key, token, _ = subject()
    assert _api(one, "DELETE", f"/api/v1/keys/{key.client_id}", owner.token).status_code == 204
    assert introspect(other, owner.key, token) == {"active": False}

    # the secret that minted it (rotated by the key's own user, no grace period)
    key, token, _ = subject("keys:read keys:write")
    rotated = _api(one, "POST", f"/api/v1/keys/{key.client_id}/rotate", token,
                   json={"grace_period": 0})
    assert rotated.status_code == 200, rotated.text
    assert introspect(other, owner.key, token) == {"active": False}

    # its owner, disabled by the operator (a third process)
    key, token, email = subject()
    keymint_cli(database_url, "users", "disable", email)
    assert introspect(other, owner.key, token) == {"active": False}

    # its owner's membership
    key, token, email = subject()
    member_id = introspect(other, owner.key, token)["sub"]
    assert _api(one, "DELETE", f"/api/v1/members/{member_id}", owner.token).status_code == 204
    assert introspect(other, owner.key, token) == {"active": False}

    # and the servers still answer for everything else
    assert introspect(other, owner.key, owner.token)["active"] is True


def _unrevoke(app: Any, token: str) -> None:
    """Put a token in the state a mint racing a narrowing PATCH leaves: live, with the scopes
    it was minted with (its INSERT committed after the PATCH swept the key's tokens)."""
    from app import credentials
    from app.extensions import db

    with app.app_context():
        db.session.execute(text("UPDATE access_tokens SET revoked_at = NULL, "
                                "revoked_reason = NULL WHERE digest = :digest"),
                           {"digest": credentials.digest(token)})
        db.session.commit()


def test_a_token_holding_a_scope_its_key_lost_is_inactive(app, client, factory):
    team = make_team(client, factory)
    owner = team["owner"]
    key = factory.key(team.slug, owner.email, scopes="keys:read keys:write")
    wide = mint(client, key)
    assert introspect(client, owner.key, wide)["scope"] == "keys:read keys:write"

    narrowed = client.patch(f"/api/v1/keys/{key.client_id}", headers=owner.headers,
                            json={"scopes": ["keys:read"]})
    assert narrowed.status_code == 200, narrowed.get_json()
    _unrevoke(app, wide)

    assert introspect(client, owner.key, wide) == {"active": False}
    assert client.get("/api/v1/me", headers=bearer(wide)).status_code == 401
    rotated = post(client, "/oauth/rotate", {"token": wide, "scope": "keys:read"}, key)
    assert rotated.status_code == 400 and rotated.get_json()["error"] == "invalid_grant"
    # what the key still holds works as before
    narrow = mint(client, key)
    assert introspect(client, owner.key, narrow)["scope"] == "keys:read"
    assert client.get("/api/v1/me", headers=bearer(narrow)).status_code == 200


def test_a_token_within_its_keys_scopes_stays_active(app, client, factory):
    team = make_team(client, factory, scopes=ALL_SCOPES)
    owner = team["owner"]
    key = factory.key(team.slug, owner.email, scopes="keys:read keys:write")
    narrow = mint(client, key, scope="keys:read")
    assert client.patch(f"/api/v1/keys/{key.client_id}", headers=owner.headers,
                        json={"scopes": ["keys:read"]}).status_code == 200
    assert introspect(client, owner.key, narrow)["active"] is True
