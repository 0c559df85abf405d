"""Authlib wiring: the authorization server, key-based client authentication, form guards."""

from __future__ import annotations

import logging
from datetime import datetime

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import InvalidRequestError
from authlib.oauth2.rfc6749.authenticate_client import ClientAuthentication
from flask import Flask, current_app, request
from flask import request as flask_request
from sqlalchemy.orm import Session

from app import credentials
from app.clock import utcnow
from app.extensions import db
from app.models import TokenFormat
from app.oauth.client import KeyClient
from app.oauth.errors import ClientAuthFailed, TemporarilyUnavailable, safe_description
from app.runtime import metrics
from app.services import accounts, audit, reads, signing_keys
from app.services import keys as key_service
from app.services import tokens as token_service
from app.web import basic_auth, boundary, fast_path, rate_limits
from app.web.context import client_ip, issuer, request_actor
from app.web.telemetry import note_client, note_error
from app.web.validation import FORM_CONTENT_TYPE

log = logging.getLogger("keymint.oauth")


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """RFC 6749 §2.3.1 Basic credentials; None if absent.

    Raises ClientAuthFailed for a Basic header keymint cannot read, never a 500.
    """
    try:
        return basic_auth.parse_basic(header)
    except basic_auth.MalformedBasic:
        raise ClientAuthFailed() from None


# RFC 8707 §2: a token request may name several resources.
REPEATABLE = frozenset({"resource"})


def check_form_request() -> None:
    """Guards Authlib leaves to us: form body only, no query string, no repeated parameter."""
    if request.query_string and request.args:  # the raw bytes first: no parsing when empty
        raise InvalidRequestError("Parameters must be sent in the POST body, not the URL.")
    if request.mimetype != FORM_CONTENT_TYPE:
        raise InvalidRequestError(f"The request body must be {FORM_CONTENT_TYPE}.")
    # Werkzeug caps multipart parts, not urlencoded fields; an OAuth request has a handful.
    lists = list(request.form.lists())
    if sum(len(values) for _, values in lists) > current_app.config["MAX_FORM_PARTS"]:
        raise InvalidRequestError("Too many parameters.")
    for name, values in lists:
        if len(values) > 1 and name not in REPEATABLE:
            raise InvalidRequestError(
                safe_description(f"Parameter '{name}' was sent more than once."))


def note_auth_failure(reason: str, client_id: str | None, workspace_id: int | None = None) -> None:
    """Count a failed client authentication and audit it after the request's rollback.

    Only a well-formed client_id is kept: whatever else sits in that field (a secret pasted
    into the wrong field, 64 KiB of junk, NUL bytes) never reaches the audit trail.
    """
    if client_id and not credentials.is_client_id(client_id):
        reason, client_id = "malformed_client_id", None
    metrics.count_auth_failure(reason)
    actor = request_actor("client", None, None)

    def write(session: Session) -> None:
        audit.record(session, "client.auth_failed", actor, workspace_id=workspace_id,
                     target_type="key" if client_id else None, target_id=client_id or None,
                     details={"reason": reason})

    boundary.write_after("client.auth_failed", write)


# Endpoints whose request presents a token (the form's `token`) along with the client's
# credentials.
TOKEN_ENDPOINTS = frozenset({"introspection", "revocation", "rotation"})


def presented_token(request) -> token_service.TokenInfo | None:
    """The token of the form's `token`, as read with the caller's credential (None: garbage,
    unknown or not looked up)."""
    return getattr(request, "keymint_token", None)


class KeyAuthentication(ClientAuthentication):
    """client_secret_basic and client_secret_post against hashed key secrets."""

    def authenticate(self, request, methods, endpoint):
        basic = parse_basic(request.headers.get("Authorization"))
        form = request.form
        in_body = "client_id" in form or "client_secret" in form
        if basic is not None and in_body:
            # RFC 6749 §2.3.1 forbids two authentication methods; a client_id alone in the
            # body is not one (requests-oauthlib sends it with include_client_id=True), so it
            # is accepted when it names the Basic client.
            if "client_secret" in form:
                raise InvalidRequestError(
                    "Client credentials were sent both in the Authorization header and the body.")
            if form["client_id"] != basic[0]:
                raise InvalidRequestError(
                    "The client_id in the body does not match the Authorization header.")
        if basic is not None and "client_secret_basic" in methods:
            method, (client_id, secret) = "client_secret_basic", basic
        elif in_body and "client_secret_post" in methods:
            method = "client_secret_post"
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        else:
            note_auth_failure("missing_credentials", None)
            raise ClientAuthFailed("Client authentication is required.")
        now = utcnow()
        if endpoint != "introspection":
            # Issuance, revocation and rotation write when they succeed: their read goes in
            # that transaction. Introspection only reads: its read opens no transaction.
            reads.in_unit_of_work(db.session)
        if endpoint in TOKEN_ENDPOINTS:
            # The caller and the token it presents, in one statement; the endpoint takes the
            # token from the request (presented_token) instead of reading it again.
            found, read = fast_path.prefetched(flask_request.environ,
                                               (client_id, form.get("token")))
            cred, request.keymint_token = read if found else \
                token_service.load_caller_and_token(db.session, client_id, form.get("token"),
                                                    now)
        else:
            cred = key_service.load_credential(db.session, client_id, now)
        cred, matched = verify_secret(cred, client_id, secret, now)
        request.auth_method = method
        return KeyClient(cred, matched)


