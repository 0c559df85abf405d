"""Security headers on every response, credentials never cacheable, no server banner."""

from __future__ import annotations

import pytest
import requests

from tests.support import mint

BASELINE = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
            "X-Frame-Options": "DENY"}


def requests_to_make(client, key):
    grant = {"grant_type": "client_credentials"}
    token = mint(client, key)
    bearer = {"Authorization": f"Bearer {token}"}
    return [
        client.post("/oauth/token", data=grant, auth=key.auth),
        client.post("/oauth/token", data=grant, auth=(key.client_id, "sk_wrong")),
        client.post("/oauth/introspect", data={"token": token}, auth=key.auth),
        client.post("/oauth/revoke", data={"token": "x"}, auth=key.auth),
        client.post("/oauth/rotate", data={"token": token}, auth=key.auth),
        client.get("/api/v1/me", headers=bearer),
        client.get("/api/v1/me"),
        client.get("/healthz"), client.get("/readyz"), client.get("/metrics"),
        client.get("/nope"), client.get("/oauth/token"),
        client.get("/.well-known/oauth-authorization-server"),
    ]


def test_every_response_carries_the_security_headers(client, factory):
    key = factory.key()
    for response in requests_to_make(client, key):
        for name, value in BASELINE.items():
            assert response.headers.get(name) == value, (response.request.path, name)
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["X-Request-ID"]
        assert response.headers["Server"] == "keymint"  # the service, never the software
        if response.request.path != "/.well-known/oauth-authorization-server":
            assert response.headers["Cache-Control"] == "no-store", response.request.path
            assert response.headers["Pragma"] == "no-cache"


def test_public_metadata_may_be_cached_but_not_when_credentials_were_sent(app_factory,
                                                                           database_url):
    app, factory = app_factory(database_url, KEYMINT_ISSUER="https://auth.example.com")
    client = app.test_client()
    key = factory.key()
    public = client.get("/.well-known/oauth-authorization-server")
    assert public.headers["Cache-Control"].startswith("public")
    with_credentials = client.get("/.well-known/oauth-authorization-server", auth=key.auth)
    assert with_credentials.headers["Cache-Control"] == "no-store"


def test_hsts_only_over_https(client):
    assert "Strict-Transport-Security" not in client.get("/healthz").headers
    secure = client.get("/healthz", base_url="https://keymint.example")
    assert secure.headers["Strict-Transport-Security"].startswith("max-age=")


@pytest.mark.slow
def test_real_server_names_no_software_version(live_server, factory):
    key = factory.key()
    responses = [
        requests.get(live_server.url + "/healthz", timeout=10),
        requests.post(live_server.url + "/oauth/token", auth=key.auth, timeout=10,
                      data={"grant_type": "client_credentials"}),
        requests.get(live_server.url + "/nope", timeout=10),
    ]
    for response in responses:
        assert response.headers["Server"] == "keymint"
        assert "granian" not in repr(response.headers).lower()
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Cache-Control"] == "no-store"
