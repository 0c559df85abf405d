"""TLS: plain HTTP is refused unless explicitly allowed; a trusted proxy's scheme is honoured.

Authlib >= 1.7 itself allows plain HTTP to loopback hosts (RFC 8252 §7.3), so these tests use a
non-loopback host name to see the production behaviour.
"""

GRANT = {"grant_type": "client_credentials"}
HOST = "http://auth.example.com"


def test_plain_http_is_refused_without_the_explicit_switch(client, factory, monkeypatch):
    key = factory.key()
    monkeypatch.delenv("AUTHLIB_INSECURE_TRANSPORT")
    response = client.post("/oauth/token", data=GRANT, auth=key.auth, base_url=HOST)
    assert response.status_code == 400
    assert response.get_json()["error"] == "insecure_transport"


def test_https_from_a_trusted_proxy_is_accepted(app_factory, database_url, monkeypatch):
    app, factory = app_factory(database_url, KEYMINT_TRUSTED_PROXIES=1)
    key = factory.key()
    monkeypatch.delenv("AUTHLIB_INSECURE_TRANSPORT")
    client = app.test_client()
    response = client.post("/oauth/token", data=GRANT, auth=key.auth, base_url=HOST,
                           headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"})
    assert response.status_code == 200
    meta = client.get("/.well-known/oauth-authorization-server", base_url=HOST,
                      headers={"X-Forwarded-Proto": "https"}).get_json()
    assert meta["issuer"].startswith("https://")


def test_forwarded_proto_is_ignored_without_trusted_proxies(client, factory, monkeypatch):
    key = factory.key()
    monkeypatch.delenv("AUTHLIB_INSECURE_TRANSPORT")
    response = client.post("/oauth/token", data=GRANT, auth=key.auth, base_url=HOST,
                           headers={"X-Forwarded-Proto": "https"})
    assert response.status_code == 400
    assert response.get_json()["error"] == "insecure_transport"
