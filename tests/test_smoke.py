def test_token_roundtrip(client, factory):
    key = factory.key()
    token = factory.token(client, key)
    r = client.post("/oauth/introspect", data={"token": token}, auth=key.auth)
    assert r.get_json()["active"] is True


def test_live_server(live_server, factory):
    import requests
    r = requests.get(live_server.url + "/healthz", timeout=5)
    assert r.status_code == 200
