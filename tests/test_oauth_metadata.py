"""GET /.well-known/oauth-authorization-server (RFC 8414)."""


def test_metadata_lists_endpoints_grant_and_auth_methods(client):
    response = client.get("/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    body = response.get_json()
    assert body["issuer"] == "http://localhost"
    assert body["token_endpoint"] == "http://localhost/oauth/token"
    assert body["introspection_endpoint"] == "http://localhost/oauth/introspect"
    assert body["revocation_endpoint"] == "http://localhost/oauth/revoke"
    assert body["grant_types_supported"] == ["client_credentials"]
    for endpoint in ("token", "introspection", "revocation"):
        assert body[f"{endpoint}_endpoint_auth_methods_supported"] == [
            "client_secret_basic", "client_secret_post"]
    assert "introspect" in body["scopes_supported"]
    # derived from the Host header: never stored by a shared cache
    assert response.headers["Cache-Control"] == "no-store"


def test_derived_issuer_follows_each_request_host_and_scheme(client):
    # Without KEYMINT_ISSUER the issuer is the URL each request reached; a process serving
    # several names (or http and https) never answers one request with another's issuer.
    for base in ("http://a.example", "https://b.example", "http://a.example:8080",
                 "http://a.example"):
        body = client.get("/.well-known/oauth-authorization-server", base_url=base).get_json()
        assert body["issuer"] == base
        assert body["token_endpoint"] == base + "/oauth/token"


def test_issuer_setting_drives_every_url(app_factory, database_url):
    app, _ = app_factory(database_url, KEYMINT_ISSUER="https://auth.example.com")
    response = app.test_client().get("/.well-known/oauth-authorization-server")
    body = response.get_json()
    assert body["issuer"] == "https://auth.example.com"
    assert response.headers["Cache-Control"] == "public, max-age=300"
    assert body["token_endpoint"] == "https://auth.example.com/oauth/token"
