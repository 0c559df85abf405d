"""GET /api/v1/me through its fast path (app/api/fast_me.py): the view's answer byte for byte,
and every request it must leave to Flask."""

from app import credentials
from app.api.fast_me import FastMe
from tests.support import add_legacy_key, bearer, count_hand_overs, mint

LEGACY = "legacy-static-key-0123456789"


def _spy(app) -> list[str]:
    return count_hand_overs(app, FastMe)[0]


def _comparable(response):
    headers = sorted((name, value) for name, value in response.headers.items()
                     if name != "X-Request-ID")
    return response.status_code, response.get_data(), headers


def test_me_answers_as_the_view_does_without_reaching_flask(app, client, factory):
    key = factory.key(scopes="introspect keys:read")
    token = mint(client, key, scope="keys:read")
    handed_over = _spy(app)
    app.config["KEYMINT_FAST_PATHS"] = False
    full = client.get("/api/v1/me", headers=bearer(token))
    app.config["KEYMINT_FAST_PATHS"] = True
    fast = client.get("/api/v1/me", headers=bearer(token))
    assert _comparable(fast) == _comparable(full)
    assert handed_over == ["/api/v1/me"]  # the request with the fast path off only
    assert fast.get_json()["key"]["client_id"] == key.client_id
    assert fast.get_data().endswith(b"}\n")
    secure = client.get("/api/v1/me", headers=bearer(token), base_url="https://localhost")
    assert secure.headers["Strict-Transport-Security"].startswith("max-age=")


def test_everything_else_goes_to_flask(app, client, factory):
    key = factory.key(scopes="introspect keys:read")
    token, revoked = mint(client, key), mint(client, key)
    client.post("/oauth/revoke", data={"token": revoked}, auth=key.auth)
    add_legacy_key(app, key.workspace, LEGACY)
    handed_over = _spy(app)
    cases = [
        ({"headers": bearer(revoked)}, 401),
        ({"headers": bearer(credentials.new_access_token())}, 401),
        ({"headers": {"Authorization": "Bearer at_garbage"}}, 401),
        ({"headers": {"Authorization": "bearer " + token}}, 200),  # Authlib's parsing decides
        ({}, 401),
        ({"headers": {**bearer(token), "X-API-Key": LEGACY}}, None),
        ({"headers": {"X-API-Key": LEGACY}}, None),  # the legacy answer (past its sunset here)
        ({"headers": bearer(token), "query_string": {"x": "1"}}, 200),
    ]
    for kwargs, status in cases:
        handed_over.clear()
        response = client.get("/api/v1/me", **kwargs)
        if status is not None:
            assert response.status_code == status, (kwargs, response.get_data(as_text=True))
        assert handed_over == ["/api/v1/me"], kwargs
    handed_over.clear()
    assert client.post("/api/v1/me", headers=bearer(token)).status_code == 405
    assert handed_over == ["/api/v1/me"]


def test_a_revocation_is_seen_by_the_next_fast_answer(app, client, factory):
    key = factory.key(scopes="introspect keys:read")
    token = mint(client, key)
    handed_over = _spy(app)
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200
    assert handed_over == []
    client.post("/oauth/revoke", data={"token": token}, auth=key.auth)
    handed_over.clear()
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 401
    assert handed_over == ["/api/v1/me"]
