"""POST /oauth/token: client_credentials with Basic and POST auth, scopes and RFC 6749 errors."""

import base64
from urllib.parse import quote

import pytest

from tests.support import all_rows, audit_actions, introspect, mint

GRANT = {"grant_type": "client_credentials"}


def _assert_no_store(response):
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"


def test_basic_auth_issues_a_bearer_token_with_all_key_scopes(client, factory):
    key = factory.key(scopes="introspect read write")
    response = client.post("/oauth/token", data=GRANT, auth=key.auth)
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "introspect read write"
    assert body["access_token"].startswith("at_")
    assert body["expires_in"] == 900
    _assert_no_store(response)


def test_client_secret_post_works(client, factory):
    key = factory.key()
    response = client.post("/oauth/token", data={**GRANT, "client_id": key.client_id,
                                                  "client_secret": key.secret})
    assert response.status_code == 200


def test_basic_credentials_are_form_urlencoded_before_base64(client, factory):
    key = factory.key()
    raw = f"{quote(key.client_id, safe='')}:{quote(key.secret, safe='')}".encode()
    header = "Basic " + base64.b64encode(raw).decode()
    response = client.post("/oauth/token", data=GRANT, headers={"Authorization": header})
    assert response.status_code == 200


def test_requested_scope_must_be_a_subset(client, factory):
    key = factory.key(scopes="introspect read")
    narrowed = client.post("/oauth/token", data={**GRANT, "scope": "read"}, auth=key.auth)
    assert narrowed.status_code == 200 and narrowed.get_json()["scope"] == "read"
    wider = client.post("/oauth/token", data={**GRANT, "scope": "read write"}, auth=key.auth)
    assert wider.status_code == 400
    assert wider.get_json()["error"] == "invalid_scope"
    _assert_no_store(wider)


def test_no_refresh_token_is_issued(client, factory):
    response = client.post("/oauth/token", data=GRANT, auth=factory.key().auth)
    assert response.status_code == 200
    body = response.get_json()
    assert body["access_token"].startswith("at_") and "refresh_token" not in body


@pytest.mark.parametrize("auth", [("key_AAAAAAAAAAAAAAAAAAAAAAAA", "sk_x"), "wrong-secret"])
def test_unknown_client_and_wrong_secret_answer_identically(client, factory, auth):
    key = factory.key()
    if auth == "wrong-secret":
        auth = (key.client_id, key.secret[:-1] + ("A" if key.secret[-1] != "A" else "B"))
    response = client.post("/oauth/token", data=GRANT, auth=auth)
    assert response.status_code == 401
    assert response.get_json() == {"error": "invalid_client",
                                   "error_description": "Client authentication failed."}
    assert response.headers["WWW-Authenticate"] == 'Basic realm="keymint"'
    _assert_no_store(response)


def test_failed_authentication_is_audited_without_the_secret(app, client, factory):
    key = factory.key()
    client.post("/oauth/token", data=GRANT, auth=(key.client_id, "sk_guess"))
    events = [e for e in all_rows(app, "audit_events") if e["action"] == "client.auth_failed"]
    assert len(events) == 1
    assert events[0]["target_id"] == key.client_id
    assert "sk_guess" not in repr(events)


def test_revoked_key_is_invalid_client(app, client, factory):
    from app.extensions import db
    from app.services import keys
    from app.services.audit import Actor

    key = factory.key()
    with app.app_context():
        keys.revoke_key(db.session, keys.get_key(db.session, key.client_id), Actor.cli())
        db.session.commit()
    response = client.post("/oauth/token", data=GRANT, auth=key.auth)
    assert response.status_code == 401 and response.get_json()["error"] == "invalid_client"


@pytest.mark.parametrize("data, query, description", [
    ({**GRANT, "scope": ["read", "read"]}, "", "more than once"),
    (GRANT, "?client_id=x", "POST body"),
])
def test_repeated_parameters_and_query_strings_are_invalid_request(client, factory, data, query,
                                                                     description):
    key = factory.key(scopes="read")
    response = client.post("/oauth/token" + query, data=data, auth=key.auth)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"
    assert description in response.get_json()["error_description"]


def test_credentials_in_header_and_body_are_invalid_request(client, factory):
    key = factory.key()
    response = client.post("/oauth/token", data={**GRANT, "client_id": key.client_id,
                                                  "client_secret": key.secret}, auth=key.auth)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"


def test_missing_credentials_are_invalid_client(client):
    response = client.post("/oauth/token", data=GRANT)
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_client"


def test_other_grant_types_are_unsupported(client, factory):
    response = client.post("/oauth/token", data={"grant_type": "password"},
                           auth=factory.key().auth)
    assert response.status_code == 400
    assert response.get_json()["error"] == "unsupported_grant_type"


def test_json_body_is_invalid_request(client, factory):
    response = client.post("/oauth/token", json=GRANT, auth=factory.key().auth)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"


def test_get_is_not_allowed(client):
    assert client.get("/oauth/token?grant_type=client_credentials").status_code == 405


def test_issuance_writes_digest_row_audit_event_and_last_used(app, client, factory):
    key = factory.key()
    token = mint(client, key)
    tokens = all_rows(app, "access_tokens")
    assert len(tokens) == 1 and token not in repr(tokens)
    assert audit_actions(app)[-1] == "token.issued"
    api_key = next(k for k in all_rows(app, "api_keys") if k["client_id"] == key.client_id)
    assert api_key["last_used_at"] is not None and api_key["last_used_ip"] == "127.0.0.1"


def test_last_used_is_throttled_to_one_write_a_minute(app, client, factory):
    from datetime import UTC, datetime, timedelta

    from freezegun import freeze_time

    t0 = datetime(2031, 1, 1, tzinfo=UTC)
    with freeze_time(t0) as frozen:
        key = factory.key()
        mint(client, key)
        frozen.move_to(t0 + timedelta(seconds=59))
        mint(client, key)

        def last_used():
            from app.extensions import db
            from app.services import keys

            with app.app_context():
                return keys.get_key(db.session, key.client_id).last_used_at

        assert last_used() == t0
        frozen.move_to(t0 + timedelta(seconds=60))
        mint(client, key)
        assert last_used() == t0 + timedelta(seconds=60)


def test_token_ttl_follows_configuration(app_factory, database_url):
    app, factory = app_factory(database_url, KEYMINT_ACCESS_TOKEN_TTL=60)
    local = app.test_client()
    key = factory.key()
    body = local.post("/oauth/token", data=GRANT, auth=key.auth).get_json()
    assert 59 <= body["expires_in"] <= 60
    assert introspect(local, key, body["access_token"])["exp"] - introspect(
        local, key, body["access_token"])["iat"] == 60
