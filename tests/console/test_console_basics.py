"""The console's frame: sign-in page, security headers, cookies, HTML errors, CSRF."""

from __future__ import annotations

from tests.console.support import csrf_from, sign_in

CSP = ("default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


def test_signed_out_start_page_redirects_to_sign_in(client):
    response = client.get("/console/")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/console/sign-in")


def test_sign_in_page_has_strict_headers(client):
    response = client.get("/console/sign-in")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert response.headers["Content-Security-Policy"] == CSP
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_data(as_text=True)
    assert "keymint console login-link" in body
    assert "<script>" not in body and "style=" not in body
    # Without an identity provider there is no single sign-on button.
    assert "Sign in with single sign-on" not in body


def test_stylesheet_is_served_by_the_console(client):
    response = client.get("/console/static/console.css")
    assert response.status_code == 200
    assert response.mimetype == "text/css"
    assert b":focus-visible" in response.data


def test_unknown_console_page_is_an_html_404(client):
    response = client.get("/console/nope")
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert "Not found" in response.get_data(as_text=True)
    assert response.headers["Content-Security-Policy"] == CSP


def test_wrong_method_is_an_html_405_with_allow(client):
    response = client.delete("/console/sign-in")
    assert response.status_code == 405
    assert response.mimetype == "text/html"
    assert "GET" in response.headers["Allow"]


def test_api_errors_stay_json(client):
    response = client.get("/nope")
    assert response.status_code == 404
    assert response.is_json
    assert (response.headers["Content-Security-Policy"]
            == "default-src 'none'; frame-ancestors 'none'")
    assert response.headers["Referrer-Policy"] == "no-referrer"


def test_post_without_csrf_token_is_refused(client, factory):
    email = factory.user()
    factory.workspace(owner=email)
    sign_in(client, client.application, email)
    response = client.post("/console/sign-out")
    assert response.status_code == 400
    assert response.mimetype == "text/html"
    assert "This form expired or did not come from keymint" in response.get_data(as_text=True)
    # Still signed in: the refused form did nothing.
    assert client.get("/console/").status_code == 302
    assert "/console/w/" in client.get("/console/").headers["Location"]


def test_post_with_a_wrong_token_or_foreign_origin_is_refused(client, factory):
    email = factory.user()
    factory.workspace(owner=email)
    sign_in(client, client.application, email)
    page = client.get("/console/sign-in", follow_redirects=True)
    token = csrf_from(page)
    assert client.post("/console/sign-out", data={"csrf_token": token + "x"}).status_code == 400
    foreign = client.post("/console/sign-out", data={"csrf_token": token},
                          headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 400
    foreign_referer = client.post("/console/sign-out", data={"csrf_token": token},
                                  headers={"Referer": "https://evil.example/page"})
    assert foreign_referer.status_code == 400
    # A page sent with Referrer-Policy: no-referrer (the link page) posts with Origin: null;
    # the token still decides.
    assert client.post("/console/sign-out", data={"csrf_token": token + "x"},
                       headers={"Origin": "null"}).status_code == 400
    ok = client.post("/console/sign-out", data={"csrf_token": token},
                     headers={"Origin": "http://localhost"})
    assert ok.status_code == 303


def test_session_cookie_flags(client, factory):
    email = factory.user()
    factory.workspace(owner=email)
    response = sign_in(client, client.application, email)
    cookie = next(c for c in response.headers.getlist("Set-Cookie")
                  if c.startswith("keymint_console="))
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Path=/console" in cookie
    # The tests run with AUTHLIB_INSECURE_TRANSPORT=1 on localhost: plain-HTTP development.
    assert "Secure" not in cookie


def test_session_cookie_is_secure_off_loopback(client, factory):
    email = factory.user()
    factory.workspace(owner=email)
    from tests.console.support import make_link

    token = make_link(client.application, email)
    base = "https://keymint.example"
    page = client.get(f"/console/sign-in/link/{token}", base_url=base)
    response = client.post(f"/console/sign-in/link/{token}", base_url=base,
                           data={"csrf_token": csrf_from(page)})
    assert response.status_code == 303
    cookie = next(c for c in response.headers.getlist("Set-Cookie")
                  if c.startswith("keymint_console="))
    assert "Secure" in cookie


def test_console_is_off_without_a_secret_key_outside_development(database_url, monkeypatch):
    """No KEYMINT_SECRET_KEY and no development mode: the console answers 503, the API not."""
    from app import create_app
    from tests.support import base_config, dispose

    monkeypatch.delenv("AUTHLIB_INSECURE_TRANSPORT", raising=False)
    config = base_config(database_url)
    config.pop("TESTING")
    app = create_app(config)
    try:
        client = app.test_client()
        page = client.get("/console/sign-in")
        assert page.status_code == 503 and page.mimetype == "text/html"
        assert "KEYMINT_SECRET_KEY" in page.get_data(as_text=True)
        assert client.get("/console/static/console.css").status_code == 200
        assert client.get("/healthz").status_code == 200
    finally:
        dispose(app)


def test_secret_key_setting_is_validated_and_masked(database_url, monkeypatch):
    import secrets

    import pytest

    from app import create_app
    from app.config import ConfigError, summary
    from tests.support import base_config, dispose

    with pytest.raises(ConfigError, match=r"KEYMINT_SECRET_KEY must be at least 32 random "
                                          r"bytes.*decodes to only 8 bytes"):
        create_app(base_config(database_url, KEYMINT_SECRET_KEY="c2hvcnRrZXk"))
    with pytest.raises(ConfigError, match="not URL-safe base64"):
        create_app(base_config(database_url, KEYMINT_SECRET_KEY="not base64 at all!"))
    value = secrets.token_urlsafe(32)
    monkeypatch.setenv("KEYMINT_SECRET_KEY", value)
    app = create_app(base_config(database_url))
    try:
        assert app.config["SECRET_KEY"] == app.config["KEYMINT_SECRET_KEY"].reveal()
        assert summary(app.config)["KEYMINT_SECRET_KEY"] == "********"
        assert value not in repr(app.config)
    finally:
        dispose(app)


def test_config_check_warns_about_a_per_process_secret_key(app, monkeypatch):
    """Development without KEYMINT_SECRET_KEY works, but `config check` says what it costs."""
    from app.cli import console_warnings

    monkeypatch.setitem(app.config, "TESTING", False)
    with app.app_context():
        [warning] = console_warnings()
        assert "random key per process" in warning
        monkeypatch.setitem(app.config, "SECRET_KEY", None)
        [warning] = console_warnings()
        assert "answers 503" in warning


def test_with_single_sign_on_the_sign_in_page_may_post_to_the_identity_provider(
        app_factory, database_url):
    """Browsers apply form-action to the redirect after the SSO button's POST."""
    app, _ = app_factory(database_url,
                         KEYMINT_CONSOLE_OIDC_ISSUER="https://idp.example.com/realms/x",
                         KEYMINT_CONSOLE_OIDC_CLIENT_ID="keymint",
                         KEYMINT_CONSOLE_OIDC_CLIENT_SECRET="s3cret-s3cret-s3cret")
    client = app.test_client()
    page = client.get("/console/sign-in")
    assert "Sign in with single sign-on" in page.get_data(as_text=True)
    assert "form-action 'self' https://idp.example.com;" in page.headers[
        "Content-Security-Policy"]
    # Only the sign-in page: the rest of the console keeps form-action 'self'.
    assert "idp.example.com" not in client.get("/console/nope").headers[
        "Content-Security-Policy"]


def test_serve_off_loopback_needs_a_secret_key_outside_development(database_url, monkeypatch):
    """Like KEYMINT_ISSUER: required to serve off loopback, except in development."""
    import secrets

    import app.runtime.server as server
    from app import create_app
    from tests.support import base_config, dispose

    started: list[str] = []
    monkeypatch.setattr(server, "serve_wsgi", lambda *a, **kw: started.append(kw["bind"]))
    monkeypatch.delenv("AUTHLIB_INSECURE_TRANSPORT", raising=False)
    config = base_config(database_url, KEYMINT_ISSUER="https://auth.example.com")
    config.pop("TESTING")
    made = []
    try:
        app = create_app(config)
        made.append(app)
        refused = app.test_cli_runner().invoke(args=["serve", "--bind", "0.0.0.0:8000"])
        assert refused.exit_code == 1 and started == []
        assert "KEYMINT_SECRET_KEY must be set to serve on 0.0.0.0:8000" in refused.output
        loopback = app.test_cli_runner().invoke(args=["serve", "--bind", "127.0.0.1:8000"])
        assert loopback.exit_code == 0 and started == ["127.0.0.1:8000"]
        app = create_app({**config, "KEYMINT_SECRET_KEY": secrets.token_urlsafe(32)})
        made.append(app)
        served = app.test_cli_runner().invoke(args=["serve", "--bind", "0.0.0.0:8000"])
        assert served.exit_code == 0, served.output
        assert started == ["127.0.0.1:8000", "0.0.0.0:8000"]
    finally:
        for app in made:
            dispose(app)
