"""keymint's own /api/v1 refuses tokens meant for other resources (RFC 8707 §2, RFC 6750)."""

import pytest
from sqlalchemy import update

from tests.support import GRANT, ORDERS, REPORTS, add_resource, bearer, post

OWN_API = "http://localhost/api/v1"


@pytest.fixture
def key(app, factory):
    add_resource(app, ORDERS, "orders:read")
    add_resource(app, REPORTS, "reports:read")
    return factory.key(scopes="keys:read orders:read reports:read")


def _token(client, key, *resources, base_url=None):
    data = {**GRANT, **({"resource": list(resources)} if resources else {})}
    if base_url is None:
        response = post(client, "/oauth/token", data, key)
    else:
        response = client.post("/oauth/token", data=data, auth=key.auth, base_url=base_url)
    assert response.status_code == 200, response.json
    return response.json["access_token"]


@pytest.mark.parametrize("path", ["/api/v1/me", "/api/v1/keys", "/api/v1/resources",
                                  "/api/v1/workspace"])
def test_a_token_for_other_resources_is_invalid_on_every_route(client, key, path):
    token = _token(client, key, ORDERS, REPORTS)
    response = client.get(path, headers=bearer(token))
    assert response.status_code == 401
    assert response.json["error"] == "invalid_token"
    assert "audience" in response.json["error_description"]
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="keymint"') and 'error="invalid_token"' in challenge


def test_a_token_naming_keymint_own_api_is_accepted(client, key):
    assert client.get("/api/v1/me", headers=bearer(_token(client, key))).status_code == 200
    both = _token(client, key, OWN_API, ORDERS)
    assert client.get("/api/v1/keys", headers=bearer(both)).status_code == 200
    only = _token(client, key, OWN_API)
    assert client.get("/api/v1/me", headers=bearer(only)).json["scopes"] == ["keys:read"]


def test_a_token_from_before_resources_is_still_accepted(app, client, key):
    from app.extensions import db
    from app.models import AccessToken

    token = _token(client, key, ORDERS)
    with app.app_context():  # as before migration 0007: no audience at all
        db.session.execute(update(AccessToken).values(audience=None))
        db.session.commit()
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200


def test_without_issuer_another_host_name_of_the_server_is_still_its_api(client, key):
    """With the issuer derived per request, a token minted through one host name carries
    that host's /api/v1; it must work through another name of the same server."""
    token = _token(client, key, base_url="http://keymint.internal")
    response = client.get("/api/v1/me", headers=bearer(token),
                          base_url="http://auth.example.com")
    assert response.status_code == 200


def test_with_issuer_the_audience_must_name_it_exactly(app_factory, database_url):
    app, factory = app_factory(database_url, KEYMINT_ISSUER="https://auth.example.com")
    client = app.test_client()
    lookalike = "https://orders.example.com/api/v1"  # a path like keymint's, another API
    add_resource(app, lookalike, "orders:read")
    key = factory.key(scopes="keys:read orders:read")
    own = _token(client, key, "https://auth.example.com/api/v1")
    assert client.get("/api/v1/keys", headers=bearer(own)).status_code == 200
    other = _token(client, key, lookalike)
    response = client.get("/api/v1/me", headers=bearer(other))
    assert response.status_code == 401 and response.json["error"] == "invalid_token"
    # unrestricted key, no resource: its audience holds keymint's API
    assert client.get("/api/v1/me", headers=bearer(_token(client, key))).status_code == 200
