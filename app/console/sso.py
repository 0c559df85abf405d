"""Console single sign-on: the OpenID Connect code flow (PKCE, state, nonce) through Authlib."""

from __future__ import annotations

import logging
import threading
from typing import Any
from urllib.parse import urlsplit

import requests
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.flask_client import OAuth
from flask import Flask, Response, current_app, redirect, request
from flask import session as flow_session
from joserfc.errors import JoseError

from app.console import FORM_ACTION_SOURCES, bp, home
from app.console import session as console_session
from app.extensions import db
from app.services import console_auth, sso
from app.web import boundary
from app.web.context import issuer, request_actor

log = logging.getLogger("keymint.console.sso")

CLIENT_NAME = "keymint_console"
SCOPE = "openid email profile"
_EXTENSION = "keymint_console_sso"
_NEXT = "keymint_sso_next"
_LOCK = threading.Lock()
# Seconds for each call to the provider (discovery, keys, token, userinfo): a slow provider
# makes the person wait this long at most, then see a message.
PROVIDER_TIMEOUT = 10

UNREACHABLE = ("The identity provider could not be reached, so single sign-on is unavailable "
               "right now. Try again in a moment, or use a sign-in link.")
EXPIRED = ("This sign-in attempt expired or was started in another browser. Start again with "
           "\"Sign in with single sign-on\".")
CANCELLED = "Sign-in was cancelled at the identity provider. You are not signed in."
FAILED = ("The identity provider's answer could not be verified, so you are not signed in. "
          "Start again; if it keeps happening, tell your administrator.")


class _ProviderMismatch(Exception):
    """The discovery document names another issuer than the one configured."""


def enabled(app: Flask | None = None) -> bool:
    return (app or current_app).config.get("KEYMINT_CONSOLE_OIDC_ISSUER") is not None


def _client() -> Any:
    """This app's registered provider client (made on first use), or None without SSO.

    One OAuth registry per app (tests and multi-app processes must not share a client), kept
    in app.extensions. Authlib keeps the flow's state, nonce and PKCE verifier in Flask's
    session: the console's short-lived, signed flow cookie; nothing of it server-side.
    """
    app = current_app
    if not enabled(app):
        return None
    client = app.extensions.get(_EXTENSION)
    if client is None:
        with _LOCK:
            client = app.extensions.get(_EXTENSION)
            if client is None:
                provider = app.config["KEYMINT_CONSOLE_OIDC_ISSUER"]
                secret = app.config["KEYMINT_CONSOLE_OIDC_CLIENT_SECRET"].reveal()
                client = OAuth(app._get_current_object()).register(  # type: ignore[attr-defined]
                    CLIENT_NAME,
                    client_id=app.config["KEYMINT_CONSOLE_OIDC_CLIENT_ID"],
                    client_secret=secret.decode("ascii"),
                    server_metadata_url=f"{provider}/.well-known/openid-configuration",
                    client_kwargs={"scope": SCOPE, "code_challenge_method": "S256",
                                   "default_timeout": PROVIDER_TIMEOUT})
                app.extensions[_EXTENSION] = client
    return client


def _checked_metadata(client: Any) -> dict[str, Any]:
    """The provider's discovery document, refused when it speaks for another issuer (OIDC
    Discovery §4.3: the issuer must be the one the document was fetched for)."""
    metadata = client.load_server_metadata()
    configured = current_app.config["KEYMINT_CONSOLE_OIDC_ISSUER"]
    if str(metadata.get("issuer", "")).rstrip("/") != configured:
        client.server_metadata.pop("_loaded_at", None)  # fetch again next time
        raise _ProviderMismatch
    return metadata


def callback_url() -> str:
    """The redirect URI registered at the provider: KEYMINT_ISSUER (else this request's URL
    root) + /console/sign-in/sso/callback."""
    return f"{issuer()}{bp.url_prefix}/sign-in/sso/callback"


def authorization_origin() -> str | None:
    """The origin of the provider's authorization endpoint, once this process has read the
    discovery document (no network here): a page with the SSO button must let form-action
    lead there when it is not the issuer's origin."""
    client = current_app.extensions.get(_EXTENSION)
    endpoint = client.server_metadata.get("authorization_endpoint") if client else None
    if not isinstance(endpoint, str):
        return None
    parts = urlsplit(endpoint)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("https", "http") \
        and parts.netloc else None


