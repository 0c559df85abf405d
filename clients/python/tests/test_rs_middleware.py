"""Flask, WSGI and ASGI integrations: who gets through, and the RFC 6750 answers of those who
don't (status, WWW-Authenticate, body), with real tokens checked against a fake keymint."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from conftest import NOW, Clock, FakeKeymint, make_key
from flask import Flask, jsonify
from keymint_resource import ProtectedResource, TokenVerifier
from keymint_resource.asgi import BearerASGIMiddleware
from keymint_resource.flask import KeymintResource, current_token, public, require_token
from keymint_resource.wsgi import BearerMiddleware
from werkzeug.test import Client

RESOURCE = "https://orders.example/v1"


@pytest.fixture
def env(fake_keymint: FakeKeymint, clock: Clock) -> dict[str, Any]:
    key = make_key("EC", "k1")
    fake_keymint.keys.append(key)
    verifier = TokenVerifier(fake_keymint.url, "key_rs", "sk_rs", clock=clock,
                             audience=RESOURCE)

    def token(scope: str = "orders:read", **claims: Any) -> str:
        return fake_keymint.sign(key, aud=RESOURCE, scope=scope, **claims)

    metadata = ProtectedResource.for_issuer(RESOURCE, fake_keymint.url,
                                            ["orders:read", "orders:write"], "Orders")
    return {"verifier": verifier, "token": token, "metadata": metadata, "fake": fake_keymint}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def challenge(response: Any) -> str:
    return response.headers["WWW-Authenticate"]


# --- the WSGI middleware -------------------------------------------------------------------


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    token = environ.get("keymint.token")
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"sub": token.subject if token else None}).encode()]


@pytest.fixture
def wsgi(env) -> Client:
    return Client(BearerMiddleware(wsgi_app, env["verifier"], scopes=["orders:read"],
                                   exempt=["/healthz", "/public/"], metadata=env["metadata"],
                                   realm="orders"))


def test_wsgi_valid_token_reaches_the_app_with_the_decision(wsgi, env):
    response = wsgi.get("/v1/orders/1", headers=bearer(env["token"]()))
    assert response.status_code == 200
    assert response.get_json() == {"sub": "42"}


def test_wsgi_no_token_is_a_401_challenge_without_error_code(wsgi, env):
    response = wsgi.get("/v1/orders/1")
    assert response.status_code == 401
    assert challenge(response) == (
        'Bearer realm="orders", resource_metadata='
        '"https://orders.example/.well-known/oauth-protected-resource/v1"')
    assert response.headers["Cache-Control"] == "no-store"
    assert response.get_json()["error"] == "missing_authorization"


def test_wsgi_other_scheme_is_treated_as_no_token(wsgi):
    response = wsgi.get("/v1/orders/1", headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert response.status_code == 401
    assert "error=" not in challenge(response)


def test_wsgi_malformed_header_is_a_400_invalid_request(wsgi):
    response = wsgi.get("/v1/orders/1", headers={"Authorization": "Bearer two tokens"})
    assert response.status_code == 400
    assert 'error="invalid_request"' in challenge(response)


def test_wsgi_invalid_token_is_a_401_invalid_token(wsgi, env):
    response = wsgi.get("/v1/orders/1", headers=bearer(env["token"](exp=NOW - 60)))
    assert response.status_code == 401
    assert challenge(response).startswith(
        'Bearer realm="orders", error="invalid_token", '
        'error_description="The access token has expired."')
    assert response.get_json() == {"error": "invalid_token",
                                   "error_description": "The access token has expired."}


def test_wsgi_insufficient_scope_is_a_403_naming_the_scope(env):
    app = Client(BearerMiddleware(wsgi_app, env["verifier"], realm="orders",
                                  scopes_for=lambda method, path:
                                  ["orders:write"] if method == "POST" else ["orders:read"]))
    assert app.get("/v1/orders", headers=bearer(env["token"]())).status_code == 200
    response = app.post("/v1/orders", headers=bearer(env["token"]()))
    assert response.status_code == 403
    assert challenge(response) == (
        'Bearer realm="orders", error="insufficient_scope", '
        'error_description="The token lacks a required scope.", scope="orders:write"')
    assert response.get_json()["scope"] == "orders:write"


def test_wsgi_exempt_paths_and_preflights_need_no_token(wsgi):
    assert wsgi.get("/healthz").get_json() == {"sub": None}
    assert wsgi.get("/public/logo").status_code == 200
    assert wsgi.get("/healthzz").status_code == 401  # exact match, not a prefix
    assert wsgi.options("/v1/orders").status_code == 200


def test_wsgi_serves_the_protected_resource_metadata(wsgi, env):
    response = wsgi.get("/.well-known/oauth-protected-resource/v1")
    assert response.status_code == 200
    assert response.get_json() == {
        "resource": RESOURCE, "authorization_servers": [env["fake"].url],
        "bearer_methods_supported": ["header"], "scopes_supported": ["orders:read", "orders:write"],
        "resource_name": "Orders"}


def test_wsgi_keymint_unreachable_is_a_503_not_a_challenge(wsgi, env):
    env["fake"].jwks_status = 503
    response = wsgi.get("/v1/orders/1", headers=bearer(env["token"]()))
    assert response.status_code == 503
    assert "WWW-Authenticate" not in response.headers
    assert response.headers["Retry-After"] == "5"
    assert response.get_json()["error"] == "temporarily_unavailable"


def test_challenge_parameters_cannot_be_broken_out_of():
    from keymint_resource.challenge import www_authenticate
    from keymint_resource.errors import InvalidToken

    header = www_authenticate(InvalidToken('bad "quote" \\ and\r\nnewline'), realm='r"x')
    assert header == ('Bearer realm="rx", error="invalid_token", '
                      'error_description="bad quote  andnewline"')


# --- Flask ------------------------------------------------------------------------------------


def flask_app(env, **options: Any) -> Flask:
    app = Flask(__name__)
    KeymintResource(app, env["verifier"], realm="orders", **options)

    @app.get("/v1/orders/<int:order>")
    @require_token("orders:read")
    def read(order: int):
        return jsonify(order=order, sub=current_token().subject)

    @app.post("/v1/orders")
    @require_token("orders:write")
    def create():
        return jsonify(created=True)

    @app.get("/status")
    @public
    def status():
        return jsonify(ok=True)

    @app.get("/v1/me")
    def me():
        return jsonify(client=current_token().client_id)

    return app


def test_flask_require_token_checks_each_views_scopes(env):
    client = flask_app(env).test_client()
    ok = client.get("/v1/orders/3", headers=bearer(env["token"]()))
    assert ok.status_code == 200 and ok.get_json() == {"order": 3, "sub": "42"}
    refused = client.post("/v1/orders", headers=bearer(env["token"]()))
    assert refused.status_code == 403
    assert 'scope="orders:write"' in challenge(refused)
    assert client.get("/v1/orders/3").status_code == 401
    wrong = client.get("/v1/orders/3", headers=bearer(env["token"](iss="https://evil")))
    assert wrong.status_code == 401 and 'error="invalid_token"' in challenge(wrong)


def test_flask_without_the_guard_undecorated_views_are_open(env):
    client = flask_app(env).test_client()
    assert client.get("/status").status_code == 200


def test_flask_app_wide_guard_protects_every_view_but_public_ones(env):
    client = flask_app(env, protect_all=True, scopes=["orders:read"],
                       metadata=env["metadata"]).test_client()
    assert client.get("/v1/me").status_code == 401
    assert client.get("/v1/me", headers=bearer(env["token"]())).get_json() == {
        "client": "key_client"}
    assert client.get("/status").status_code == 200
    assert client.get("/nowhere").status_code == 404  # unknown routes stay 404
    # the view's own scope still applies on top of the guard's
    both = client.post("/v1/orders", headers=bearer(env["token"]()))
    assert both.status_code == 403 and 'scope="orders:write"' in challenge(both)
    assert client.post("/v1/orders",
                       headers=bearer(env["token"]("orders:read orders:write"))).status_code == 200
    # the guard's scopes cover views without a decorator
    me = client.get("/v1/me", headers=bearer(env["token"]("orders:write")))
    assert me.status_code == 403 and 'scope="orders:read"' in challenge(me)
    document = client.get("/.well-known/oauth-protected-resource/v1")
    assert document.status_code == 200 and document.get_json()["resource"] == RESOURCE
    assert "resource_metadata=" in challenge(client.get("/v1/me"))


def test_flask_require_token_without_the_extension_is_a_clear_error(env):
    app = Flask(__name__)

    @app.get("/x")
    @require_token()
    def x():
        return "x"

    app.testing = True
    with pytest.raises(RuntimeError, match="KeymintResource"):
        app.test_client().get("/x")


# --- ASGI -------------------------------------------------------------------------------------


async def asgi_app(scope, receive, send) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.accept"})
        return
    body = json.dumps({"sub": scope["keymint.token"].subject if "keymint.token" in scope
                       else None}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def call_asgi(app, kind: str = "http", path: str = "/v1/orders/1", method: str = "GET",
              headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    scope = {"type": kind, "path": path, "root_path": "", "method": method,
             "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def start(sent: list[dict[str, Any]]) -> tuple[int, dict[str, str], dict[str, Any]]:
    head = sent[0]
    headers = {k.decode(): v.decode() for k, v in head["headers"]}
    return head["status"], headers, json.loads(sent[1]["body"] or b"null")


@pytest.fixture
def asgi(env) -> BearerASGIMiddleware:
    return BearerASGIMiddleware(asgi_app, env["verifier"], scopes=["orders:read"],
                                exempt=["/healthz"], metadata=env["metadata"], realm="orders")


def test_asgi_valid_token_reaches_the_app(asgi, env):
    status, _, body = start(call_asgi(asgi, headers=bearer(env["token"]())))
    assert (status, body) == (200, {"sub": "42"})


def test_asgi_refusals_are_rfc6750_challenges(asgi, env):
    status, headers, _ = start(call_asgi(asgi))
    assert status == 401 and headers["www-authenticate"].startswith('Bearer realm="orders"')
    assert "error=" not in headers["www-authenticate"]
    status, headers, body = start(call_asgi(asgi, headers=bearer("at_garbage.x.y")))
    assert status == 401 and 'error="invalid_token"' in headers["www-authenticate"]
    assert body["error"] == "invalid_token"
    sent = call_asgi(asgi, headers=bearer(env["token"]("orders:write")))
    status, headers, _ = start(sent)
    assert status == 403
    assert 'error="insufficient_scope"' in headers["www-authenticate"]
    assert 'scope="orders:read"' in headers["www-authenticate"]
    assert headers["content-length"] == str(len(sent[1]["body"]))


def test_asgi_exempt_metadata_and_lifespan(asgi):
    assert start(call_asgi(asgi, path="/healthz"))[0] == 200
    status, _, body = start(call_asgi(asgi, path="/.well-known/oauth-protected-resource/v1"))
    assert status == 200 and body["authorization_servers"]
    passed: list[str] = []

    async def lifespan_app(scope, receive, send) -> None:
        passed.append(scope["type"])

    asyncio.run(BearerASGIMiddleware(lifespan_app, asgi.guard.verifier)(
        {"type": "lifespan"}, None, None))
    assert passed == ["lifespan"]


def test_asgi_websocket_without_a_valid_token_is_closed_with_1008(asgi, env):
    assert call_asgi(asgi, kind="websocket") == [{"type": "websocket.close", "code": 1008}]
    accepted = call_asgi(asgi, kind="websocket", headers=bearer(env["token"]()))
    assert accepted == [{"type": "websocket.accept"}]


def test_metadata_paths_follow_rfc9728():
    root = ProtectedResource.for_issuer("https://api.example", "https://keymint.example/")
    assert root.path == "/.well-known/oauth-protected-resource"
    assert root.url == "https://api.example/.well-known/oauth-protected-resource"
    assert root.document()["authorization_servers"] == ["https://keymint.example"]
    assert "scopes_supported" not in root.document()


def test_flask_one_extension_serves_several_apps(env):
    from keymint_resource.flask import KeymintResource as Ext

    ext = Ext(verifier=env["verifier"], protect_all=True)
    apps = [Flask("a"), Flask("b")]
    for app in apps:
        ext.init_app(app)
        app.add_url_rule("/x", "x", lambda: jsonify(sub=current_token().subject))
    for app in apps:
        client = app.test_client()
        assert client.get("/x").status_code == 401
        assert client.get("/x", headers=bearer(env["token"]())).get_json() == {"sub": "42"}