def verify_secret(cred: key_service.KeyCredential | None, client_id: str, secret: str,
                  now: datetime) -> tuple[key_service.KeyCredential, key_service.SecretRow]:
    """The secret checked against the key read for `client_id`: a failure is counted and
    audited and raises ClientAuthFailed; a success spends the key's rate limit and marks it
    used."""
    matched = key_service.match_secret(cred, secret)
    if cred is None or matched is None:
        if cred is None:
            note_auth_failure("unknown_or_inactive_client", client_id)
        else:
            note_auth_failure("wrong_secret", client_id, cred.workspace_id)
        raise ClientAuthFailed()
    # Only now, with the secret matched, may the request spend the key's rate limit.
    note_client(cred.client_id)
    rate_limits.authenticated(cred.client_id, cred.rate_limit)
    key_service.mark_used(db.session, cred, now, client_ip(),
                          current_app.config["KEYMINT_LAST_USED_INTERVAL"])
    return cred, matched


def authenticate_basic_client() -> key_service.KeyCredential:
    """The key behind this request's HTTP Basic client credentials (RFC 6749 §2.3.1), outside
    the OAuth endpoints: the same lookup, constant-time check, failure audit and rate limit
    as client_secret_basic there. Raises ClientAuthFailed."""
    basic = parse_basic(request.headers.get("Authorization"))
    if basic is None:
        note_auth_failure("missing_credentials", None)
        raise ClientAuthFailed("Client authentication is required.")
    client_id, secret = basic
    now = utcnow()
    cred, _ = verify_secret(key_service.load_credential(db.session, client_id, now), client_id,
                            secret, now)
    return cred


class KeymintAuthorizationServer(AuthorizationServer):
    def init_app(self, app: Flask, query_client=None, save_token=None) -> None:
        super().init_app(app, query_client=lambda _id: None, save_token=lambda *_: None)
        self._client_auth = KeyAuthentication(self.query_client)
        self.scopes_supported = None

    def handle_response(self, status_code, payload, headers):
        if status_code >= 400 and isinstance(payload, dict):
            note_error(payload.get("error"))
        return super().handle_response(status_code, payload, headers)

    def get_token_grant(self, request):
        # Authlib answers every unmatched grant_type with unsupported_grant_type; a missing one
        # is a missing required parameter (RFC 6749 §5.2), and an empty one counts as missing
        # (§3.1).
        if not request.payload.grant_type:
            raise InvalidRequestError("Missing 'grant_type' parameter.")
        return super().get_token_grant(request)

    def client_actor(self, client: KeyClient):
        return request_actor("user", str(client.credential.user_id), client.client_id)

    def token_ttl(self, cred: key_service.KeyCredential) -> int:
        """The workspace's token TTL policy, else the server default; never above the max,
        nor, for a JWT, above KEYMINT_JWT_ACCESS_TOKEN_TTL."""
        config = current_app.config
        jwt_ttl = (config["KEYMINT_JWT_ACCESS_TOKEN_TTL"]
                   if cred.token_format == TokenFormat.JWT else None)
        return accounts.effective_token_ttl(cred.token_ttl, config["KEYMINT_ACCESS_TOKEN_TTL"],
                                            config["KEYMINT_MAX_ACCESS_TOKEN_TTL"], jwt_ttl)

    def jwt_signing(self, cred: key_service.KeyCredential) -> token_service.JwtSigning | None:
        """How to sign the key's next token: None for an opaque one (the workspace's format).

        A workspace that wants JWTs never silently gets opaque tokens its resource servers
        cannot validate: without a usable signing key the request is answered 503.
        """
        if cred.token_format != TokenFormat.JWT:
            return None
        kek = current_app.config.get("KEYMINT_SIGNING_KEY_ENCRYPTION_KEY")
        try:
            key = signing_keys.signer(db.session, kek.reveal() if kek else None, utcnow())
        except signing_keys.SigningUnavailable as exc:
            log.error("cannot issue a JWT access token: %s", exc.message)
            raise TemporarilyUnavailable(
                "JWT access tokens cannot be issued right now (no usable signing key).") \
                from None
        base = issuer()
        return token_service.JwtSigning(key=key, issuer=base,
                                        audience=token_service.jwt_audience(base))


authorization = KeymintAuthorizationServer()