if authorization_origin not in FORM_ACTION_SOURCES:  # the sign-in page's form-action
    FORM_ACTION_SOURCES.append(authorization_origin)


def _refused(message: str, status: int) -> Response:
    """The sign-in page again, with what went wrong (a human message, never the IdP's)."""
    body, status = home.render_sign_in(message, status, next_path="")
    return Response(body, status=status, mimetype="text/html")


@bp.post("/sign-in/sso")
def sso_start() -> Response:
    """Send the person to the provider (POST: a CSRF-checked form starts a sign-in)."""
    client = _client()
    if client is None:
        return _refused("Single sign-on is not configured on this keymint.", 404)
    try:
        _checked_metadata(client)
        flow_session[_NEXT] = console_session.safe_next(request.form.get("next", ""))
        return client.authorize_redirect(callback_url())
    except (requests.RequestException, ValueError, _ProviderMismatch, AuthlibBaseError,
            RuntimeError) as exc:
        log.warning("console SSO: the identity provider is unusable: %s", type(exc).__name__)
        return _refused(UNREACHABLE, 502)


@bp.get("/sign-in/sso/callback")
def sso_callback() -> Response:
    """The provider's answer: code exchanged (PKCE), ID token checked (signature, issuer,
    audience, nonce, expiry), the person matched to a keymint user by verified email."""
    client = _client()
    if client is None:
        return _refused("Single sign-on is not configured on this keymint.", 404)
    if request.args.get("error"):
        # The provider's own words are not shown: they are whatever the query string says.
        log.info("console SSO: the provider answered error=%.40s",
                 request.args.get("error", ""))
        state = request.args.get("state")
        if state:
            client.framework.clear_state_data(flow_session, state)
        if request.args.get("error") == "access_denied":
            return _refused(CANCELLED, 400)
        return _refused(FAILED, 400)
    state = request.args.get("state")
    if not state or client.framework.get_state_data(flow_session, state) is None:
        return _refused(EXPIRED, 400)
    try:
        _checked_metadata(client)
        token = client.authorize_access_token()
        claims = _claims(client, token)
    except (requests.RequestException, _ProviderMismatch) as exc:
        log.warning("console SSO: the identity provider is unusable: %s", type(exc).__name__)
        return _refused(UNREACHABLE, 502)
    except (AuthlibBaseError, JoseError, ValueError, KeyError, RuntimeError) as exc:
        log.warning("console SSO: the provider's answer was refused: %s", type(exc).__name__)
        return _refused(FAILED, 400)
    next_path = flow_session.pop(_NEXT, None)
    try:
        user = sso.match_user(db.session, claims)
    except sso.SignInRefused as refusal:
        _note_refusal(refusal)
        return _refused(refusal.message, 403)
    try:
        console_session.sign_in(user, "sso")
    except console_auth.SignInRefused as refusal:
        return _refused(refusal.message, 403)
    return redirect(console_session.safe_next(next_path or ""), 303)


def _claims(client: Any, token: dict[str, Any]) -> dict[str, Any]:
    """The person's claims: the validated ID token's, completed from the userinfo endpoint
    when the provider keeps email there (OIDC Core 5.4: for the code flow it may)."""
    claims = token.get("userinfo")
    if not claims:  # no ID token: Authlib validated nothing, so nothing is believed
        raise ValueError("the provider returned no ID token")
    claims = dict(claims)
    if "email" not in claims or "email_verified" not in claims:
        info = dict(client.userinfo(token=token))
        if info.get("sub") != claims.get("sub"):  # OIDC Core 5.3.2: the same person
            raise ValueError("userinfo is about another subject")
        claims.update({name: info[name] for name in ("email", "email_verified") if name in info})
    return claims


def _note_refusal(refusal: sso.SignInRefused) -> None:
    """Audit it in the named user's workspaces (after this request's rollback), or log it: an
    address with no keymint user has no trail, and its local part stays out of the logs."""
    if refusal.user_id is not None:
        actor = request_actor("client")
        boundary.write_after("console.sign_in_refused",
                             lambda session: sso.record_refusal(session, refusal, actor))
    log.info("console SSO sign-in refused (%s) for an address at %s", refusal.reason,
             refusal.domain or "(none)")
