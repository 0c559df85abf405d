"""POST /oauth/introspect (RFC 7662): the answer for active tokens and for everything else."""

from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time

from app import credentials
from app.extensions import db
from app.services import keys
from app.services.audit import Actor
from tests.support import introspect, mint

T0 = datetime(2030, 3, 1, tzinfo=UTC)


def test_active_token_has_every_rfc7662_field(client, factory):
    with freeze_time(T0):
        caller = factory.key()
        key = factory.key(caller.workspace, scopes="read write")
        token = mint(client, key, scope="read")
        body = introspect(client, caller, token)
    assert body["active"] is True
    assert body["scope"] == "read"
    assert body["client_id"] == key.client_id
    assert body["username"] == key.email
    assert body["sub"].isdigit()
    assert body["token_type"] == "Bearer"
    assert body["iat"] == int(T0.timestamp()) and body["exp"] == int(T0.timestamp()) + 900
    assert body["jti"].startswith("tok_")
    assert body["iss"] == "http://localhost"
    assert body["workspace_id"].isdigit()


def test_issuer_comes_from_configuration(app_factory, database_url):
    app, factory = app_factory(database_url, KEYMINT_ISSUER="https://auth.example.com")
    local = app.test_client()
    key = factory.key()
    token = mint(local, key)
    assert introspect(local, key, token)["iss"] == "https://auth.example.com"


def _bad_checksum():
    token = credentials.new_access_token()
    return token[:-1] + ("0" if token[-1] != "0" else "1")


@pytest.mark.parametrize("token", ["", "garbage", "at_" + "A" * 46, "sk_notatoken",
                                   "x" * 5000, "at_' OR 1=1 --"])
def test_garbage_is_exactly_inactive(client, factory, token):
    caller = factory.key()
    response = client.post("/oauth/introspect", data={"token": token or " "}, auth=caller.auth)
    assert response.status_code == 200
    assert response.get_json() == {"active": False}


def test_bad_checksum_and_unknown_tokens_are_inactive(client, factory):
    caller = factory.key()
    assert introspect(client, caller, _bad_checksum()) == {"active": False}
    assert introspect(client, caller, credentials.new_access_token()) == {"active": False}


def test_expired_token_is_inactive_at_the_exact_second(client, factory):
    with freeze_time(T0) as frozen:
        caller = factory.key()
        token = mint(client, caller)
        frozen.move_to(T0 + timedelta(seconds=899))
        assert introspect(client, caller, token)["active"] is True
        frozen.move_to(T0 + timedelta(seconds=900))
        assert introspect(client, caller, token) == {"active": False}


def test_revoked_token_and_revoked_key_are_inactive(app, client, factory):
    caller = factory.key()
    key = factory.key(caller.workspace)
    token_a, token_b = mint(client, key), mint(client, key)
    client.post("/oauth/revoke", data={"token": token_a}, auth=key.auth)
    assert introspect(client, caller, token_a) == {"active": False}
    assert introspect(client, caller, token_b)["active"] is True
    with app.app_context():
        keys.revoke_key(db.session, keys.get_key(db.session, key.client_id), Actor.cli())
        db.session.commit()
    assert introspect(client, caller, token_b) == {"active": False}


def test_another_workspaces_token_is_inactive(client, factory):
    caller = factory.key()
    foreign = factory.key()  # its own new workspace
    token = mint(client, foreign)
    assert introspect(client, caller, token) == {"active": False}
    assert introspect(client, foreign, token)["active"] is True


def test_caller_without_introspect_scope_is_refused(client, factory):
    caller = factory.key(scopes="read")
    token = mint(client, caller)
    response = client.post("/oauth/introspect", data={"token": token}, auth=caller.auth)
    assert response.status_code == 403
    assert response.get_json()["error"] == "insufficient_scope"


def test_unauthenticated_caller_gets_401(client, factory):
    token = mint(client, factory.key())
    response = client.post("/oauth/introspect", data={"token": token})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="keymint"'
    response = client.post("/oauth/introspect", data={"token": token},
                           auth=("key_AAAAAAAAAAAAAAAAAAAAAAAA", "nope"))
    assert response.status_code == 401
    assert "active" not in response.get_json()


def test_missing_token_is_invalid_request(client, factory):
    response = client.post("/oauth/introspect", data={}, auth=factory.key().auth)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"


def test_client_secret_post_and_any_token_type_hint_work(client, factory):
    caller = factory.key()
    token = mint(client, caller)
    response = client.post("/oauth/introspect", data={
        "token": token, "token_type_hint": "refresh_token", "client_id": caller.client_id,
        "client_secret": caller.secret})
    assert response.status_code == 200 and response.get_json()["active"] is True
