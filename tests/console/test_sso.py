"""Console single sign-on against a real OpenID provider (node-oidc-provider, run locally):
the code flow with PKCE, state and nonce; who may sign in; every failure is a page, not a 500."""

from __future__ import annotations

import base64
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import AuditEvent, User
from app.services import accounts
from app.services.audit import Actor
from tests.console.oidc_support import (
    TEST_CLIENT_CALLBACK,
    OidcProvider,
    oidc_provider_fixture,  # noqa: F401 (the `oidc_provider` fixture)
    require_provider,
    run_provider,
    sign_in_at_provider,
)
from tests.console.support import csrf_from

SESSION_COOKIE = "keymint_console"


@pytest.fixture
def sso(app_factory: Any, database_url: str, oidc_provider: OidcProvider) -> Any:
    """(app, factory, provider): keymint with single sign-on through the test provider; the
    provider knows nobody until a test adds accounts."""
    oidc_provider.set_accounts([])
    app, factory = app_factory(database_url, **oidc_provider.settings())
    return app, factory, oidc_provider


def start(client: Any, next_path: str | None = None) -> str:
    """Press "Sign in with single sign-on" on the sign-in page; the provider URL it sends to."""
    page = client.get("/console/sign-in")
    assert "Sign in with single sign-on" in page.get_data(as_text=True)
    data = {"csrf_token": csrf_from(page)}
    if next_path is not None:
        data["next"] = next_path
    response = client.post("/console/sign-in/sso", data=data)
    assert response.status_code == 302, response.get_data(as_text=True)
    return response.headers["Location"]


def come_back(client: Any, url: str) -> Any:
    """The browser arriving at keymint's callback URL the provider redirected to."""
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == TEST_CLIENT_CALLBACK
    return client.get(f"{parts.path}?{parts.query}")


def events(app: Any, action: str) -> list[AuditEvent]:
    with app.app_context():
        return list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == action)
                                       .order_by(AuditEvent.id)))


def signed_in(client: Any) -> bool:
    return client.get("/console/").headers.get("Location", "").startswith("/console/w/")


def test_a_verified_known_user_signs_in_and_lands_on_next(sso) -> None:
    app, factory, provider = sso
    owner = factory.user("ann@example.com")
    factory.workspace(owner=owner, slug="acme")
    login = provider.add_account("ann@example.com", sub="ann-at-idp")
    client = app.test_client()
    back = sign_in_at_provider(start(client, "/console/w/acme/keys?state=all"), login)
    response = come_back(client, back)
    assert response.status_code == 303, response.get_data(as_text=True)
    assert response.headers["Location"] == "/console/w/acme/keys?state=all"
    cookie = client.get_cookie(SESSION_COOKIE, path="/console")
    assert cookie is not None and cookie.http_only
    page = client.get("/console/w/acme/keys")
    assert page.status_code == 200
    assert "ann@example.com" in page.get_data(as_text=True)
    [event] = events(app, "console.signed_in")
    assert event.details["method"] == "sso"
    assert event.ip == "127.0.0.1"


def test_an_open_redirect_in_next_is_dropped(sso) -> None:
    app, factory, provider = sso
    factory.workspace(owner=factory.user("ann@example.com"), slug="acme")
    client = app.test_client()
    back = sign_in_at_provider(start(client, "https://evil.example/steal"),
                               provider.add_account("ann@example.com"))
    response = come_back(client, back)
    assert response.status_code == 303
    assert response.headers["Location"] == "/console/"


def test_the_authorization_request_carries_pkce_state_and_nonce(sso) -> None:
    app, _, provider = sso
    location = start(app.test_client())
    assert location.startswith(f"{provider.issuer}/auth?")
    query = {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}
    assert query["response_type"] == "code"
    assert query["client_id"] == provider.client_id
    assert query["redirect_uri"] == TEST_CLIENT_CALLBACK
    assert query["scope"] == "openid email profile"
    assert query["code_challenge_method"] == "S256"
    challenge = query["code_challenge"]
    assert len(challenge) == 43  # base64url of a SHA-256 digest, unpadded
    base64.urlsafe_b64decode(challenge + "=")
    assert len(query["state"]) >= 20 and len(query["nonce"]) >= 20
    # Two attempts never share state, nonce or verifier.
    again = parse_qs(urlsplit(start(app.test_client())).query)
    assert again["state"][0] != query["state"]
    assert again["nonce"][0] != query["nonce"]
    assert again["code_challenge"][0] != challenge


