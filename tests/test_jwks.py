"""GET /.well-known/jwks.json: which public keys are listed when, and how long to cache them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from freezegun import freeze_time
from joserfc.jwk import KeySet

from tests.support import first_signing_key, jwt_config

T0 = "2030-01-01T00:00:00Z"


@pytest.fixture
def app_config(database_url: str) -> dict[str, Any]:
    return jwt_config(database_url)


def _kids(client) -> list[str]:
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    return [k["kid"] for k in response.get_json()["keys"]]


def _rotate(app, *flags: str) -> str:
    result = app.test_cli_runner().invoke(args=["signing-keys", "rotate", "--json", *flags])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)["kid"]


def test_no_keys_is_an_empty_set_cached_like_any_other(client):
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.get_json() == {"keys": []}
    assert response.headers["Cache-Control"] == "public, max-age=300"
    assert response.mimetype == "application/json"


def test_a_request_with_credentials_is_not_cached(client):
    response = client.get("/.well-known/jwks.json", headers={"Authorization": "Bearer x"})
    assert response.headers["Cache-Control"] == "no-store"


def test_keys_are_public_jwks_a_resource_server_can_import(app, client):
    es = first_signing_key(app)
    ed = _rotate(app, "--alg", "EdDSA")
    body = client.get("/.well-known/jwks.json").get_json()
    by_kid = {k["kid"]: k for k in body["keys"]}
    assert set(by_kid) == {es, ed}
    assert by_kid[es] | {"x": "", "y": ""} == {"kty": "EC", "crv": "P-256", "kid": es,
                                                "alg": "ES256", "use": "sig", "x": "", "y": ""}
    assert by_kid[ed] | {"x": ""} == {"kty": "OKP", "crv": "Ed25519", "kid": ed,
                                      "alg": "EdDSA", "use": "sig", "x": ""}
    for jwk in body["keys"]:
        assert "d" not in jwk  # never a private member
    assert {k.kid for k in KeySet.import_key_set(body).keys} == {es, ed}


def test_metadata_points_to_the_jwks(client):
    metadata = client.get("/.well-known/oauth-authorization-server").get_json()
    assert metadata["jwks_uri"] == "http://localhost/.well-known/jwks.json"
    assert client.get(metadata["jwks_uri"].removeprefix("http://localhost")).status_code == 200


def test_a_rotation_publishes_the_new_key_at_once_and_drops_the_old_after_its_tokens(app, client):
    with freeze_time(T0):
        old = first_signing_key(app)
    with freeze_time("2030-01-01T01:00:00Z"):
        new = _rotate(app)
        assert _kids(client) == [old, new]  # published a full cache lifetime before it signs
    # The old key stops signing at 01:05:00 and stays for one JWT lifetime (300 s) more.
    with freeze_time("2030-01-01T01:09:59.999999Z"):
        assert _kids(client) == [old, new]
    with freeze_time("2030-01-01T01:10:00Z"):
        assert _kids(client) == [new]


def test_the_jwks_read_is_one_statement_outside_any_transaction(app, client):
    from tests.test_statement_budget import counted

    first_signing_key(app)
    with counted(app) as count:
        assert client.get("/.well-known/jwks.json").status_code == 200
    assert (count.statements, count.transactions) == (1, 0)
