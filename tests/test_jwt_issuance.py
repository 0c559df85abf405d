"""JWT access tokens (RFC 9068) from /oauth/token for workspaces whose token_format is jwt,
checked the way a resource server checks them: joserfc against the published JWKS."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from freezegun import freeze_time
from joserfc import jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import KeySet

from app import credentials
from tests.support import (
    ALL_SCOPES,
    audit_events,
    first_signing_key,
    jwt_config,
    make_team,
    token_response,
    user_id,
)

ISSUER = "http://localhost"
API = ISSUER + "/api/v1"  # keymint's own API: the audience of a token of an unrestricted key
T0 = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def app_config(database_url: str) -> dict[str, Any]:
    return jwt_config(database_url)


def verify(client, token: str, now: datetime | None = None) -> jwt.Token:
    """What a resource server does: JWKS, signature, typ, then iss/aud/exp."""
    keys = KeySet.import_key_set(client.get("/.well-known/jwks.json").get_json())
    decoded = jwt.decode(token, keys, algorithms=["ES256", "EdDSA"])
    assert decoded.header["typ"] == "at+jwt"
    registry = jwt.JWTClaimsRegistry(
        now=int((now or datetime.now(UTC)).timestamp()),
        iss={"essential": True, "value": ISSUER}, aud={"essential": True, "value": API},
        exp={"essential": True}, sub={"essential": True}, client_id={"essential": True},
        jti={"essential": True}, iat={"essential": True})
    registry.validate(decoded.claims)
    return decoded


@pytest.fixture
def jwt_key(app, factory):
    """A key of a workspace that issues JWTs, and the first signing key (signing at once)."""
    first_signing_key(app)
    owner = factory.user()
    slug = factory.workspace(owner=owner, token_format="jwt", max_key_lifetime_days=None)
    return factory.key(slug, owner, scopes="introspect keys:read")


def _issue(client, key, **data: str) -> dict[str, Any]:
    response = token_response(client, key, **data)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_the_token_is_an_rfc9068_jwt_with_every_claim(app, client, jwt_key):
    with freeze_time(T0):
        body = _issue(client, jwt_key, scope="keys:read")
        token = body["access_token"]
        decoded = verify(client, token, T0)
    assert body["token_type"] == "Bearer" and body["expires_in"] == 300
    assert body["scope"] == "keys:read"
    kid = json.loads(client.get("/.well-known/jwks.json").data)["keys"][0]["kid"]
    assert decoded.header == {"typ": "at+jwt", "alg": "ES256", "kid": kid}
    claims = decoded.claims
    listed = client.get(f"/api/v1/keys/{jwt_key.client_id}/tokens",
                        headers={"Authorization": f"Bearer {token}"}).get_json()["tokens"]
    assert claims == {
        "iss": ISSUER, "sub": user_id(app, jwt_key.email), "aud": API,
        "client_id": jwt_key.client_id, "scope": "keys:read",
        "jti": listed[0]["jti"], "iat": int(T0.timestamp()),
        "exp": int(T0.timestamp()) + 300, "workspace_id": claims["workspace_id"]}
    assert claims["jti"].startswith(credentials.TOKEN_ID_PREFIX)
    assert claims["workspace_id"].isdigit()
    event = audit_events(app, "token.issued")[-1]
    assert event.target_id == claims["jti"]
    assert event.details["format"] == "jwt" and event.details["kid"] == kid


def test_eddsa_keys_sign_eddsa_tokens(app, client, factory):
    first_signing_key(app, alg="EdDSA")
    owner = factory.user()
    key = factory.key(factory.workspace(owner=owner, token_format="jwt"), owner)
    decoded = verify(client, _issue(client, key)["access_token"])
    assert decoded.header["alg"] == "EdDSA"


def test_opaque_workspaces_keep_opaque_tokens(client, factory, jwt_key):
    owner = factory.user()
    opaque = factory.key(factory.workspace(owner=owner), owner)
    body = _issue(client, opaque)
    assert credentials.is_access_token(body["access_token"]) and body["expires_in"] == 900


def test_a_tampered_or_foreign_signature_does_not_verify(client, jwt_key):
    token = _issue(client, jwt_key)["access_token"]
    head, payload, signature = token.split(".")
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    with pytest.raises(BadSignatureError):
        verify(client, f"{head}.{payload}.{flipped}")


@pytest.mark.parametrize(("policy", "jwt_ttl", "expected"), [
    ({}, 300, 300),                              # the JWT default, shorter than opaque's 900
    ({"token_ttl_seconds": 60}, 300, 60),        # a shorter workspace policy wins
    ({"token_ttl_seconds": 3600}, 300, 300),     # a longer one does not
    ({}, 1200, 900),                             # never longer than an opaque token would be
])
def test_ttl_is_the_shortest_of_the_policies(app, client, factory, policy, jwt_ttl, expected):
    app.config["KEYMINT_JWT_ACCESS_TOKEN_TTL"] = jwt_ttl
    first_signing_key(app)
    owner = factory.user()
    key = factory.key(factory.workspace(owner=owner, token_format="jwt",
                                        max_key_lifetime_days=None, **policy), owner)
    with freeze_time(T0):
        body = _issue(client, key)
    assert body["expires_in"] == expected
    claims = jwt.decode(body["access_token"], KeySet.import_key_set(
        client.get("/.well-known/jwks.json").get_json())).claims
    assert claims["exp"] - claims["iat"] == expected


def test_the_key_and_secret_lifetimes_cap_the_token(app, client, factory):
    first_signing_key(app)
    owner = factory.user()
    slug = factory.workspace(owner=owner, token_format="jwt")
    with freeze_time(T0):
        key = factory.key(slug, owner, expires_at=T0 + timedelta(seconds=100))
        body = _issue(client, key)
    assert body["expires_in"] == 100
    claims = verify(client, body["access_token"], T0).claims
    assert claims["exp"] == int(T0.timestamp()) + 100


def test_no_signing_key_is_a_503_and_a_log_line_never_an_opaque_token(app, client, factory,
                                                                       caplog):
    owner = factory.user()
    key = factory.key(factory.workspace(owner=owner, token_format="jwt"), owner)
    response = token_response(client, key)
    assert response.status_code == 503
    assert response.get_json()["error"] == "temporarily_unavailable"
    assert response.headers["Retry-After"] == "5"
    assert "access_token" not in response.get_json()
    assert "no signing key is active" in caplog.text
    assert audit_events(app, "token.issued") == []


def test_without_the_encryption_key_no_jwt_is_issued(app, client, jwt_key, caplog):
    app.config["KEYMINT_SIGNING_KEY_ENCRYPTION_KEY"] = None
    response = token_response(client, jwt_key)
    assert response.status_code == 503
    assert "KEYMINT_SIGNING_KEY_ENCRYPTION_KEY is not set" in caplog.text


def test_a_wrong_encryption_key_cannot_sign(app, client, jwt_key, caplog):
    from app.config import Secret

    app.config["KEYMINT_SIGNING_KEY_ENCRYPTION_KEY"] = Secret(b"w" * 32)
    response = token_response(client, jwt_key)
    assert response.status_code == 503
    assert "cannot be decrypted with the configured" in caplog.text
    assert "w" * 32 not in caplog.text


# --- the workspace policy -------------------------------------------------------------------


def test_owners_switch_the_workspace_to_jwt_and_back(app, client, factory):
    first_signing_key(app)
    team = make_team(client, factory, scopes=ALL_SCOPES)
    owner = team["owner"]
    current = client.get("/api/v1/workspace", headers=owner.headers).get_json()
    assert current["token_format"] == "opaque"
    r = client.patch("/api/v1/workspace", headers=owner.headers, json={"token_format": "jwt"})
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["token_format"] == "jwt"
    assert r.get_json()["effective_token_ttl_seconds"] == 300
    verify(client, _issue(client, owner.key)["access_token"])
    # The opaque token minted before the switch still works.
    assert client.get("/api/v1/workspace", headers=owner.headers).status_code == 200
    event = audit_events(app, "workspace.policy_changed")[-1]
    assert event.details == {"token_format": {"from": "opaque", "to": "jwt"}}
    r = client.patch("/api/v1/workspace", headers=owner.headers, json={"token_format": "opaque"})
    assert r.get_json()["token_format"] == "opaque"
    assert credentials.is_access_token(_issue(client, owner.key)["access_token"])


@pytest.mark.parametrize("value", ["JWT", "paseto", "", None, 1])
def test_an_unknown_format_is_a_400(client, factory, value):
    team = make_team(client, factory)
    r = client.patch("/api/v1/workspace", headers=team["owner"].headers,
                     json={"token_format": value})
    assert r.status_code == 400
    assert r.get_json()["error"] == "invalid_request"


def test_jwt_is_refused_on_a_server_without_the_encryption_key(app, client, factory):
    app.config["KEYMINT_SIGNING_KEY_ENCRYPTION_KEY"] = None
    team = make_team(client, factory)
    r = client.patch("/api/v1/workspace", headers=team["owner"].headers,
                     json={"token_format": "jwt"})
    assert r.status_code == 400
    assert "KEYMINT_SIGNING_KEY_ENCRYPTION_KEY" in r.get_json()["error_description"]
    assert client.get("/api/v1/workspace",
                      headers=team["owner"].headers).get_json()["token_format"] == "opaque"


def _b64decode(segment: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def test_a_second_implementation_verifies_the_signature_from_the_jwks(client, jwt_key):
    """Interop: `cryptography` alone (no JOSE library) checks an ES256 token against the
    published key, as RFC 7518 §3.4 defines it (r || s, 32 bytes each, over SHA-256)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    token = _issue(client, jwt_key)["access_token"]
    head, payload, signature = token.split(".")
    header = json.loads(_b64decode(head))
    jwk = next(k for k in client.get("/.well-known/jwks.json").get_json()["keys"]
               if k["kid"] == header["kid"])
    public = ec.EllipticCurvePublicNumbers(
        int.from_bytes(_b64decode(jwk["x"]), "big"), int.from_bytes(_b64decode(jwk["y"]), "big"),
        ec.SECP256R1()).public_key()
    raw = _b64decode(signature)
    assert len(raw) == 64
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    public.verify(der, f"{head}.{payload}".encode(), ec.ECDSA(hashes.SHA256()))
    claims = json.loads(_b64decode(payload))
    # RFC 9068 §2.2: the required claims, with the types the profile gives them.
    assert header["typ"] == "at+jwt" and header["alg"] == "ES256"
    for name in ("iss", "sub", "client_id", "jti", "aud"):
        assert isinstance(claims[name], str) and claims[name], name
    for name in ("exp", "iat"):
        assert isinstance(claims[name], int), name
    assert claims["exp"] > claims["iat"]