def test_the_provider_itself_refuses_a_code_request_without_pkce(sso) -> None:
    _, _, provider = sso
    location = start(sso[0].test_client())
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()
             if not k.startswith("code_challenge")}
    back = sign_in_at_provider(f"{provider.issuer}/auth?{urlencode(query)}", "anyone")
    assert "error=invalid_request" in back and "PKCE" in back


def test_an_unverified_email_is_refused_and_audited(sso) -> None:
    app, factory, provider = sso
    factory.workspace(owner=factory.user("ann@example.com"), slug="acme")
    login = provider.add_account("ann@example.com", verified=False)
    client = app.test_client()
    response = come_back(client, sign_in_at_provider(start(client), login))
    assert response.status_code == 403
    text = response.get_data(as_text=True)
    assert "has not verified the address ann@example.com" in text
    assert "Sign in with single sign-on" in text  # back on the sign-in page
    # Its button may lead to the provider again (Chromium applies form-action to redirects).
    assert f"form-action 'self' {provider.issuer};" in response.headers[
        "Content-Security-Policy"]
    assert client.get_cookie(SESSION_COOKIE, path="/console") is None
    assert not signed_in(client)
    [event] = events(app, "console.sign_in_refused")
    assert event.details == {"method": "sso", "reason": "email_unverified"}
    assert event.actor_type == "client" and event.target_type == "user"
    assert events(app, "console.signed_in") == []


def test_an_unknown_email_is_refused_logged_without_its_local_part_and_creates_nobody(
        sso, caplog: pytest.LogCaptureFixture) -> None:
    app, _, provider = sso
    login = provider.add_account("stranger.danger@example.org")
    with app.app_context():
        users_before = db.session.scalar(select(func.count()).select_from(User))
    client = app.test_client()
    with caplog.at_level(logging.INFO, logger="keymint.console.sso"):
        response = come_back(client, sign_in_at_provider(start(client), login))
    assert response.status_code == 403
    assert "No keymint account uses stranger.danger@example.org" in response.get_data(
        as_text=True)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == users_before
    assert events(app, "console.sign_in_refused") == []  # no workspace trail to put it in
    logged = [r.getMessage() for r in caplog.records if r.name == "keymint.console.sso"]
    assert any("unknown_email" in line and "example.org" in line for line in logged), logged
    assert not any("stranger" in line for line in logged)
    assert not signed_in(client)


def test_a_disabled_user_is_refused_and_audited(sso) -> None:
    app, factory, provider = sso
    factory.workspace(owner=factory.user("ann@example.com"), slug="acme")
    with app.app_context():
        accounts.disable_user(db.session, accounts.get_user_by_email(db.session,
                                                                     "ann@example.com"),
                              Actor.cli())
        db.session.commit()
    login = provider.add_account("ann@example.com")
    client = app.test_client()
    response = come_back(client, sign_in_at_provider(start(client), login))
    assert response.status_code == 403
    assert "The keymint account ann@example.com is disabled" in response.get_data(as_text=True)
    assert not signed_in(client)
    [event] = events(app, "console.sign_in_refused")
    assert event.details["reason"] == "user_disabled"


def test_a_user_in_no_workspace_is_refused_by_the_consoles_own_rule(sso) -> None:
    app, factory, provider = sso
    factory.user("loner@example.com")
    client = app.test_client()
    back = sign_in_at_provider(start(client), provider.add_account("loner@example.com"))
    response = come_back(client, back)
    assert response.status_code == 403
    assert 'role="alert"' in response.get_data(as_text=True)
    assert not signed_in(client)
    assert events(app, "console.signed_in") == []


def test_a_tampered_state_is_refused(sso) -> None:
    app, factory, provider = sso
    factory.workspace(owner=factory.user("ann@example.com"), slug="acme")
    client = app.test_client()
    back = sign_in_at_provider(start(client), provider.add_account("ann@example.com"))
    parts = urlsplit(back)
    query = parse_qs(parts.query)
    state = query["state"][0]
    query["state"] = [state[:-1] + ("A" if state[-1] != "A" else "B")]  # one character off
    response = client.get(f"{parts.path}?{urlencode({k: v[0] for k, v in query.items()})}")
    assert response.status_code == 400
    assert "This sign-in attempt expired or was started in another browser" in \
        response.get_data(as_text=True)
    assert not signed_in(client)


def test_a_callback_in_another_browser_or_replayed_is_refused(sso) -> None:
    app, factory, provider = sso
    factory.workspace(owner=factory.user("ann@example.com"), slug="acme")
    client = app.test_client()
    back = sign_in_at_provider(start(client), provider.add_account("ann@example.com"))
    other = app.test_client()  # no flow cookie: the state is not this browser's
    assert come_back(other, back).status_code == 400
    assert not signed_in(other)
    assert come_back(client, back).status_code == 303
    client.post("/console/sign-out", data={"csrf_token": csrf_from(client.get(
        "/console/w/acme/keys"))})
    replay = come_back(client, back)  # the state was used up
    assert replay.status_code == 400
    assert not signed_in(client)


