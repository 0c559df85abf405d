"""Token requests naming resources (RFC 8707): audience, scope limits, invalid_target."""

import pytest

from tests.support import (
    GRANT,
    ORDER_ROUTES,
    ORDERS,
    REPORTS,
    add_resource,
    audit_events,
    introspect,
    mint,
    post,
)

ORDER_SCOPES = "orders:read orders:write orders:items"


@pytest.fixture
def registered(app):
    add_resource(app, ORDERS, ORDER_SCOPES, ORDER_ROUTES)
    add_resource(app, REPORTS, "reports:read")


def _token(client, key, **data):
    return post(client, "/oauth/token", {**GRANT, **data}, key)


def test_named_resource_is_the_audience_and_limits_the_scopes(client, factory, registered):
    slug_key = factory.key(scopes="introspect orders:read reports:read")
    response = _token(client, slug_key, resource=ORDERS)
    assert response.status_code == 200, response.text
    assert response.json["scope"] == "orders:read"  # introspect and reports:read dropped
    body = introspect(client, slug_key, response.json["access_token"])
    assert body["aud"] == [ORDERS] and body["scope"] == "orders:read"
    (event,) = [e for e in audit_events(client.application, "token.issued")]
    assert event.details["audience"] == [ORDERS]


def test_repeated_resource_names_several(client, factory, registered):
    key = factory.key(scopes="introspect orders:read reports:read")
    response = _token(client, key, resource=[ORDERS, REPORTS], scope="orders:read reports:read")
    assert response.status_code == 200, response.text
    body = introspect(client, key, response.json["access_token"])
    assert body["aud"] == [ORDERS, REPORTS]


def test_without_resource_the_audience_is_every_resource_the_key_may_use(client, factory,
                                                                        registered):
    restricted = factory.key(scopes="introspect orders:read", resources=[ORDERS])
    body = introspect(client, restricted, mint(client, restricted))
    assert body["aud"] == [ORDERS]
    assert body["scope"] == "introspect orders:read"  # scopes as today

    unrestricted = factory.key(scopes="introspect keys:read")
    body = introspect(client, unrestricted, mint(client, unrestricted))
    # keymint's own API first, then every registered resource.
    assert body["aud"] == ["http://localhost/api/v1", ORDERS, REPORTS]


@pytest.mark.parametrize(("resource", "says"), [
    ("https://unknown.example.com", "unknown resource"),
    ("orders.example.com", "absolute"),
    ("https://orders.example.com#x", "fragment"),
    ("", "absolute URI"),
])
def test_unknown_or_malformed_resource_is_invalid_target(client, factory, registered,
                                                         resource, says):
    key = factory.key(scopes="orders:read")
    response = _token(client, key, resource=resource)
    assert response.status_code == 400
    assert response.json["error"] == "invalid_target"
    assert says in response.json["error_description"]


def test_resource_the_key_may_not_use_is_invalid_target(client, factory, registered):
    key = factory.key(scopes="orders:read", resources=[ORDERS])
    response = _token(client, key, resource=REPORTS)
    assert response.status_code == 400
    assert response.json == {"error": "invalid_target", "error_description":
                             f"this key may not be used for {REPORTS}"}
    assert audit_events(client.application, "token.issued") == []


def test_scope_no_named_resource_defines_is_invalid_scope(client, factory, registered):
    key = factory.key(scopes="introspect orders:read reports:read")
    response = _token(client, key, resource=ORDERS, scope="reports:read")
    assert response.status_code == 400
    assert response.json["error"] == "invalid_scope"
    assert "reports:read" in response.json["error_description"]
    # a scope the key does not hold stays the error it always was
    response = _token(client, key, resource=ORDERS, scope="orders:write")
    assert response.json["error"] == "invalid_scope"
    assert "not allowed for this key" in response.json["error_description"]


def test_other_parameters_still_may_not_repeat(client, factory, registered):
    key = factory.key(scopes="orders:read")
    response = _token(client, key, scope=["orders:read", "orders:read"])
    assert response.status_code == 400
    assert response.json["error"] == "invalid_request"


def test_restricted_keys_hold_only_their_resources_scopes(app, factory, registered):
    from app.services.errors import InvalidInput

    with pytest.raises(InvalidInput, match="scope 'keys:read' is not defined by the key's"):
        factory.key(scopes="orders:read keys:read", resources=[ORDERS])
    with pytest.raises(InvalidInput, match="unknown resource"):
        factory.key(scopes="orders:read", resources=["https://nope.example.com"])
    # introspect is keymint's own and always allowed
    factory.key(scopes="introspect orders:read", resources=[ORDERS])


def test_rotation_keeps_the_audience(client, factory, registered):
    key = factory.key(scopes="introspect orders:read reports:read")
    token = _token(client, key, resource=ORDERS).json["access_token"]
    rotated = post(client, "/oauth/rotate", {"token": token}, key)
    assert rotated.status_code == 200, rotated.text
    assert introspect(client, key, rotated.json["access_token"])["aud"] == [ORDERS]


def test_a_new_resource_is_seen_by_the_next_request(client, factory, registered):
    """The per-process catalog is refreshed when its version changes (no stale answer)."""
    key = factory.key(scopes="introspect billing:read")
    assert _token(client, key, resource="https://billing.example.com").json["error"] == \
        "invalid_target"
    add_resource(client.application, "https://billing.example.com", "billing:read")
    response = _token(client, key, resource="https://billing.example.com")
    assert response.status_code == 200, response.text
    assert response.json["scope"] == "billing:read"


@pytest.mark.slow
def test_real_clients_pass_resource_through_fetch_token(app, live_server, factory, monkeypatch):
    from authlib.integrations.requests_client import OAuth2Session as AuthlibSession
    from oauthlib.oauth2 import BackendApplicationClient
    from requests_oauthlib import OAuth2Session

    add_resource(app, ORDERS, ORDER_SCOPES, ORDER_ROUTES)
    add_resource(app, REPORTS, "reports:read")
    key = factory.key(scopes="introspect orders:read reports:read")

    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # loopback test server only
    session = OAuth2Session(client=BackendApplicationClient(client_id=key.client_id))
    token = session.fetch_token(token_url=f"{live_server.url}/oauth/token",
                                client_id=key.client_id, client_secret=key.secret,
                                resource=ORDERS)
    assert token["scope"] == ["orders:read"]
    assert introspect(live_server, key, token["access_token"])["aud"] == [ORDERS]

    authlib = AuthlibSession(key.client_id, key.secret)
    token = authlib.fetch_token(f"{live_server.url}/oauth/token",
                                grant_type="client_credentials", resource=REPORTS)
    assert token["scope"] == "reports:read"
    assert introspect(live_server, key, token["access_token"])["aud"] == [REPORTS]
