"""A JWT access token is still a keymint token: introspected, revoked, rotated, listed and
accepted by keymint's own API exactly like an opaque one; garbage costs no token query."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.support import (
    ALL_SCOPES,
    audit_events,
    bearer,
    first_signing_key,
    introspect,
    jwt_config,
    mint,
    post,
)
from tests.test_statement_budget import counted


@pytest.fixture
def app_config(database_url: str) -> dict[str, Any]:
    return jwt_config(database_url)


@pytest.fixture
def keys(app, client, factory):
    """An introspecting key and a key with every scope in a JWT workspace, both used once."""
    first_signing_key(app)
    owner = factory.user()
    slug = factory.workspace(owner=owner, token_format="jwt")
    caller = factory.key(slug, owner, scopes="introspect")
    subject = factory.key(slug, owner, scopes=ALL_SCOPES)
    introspect(client, caller, mint(client, subject))  # last_used_at written now, not below
    return caller, subject


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def test_introspection_answers_for_a_jwt_in_one_statement(app, client, keys):
    caller, subject = keys
    token = mint(client, subject)
    assert token.count(".") == 2
    with counted(app) as count:
        answer = introspect(client, caller, token)
    assert (count.statements, count.transactions) == (1, 0), count.sql
    claims = _claims(token)
    assert answer["active"] is True
    for name in ("jti", "sub", "client_id", "scope", "exp", "iat", "iss", "workspace_id"):
        assert answer[name] == claims[name], name


def test_a_revoked_jwt_is_inactive_at_once_for_introspection_and_the_api(app, client, keys):
    caller, subject = keys
    token = mint(client, subject)
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200
    assert post(client, "/oauth/revoke", {"token": token}, subject).status_code == 200
    assert introspect(client, caller, token) == {"active": False}
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 401
    assert audit_events(app, "token.revoked")[-1].target_id == _claims(token)["jti"]


def test_revoking_the_key_ends_its_jwts(client, keys):
    caller, subject = keys
    token = mint(client, subject)
    response = client.delete(f"/api/v1/keys/{subject.client_id}/tokens",
                             headers=bearer(mint(client, subject)))
    assert response.status_code == 200, response.get_json()
    assert introspect(client, caller, token) == {"active": False}


def test_rotation_of_a_jwt_gives_a_jwt_and_retires_the_old_one(client, keys):
    caller, subject = keys
    token = mint(client, subject)
    response = post(client, "/oauth/rotate", {"token": token, "scope": "keys:read"}, subject)
    assert response.status_code == 200, response.get_json()
    new = response.get_json()["access_token"]
    assert _claims(new)["scope"] == "keys:read" and _claims(new)["jti"] != _claims(token)["jti"]
    assert introspect(client, caller, token) == {"active": False}
    assert introspect(client, caller, new)["active"] is True
    # Reusing the rotated JWT is reuse, as with opaque tokens: the lineage is revoked.
    again = post(client, "/oauth/rotate", {"token": token}, subject)
    assert again.status_code == 400 and again.get_json()["error"] == "invalid_grant"
    assert introspect(client, caller, new) == {"active": False}


def test_jwts_are_listed_by_their_jti(client, keys):
    _, subject = keys
    token = mint(client, subject)
    listed = client.get(f"/api/v1/keys/{subject.client_id}/tokens",
                        headers=bearer(token)).get_json()["tokens"]
    assert _claims(token)["jti"] in {t["jti"] for t in listed}


def test_a_jwt_of_another_workspace_is_inactive(client, factory, keys):
    caller, _ = keys
    owner = factory.user()
    other = factory.key(factory.workspace(owner=owner, token_format="jwt"), owner)
    assert introspect(client, caller, mint(client, other)) == {"active": False}


def _forged(token: str, **header: Any) -> str:
    head = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    return ".".join([_b64({**head, **header}), *token.split(".")[1:]])


@pytest.mark.parametrize("make", [
    pytest.param(lambda t: t[:-4] + ("AAAA" if t[-4:] != "AAAA" else "BBBB"),
                 id="tampered signature"),
    pytest.param(lambda t: _forged(t, kid="unknown"), id="unknown kid"),
    pytest.param(lambda t: ".".join([_b64({"alg": "ES256", "typ": "at+jwt", "kid": "k"}),
                                     _b64({**_claims(t), "scope": "audit:read"}),
                                     t.split(".")[2]]), id="forged claims"),
])
def test_a_changed_jwt_is_unknown(client, keys, make):
    """Looked up by the digest of the whole token: any changed byte is another token."""
    caller, subject = keys
    token = mint(client, subject)
    assert introspect(client, caller, make(token)) == {"active": False}
    assert client.get("/api/v1/me", headers=bearer(make(token))).status_code == 401


def _unsigned(header: dict[str, Any]) -> str:
    return f"{_b64(header)}.{_b64({'sub': '1'})}.x"


@pytest.mark.parametrize("token", [
    pytest.param(_unsigned({"alg": "none", "typ": "at+jwt", "kid": "k"}), id="alg none"),
    pytest.param(_unsigned({"alg": "HS256", "typ": "at+jwt", "kid": "k"}), id="alg HS256"),
    pytest.param(_unsigned({"alg": "ES256", "typ": "JWT", "kid": "k"}), id="wrong typ"),
    pytest.param(_unsigned({"alg": "ES256", "typ": "at+jwt"}), id="no kid"),
    pytest.param("eyJ" + "A" * 5000 + ".eyJ.x", id="oversized"),
    pytest.param("eyJhbGciOi.eyJzdWIi", id="two segments"),
])
def test_jwt_shaped_garbage_never_reaches_the_token_table(app, client, keys, token):
    caller, _ = keys
    with counted(app) as count:
        assert post(client, "/oauth/introspect", {"token": token}, caller).get_json() == {
            "active": False}
    assert not any("access_tokens" in sql for sql in count.sql), count.sql
    assert count.transactions == 0


def test_an_at_jwt_keymint_did_not_issue_is_no_legacy_key(app, client, keys):
    caller, _ = keys
    token = _unsigned({"alg": "ES256", "typ": "at+jwt", "kid": "k"})
    with counted(app) as count:
        assert introspect(client, caller, token) == {"active": False}
    assert not any("legacy_keys" in sql for sql in count.sql), count.sql
    assert count.statements == 1


def test_jwt_issuance_adds_one_statement_for_the_signing_key(app, client, keys):
    _, subject = keys
    with counted(app) as count:
        mint(client, subject)
    assert count.statements <= 4 and count.transactions == count.ends == 1, count.sql


def test_the_bearer_check_takes_a_jwt_in_one_statement(app, client, keys):
    _, subject = keys
    token = mint(client, subject)
    with counted(app) as count:
        response = client.get("/api/v1/me", headers=bearer(token))
    assert response.status_code == 200
    assert response.get_json()["token"]["jti"] == _claims(token)["jti"]
    assert (count.statements, count.transactions) == (1, 0)


def test_a_jwt_never_reaches_a_log_line_or_the_audit_user_agent(app, client, keys, caplog):
    from app.runtime.logs import redact

    caller, subject = keys
    token = mint(client, subject)
    line = f"GET /x?access={token} 200"
    assert token not in redact(line) and "[REDACTED]" in redact(line)
    introspect(client, caller, mint(client, subject))
    response = client.get("/api/v1/me", headers={**bearer(token), "User-Agent": f"sdk {token}"})
    assert response.status_code == 200
    post(client, "/oauth/revoke", {"token": token}, subject)
    with app.app_context():
        from app.services.audit import clean_user_agent

        assert clean_user_agent(f"sdk/1 {token}") == "sdk/1 [REDACTED]"
    for event in audit_events(app):
        assert token not in json.dumps([event.user_agent, event.details])
    assert token not in caplog.text