def test_cancelling_at_the_provider_shows_a_message(sso) -> None:
    app, _, _ = sso
    client = app.test_client()
    back = sign_in_at_provider(start(client), "nobody", cancel=True)
    assert "error=access_denied" in back
    response = come_back(client, back)
    assert response.status_code == 400
    assert "Sign-in was cancelled at the identity provider" in response.get_data(as_text=True)


def test_a_provider_error_does_not_show_its_text(sso) -> None:
    app, _, _ = sso
    client = app.test_client()
    location = start(client)
    state = parse_qs(urlsplit(location).query)["state"][0]
    response = client.get("/console/sign-in/sso/callback?" + urlencode(
        {"error": "server_error", "error_description": "<b>injected</b>", "state": state}))
    assert response.status_code == 400
    text = response.get_data(as_text=True)
    assert "could not be verified" in text and "injected" not in text


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_provider_is_a_page_not_a_500(app_factory, sqlite_url) -> None:
    app, _ = app_factory(sqlite_url,
                         KEYMINT_CONSOLE_OIDC_ISSUER=f"http://127.0.0.1:{_closed_port()}",
                         KEYMINT_CONSOLE_OIDC_CLIENT_ID="keymint",
                         KEYMINT_CONSOLE_OIDC_CLIENT_SECRET="secret-0123456789")
    client = app.test_client()
    page = client.get("/console/sign-in")
    response = client.post("/console/sign-in/sso", data={"csrf_token": csrf_from(page)})
    assert response.status_code == 502
    assert "could not be reached" in response.get_data(as_text=True)
    assert response.mimetype == "text/html"


def test_a_discovery_document_for_another_issuer_is_refused(app_factory, database_url,
                                                              oidc_provider) -> None:
    # The same provider under another name: its document says 127.0.0.1, not localhost.
    settings = {**oidc_provider.settings(), "KEYMINT_CONSOLE_OIDC_ISSUER":
                oidc_provider.issuer.replace("127.0.0.1", "localhost")}
    app, _ = app_factory(database_url, **settings)
    client = app.test_client()
    page = client.get("/console/sign-in")
    response = client.post("/console/sign-in/sso", data={"csrf_token": csrf_from(page)})
    assert response.status_code == 502
    assert "could not be reached" in response.get_data(as_text=True)


def test_an_authorization_endpoint_on_another_origin_is_allowed_in_form_action(sso) -> None:
    app, _, provider = sso
    client = app.test_client()
    start(client)  # the discovery document is read and cached
    before = client.get("/console/sign-in").headers["Content-Security-Policy"]
    assert f"form-action 'self' {provider.issuer};" in before
    cached = app.extensions["keymint_console_sso"].server_metadata
    cached["authorization_endpoint"] = "https://login.example.net/authorize"
    csp = client.get("/console/sign-in").headers["Content-Security-Policy"]
    assert "https://login.example.net" in csp.split("form-action", 1)[1].split(";", 1)[0]


def test_the_sso_form_needs_its_csrf_token(sso) -> None:
    app, _, _ = sso
    response = app.test_client().post("/console/sign-in/sso", data={})
    assert response.status_code == 400
    assert "This form expired or did not come from keymint" in response.get_data(as_text=True)


def test_without_single_sign_on_there_is_no_button_and_no_callback(client) -> None:
    assert "Sign in with single sign-on" not in client.get("/console/sign-in").get_data(
        as_text=True)
    response = client.get("/console/sign-in/sso/callback?code=x&state=y")
    assert response.status_code == 404
    assert "Single sign-on is not configured" in response.get_data(as_text=True)


@pytest.fixture(scope="module")
def id_token_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    """A provider that puts email and email_verified in the ID token itself."""
    require_provider()
    directory: Path = tmp_path_factory.mktemp("oidc-id-token")
    with run_provider(directory, [TEST_CLIENT_CALLBACK], claims_in_id_token=True) as provider:
        yield provider


def test_claims_in_the_id_token_are_used_as_they_are(app_factory, sqlite_url,
                                                     id_token_provider) -> None:
    app, factory = app_factory(sqlite_url, **id_token_provider.settings())
    factory.workspace(owner=factory.user("bo@example.com"), slug="bo")
    login = id_token_provider.add_account("bo@example.com")
    client = app.test_client()
    response = come_back(client, sign_in_at_provider(start(client), login))
    assert response.status_code == 303
    assert signed_in(client)
