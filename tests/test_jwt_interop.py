"""Interop: keymint's JWT access tokens checked by a third-party JOSE library (PyJWT and its
PyJWKClient, as a resource server may already use them) against the published JWKS, and by
an RFC 9068 profile check of the header and the claims with their types."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import jwt as pyjwt
import pytest
from freezegun import freeze_time
from jwt import PyJWKClient
from jwt.utils import base64url_encode

from tests.support import (
    GRANT,
    ORDERS,
    REPORTS,
    SIGNING_KEK,
    add_resource,
    first_signing_key,
    jwt_config,
    mint,
    post,
    start_server,
    user_id,
)

ISSUER = "http://localhost"
API = ISSUER + "/api/v1"  # keymint's own API: the audience of a token of an unrestricted key
T0 = datetime(2030, 1, 1, tzinfo=UTC)
# RFC 9068 §2.2: the claims a JWT access token must carry.
REQUIRED = ["iss", "exp", "aud", "sub", "client_id", "iat", "jti"]


@pytest.fixture
def app_config(database_url: str) -> dict[str, Any]:
    return jwt_config(database_url)


@pytest.fixture
def served(app, client) -> Iterator[tuple[str, list[str]]]:
    """The app on a real loopback HTTP server (werkzeug, one thread), so PyJWKClient runs as
    shipped, transport included: (its JWKS URL, the paths it fetched in order)."""
    from werkzeug.serving import make_server

    paths: list[str] = []

    def counting(environ: dict[str, Any], start_response: Any) -> Any:
        paths.append(environ["PATH_INFO"])
        return app(environ, start_response)

    server = make_server("127.0.0.1", 0, counting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    # Discovery as a resource server does it: RFC 8414 metadata, then its jwks_uri (here on
    # the address this server listens on).
    jwks_uri = client.get("/.well-known/oauth-authorization-server").get_json()["jwks_uri"]
    assert jwks_uri == ISSUER + "/.well-known/jwks.json"
    yield f"http://127.0.0.1:{server.server_port}{urlsplit(jwks_uri).path}", paths
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def fetched(served) -> list[str]:
    return served[1]


@pytest.fixture
def jwks_client(served) -> PyJWKClient:
    return PyJWKClient(served[0], timeout=10)


@pytest.fixture
def jwt_workspace(app, factory) -> Callable[..., Any]:
    """key(**options): a key of a workspace that issues JWTs (a signing key signs at once)."""
    first_signing_key(app)
    owner = factory.user()
    slug = factory.workspace(owner=owner, token_format="jwt", max_key_lifetime_days=None)

    def key(scopes: str = "introspect keys:read", **options: Any) -> Any:
        return factory.key(slug, owner, scopes=scopes, **options)

    return key


def pyjwt_decode(jwks_client: PyJWKClient, token: str, audience: str = API,
                 algorithms: tuple[str, ...] = ("ES256",), **options: Any) -> dict[str, Any]:
    """What a PyJWT resource server does: the key named by the token's kid, then signature,
    iss, aud, exp, nbf, iat and the required claims."""
    signing_key = jwks_client.get_signing_key_from_jwt(token)
    return pyjwt.decode(token, signing_key.key, algorithms=list(algorithms), audience=audience,
                        issuer=ISSUER, options={"require": REQUIRED}, **options)


def assert_rfc9068_profile(token: str, audience: str | list[str]) -> dict[str, Any]:
    """RFC 9068 §2: the header and the claims, with the JSON types the profile gives them."""
    header = pyjwt.get_unverified_header(token)
    claims = pyjwt.decode(token, options={"verify_signature": False})
    # §2.1: typ "at+jwt" (the explicit type keeps an ID token from passing as one); signed,
    # never "none"; a kid, so the resource server picks the key from the JWKS.
    assert header["typ"] == "at+jwt"
    assert header["alg"] in ("ES256", "EdDSA")
    assert isinstance(header["kid"], str) and header["kid"]
    assert set(header) == {"typ", "alg", "kid"}
    # §2.2: required claims; iss/sub/client_id/jti are strings, exp/iat NumericDates.
    for name in ("iss", "sub", "client_id", "jti"):
        assert isinstance(claims[name], str) and claims[name], name
    for name in ("exp", "iat"):
        assert type(claims[name]) is int, name
    assert claims["iss"] == ISSUER and claims["exp"] > claims["iat"]
    # aud: a string for one audience, an array of strings for several (RFC 7519 §4.1.3).
    assert claims["aud"] == audience
    assert type(claims["aud"]) is type(audience)
    # §2.2.3: scope is one space-delimited string (RFC 8693 §4.2), not an array.
    assert isinstance(claims["scope"], str)
    assert claims["scope"].split() and " ".join(claims["scope"].split()) == claims["scope"]
    # keymint's own claim: the workspace, a string like sub.
    assert isinstance(claims["workspace_id"], str) and claims["workspace_id"].isdigit()
    assert set(claims) == {*REQUIRED, "scope", "workspace_id"}
    return claims


def _token(client, key, **data: Any) -> str:
    response = post(client, "/oauth/token", {**GRANT, **data}, key)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["access_token"]


# --- PyJWT against the JWKS -------------------------------------------------------------------


def test_pyjwt_validates_an_es256_token_from_the_jwks(app, client, jwks_client, fetched,
                                                      jwt_workspace):
    key = jwt_workspace()
    with freeze_time(T0):
        token = mint(client, key, scope="keys:read")
        claims = pyjwt_decode(jwks_client, token)
    assert claims["sub"] == user_id(app, key.email)
    assert claims["client_id"] == key.client_id and claims["scope"] == "keys:read"
    assert claims["iat"] == int(T0.timestamp()) and claims["exp"] == claims["iat"] + 300
    assert fetched == ["/.well-known/jwks.json"]
    assert_rfc9068_profile(token, API)


def test_pyjwt_validates_an_eddsa_token_from_the_jwks(app, client, factory, jwks_client):
    first_signing_key(app, alg="EdDSA")
    owner = factory.user()
    key = factory.key(factory.workspace(owner=owner, token_format="jwt"), owner)
    token = mint(client, key)
    assert pyjwt.get_unverified_header(token)["alg"] == "EdDSA"
    assert pyjwt_decode(jwks_client, token, algorithms=("EdDSA",))["client_id"] == key.client_id
    assert_rfc9068_profile(token, API)


def test_pyjwt_follows_a_key_rotation(app, client, jwks_client, fetched, jwt_workspace):
    key = jwt_workspace()
    with freeze_time(T0):
        before = mint(client, key)
        assert pyjwt_decode(jwks_client, before)["client_id"] == key.client_id
    # A minute on: past PyJWKClient's cooldown between forced refetches (30 s in PyJWT 2.15).
    with freeze_time(T0 + timedelta(seconds=60)):
        new_kid = first_signing_key(app)  # rotate --now: the new key signs from now on
        after = mint(client, key)
        assert pyjwt.get_unverified_header(after)["kid"] == new_kid != \
            pyjwt.get_unverified_header(before)["kid"]
        # An unknown kid makes PyJWKClient fetch the set again; the old key is still
        # published, so tokens signed before the rotation keep validating until they expire.
        assert pyjwt_decode(jwks_client, after)["client_id"] == key.client_id
        assert pyjwt_decode(jwks_client, before)["client_id"] == key.client_id
    assert len(fetched) == 2


def test_pyjwt_refuses_a_tampered_signature(client, jwks_client, jwt_workspace):
    token = mint(client, jwt_workspace())
    head, payload, signature = token.split(".")
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    with pytest.raises(pyjwt.InvalidSignatureError):
        pyjwt_decode(jwks_client, f"{head}.{payload}.{flipped}")


def test_pyjwt_refuses_another_audience(client, jwks_client, jwt_workspace):
    token = mint(client, jwt_workspace())
    with pytest.raises(pyjwt.InvalidAudienceError):
        pyjwt_decode(jwks_client, token, audience=ORDERS)


def test_pyjwt_refuses_the_token_from_its_exp_on(client, jwks_client, jwt_workspace):
    with freeze_time(T0):
        token = mint(client, jwt_workspace())
    exp = T0 + timedelta(seconds=300)
    with freeze_time(exp - timedelta(seconds=1)):
        assert pyjwt_decode(jwks_client, token)["exp"] == int(exp.timestamp())
    with freeze_time(exp), pytest.raises(pyjwt.ExpiredSignatureError):
        pyjwt_decode(jwks_client, token)


def test_a_kid_the_jwks_does_not_publish_is_refused(client, jwks_client, jwt_workspace):
    token = mint(client, jwt_workspace())
    _, payload, signature = token.split(".")
    forged = base64url_encode(
        b'{"typ":"at+jwt","alg":"ES256","kid":"not-published"}').decode()
    with pytest.raises(pyjwt.PyJWKClientError):
        pyjwt_decode(jwks_client, f"{forged}.{payload}.{signature}")


# --- the RFC 9068 profile: aud is a string for one audience, an array for several ---------------


def test_one_resource_is_a_string_audience(app, client, jwks_client, jwt_workspace):
    add_resource(app, ORDERS, "orders:read")
    add_resource(app, REPORTS, "reports:read")
    key = jwt_workspace(scopes="orders:read reports:read")
    token = _token(client, key, resource=ORDERS)
    claims = assert_rfc9068_profile(token, ORDERS)
    assert claims["scope"] == "orders:read"
    assert pyjwt_decode(jwks_client, token, audience=ORDERS)["aud"] == ORDERS


def test_several_resources_are_an_array_audience(app, client, jwks_client, jwt_workspace):
    add_resource(app, ORDERS, "orders:read")
    add_resource(app, REPORTS, "reports:read")
    key = jwt_workspace(scopes="orders:read reports:read")
    token = _token(client, key, resource=[ORDERS, REPORTS])
    claims = assert_rfc9068_profile(token, [ORDERS, REPORTS])
    assert claims["scope"] == "orders:read reports:read"
    # Each audience accepts it; PyJWT checks membership in the array.
    for audience in (ORDERS, REPORTS):
        assert pyjwt_decode(jwks_client, token, audience=audience)["aud"] == [ORDERS, REPORTS]
    with pytest.raises(pyjwt.InvalidAudienceError):
        pyjwt_decode(jwks_client, token, audience=API)


# --- over real HTTP ---------------------------------------------------------------------------


@pytest.mark.slow
def test_pyjwk_client_validates_a_live_servers_tokens(servers, database_url, app, factory):
    """PyJWKClient unpatched, against a real `keymint serve`: discovery, JWKS, signature."""
    import requests

    first_signing_key(app)
    owner = factory.user()
    key = factory.key(factory.workspace(owner=owner, token_format="jwt"), owner)
    server = start_server(servers, database_url, KEYMINT_SIGNING_KEY_ENCRYPTION_KEY=SIGNING_KEK)
    token = mint(server, key)
    metadata = requests.get(f"{server.url}/.well-known/oauth-authorization-server",
                            timeout=10).json()
    signing_key = PyJWKClient(metadata["jwks_uri"], timeout=10).get_signing_key_from_jwt(token)
    claims = pyjwt.decode(token, signing_key.key, algorithms=["ES256"],
                          audience=metadata["issuer"] + "/api/v1", issuer=metadata["issuer"],
                          options={"require": REQUIRED})
    assert claims["client_id"] == key.client_id
    assert pyjwt.get_unverified_header(token)["typ"] == "at+jwt"
