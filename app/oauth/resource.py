"""Bearer-token protection for keymint's own API, over the same token lookup; and the one
alternative it accepts on a few read routes: a resource server's own client credentials."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from authlib.integrations.flask_oauth2 import ResourceProtector, current_token
from authlib.integrations.flask_oauth2.errors import raise_http_exception
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import MissingAuthorizationError, UnsupportedTokenTypeError
from authlib.oauth2.rfc6750 import BearerTokenValidator, InsufficientScopeError, InvalidTokenError
from flask import current_app, g, request

from app.clock import utcnow
from app.extensions import db
from app.oauth.errors import REALM, ClientAuthFailed
from app.oauth.server import authenticate_basic_client
from app.services import keys as key_service
from app.services import resources as resource_service
from app.services import tokens as token_service
from app.web import fast_path, rate_limits
from app.web.telemetry import note_client, note_error


class KeymintBearerValidator(BearerTokenValidator):
    """The Bearer check: a token is good when TokenInfo.is_active says so, as in
    introspection; then the route's scopes decide."""

    def authenticate_token(self, token_string: str) -> token_service.TokenInfo | None:
        found, info = fast_path.prefetched(request.environ, (token_string,))
        if found:  # read by the fast path (app/api/fast_me.py), which handed the request over
            return info
        return token_service.lookup(db.session, token_string, with_workspace=True)

    def validate_token(self, token: token_service.TokenInfo | None, scopes, request) -> None:
        # Authlib would ask is_expired() and is_revoked() separately and answer both with
        # the same error; one is_active() keeps the rule in one place.
        if token is None or not token.is_active(utcnow()):
            raise InvalidTokenError(realm=self.realm, extra_attributes=self.extra_attributes)
        # RFC 8707 §2 / RFC 6750 §3.1: a token meant for other APIs is not one for this API,
        # whatever scopes it holds (its audience was read by the same statement).
        if not resource_service.for_own_api(token.audience,
                                            current_app.config.get("KEYMINT_ISSUER") or None):
            raise InvalidTokenError(
                description="The access token is not for this API: its audience does not "
                            "include keymint's own API (<issuer>/api/v1).",
                realm=self.realm, extra_attributes=self.extra_attributes)
        note_client(token.client_id)  # authenticated, whatever the route's scopes say
        if self.scope_insufficient(token.scopes, scopes):
            raise InsufficientScopeError()


class KeymintResourceProtector(ResourceProtector):
    """Authlib's protector with RFC 6750 §3 challenges exactly as clients expect them.

    Authlib answers a missing or non-Bearer Authorization header with a lowercase `bearer`
    challenge carrying a non-standard error code; RFC 6750 §3.1 says a request without
    credentials gets a bare `Bearer realm=...` challenge. Insufficient scope (403) also
    names the scopes the route needs.
    """

    def raise_error_response(self, error: OAuth2Error) -> None:
        body = dict(error.get_body())
        headers = [h for h in error.get_headers() if h[0].lower() != "www-authenticate"]
        if isinstance(error, MissingAuthorizationError | UnsupportedTokenTypeError):
            body = {"error": "invalid_request" if isinstance(error, UnsupportedTokenTypeError)
                    else "missing_authorization",
                    "error_description": "A Bearer access token from /oauth/token is required "
                                         "in the Authorization header."}
            headers.append(("WWW-Authenticate", f'Bearer realm="{REALM}"'))
        elif isinstance(error, InsufficientScopeError):
            needed = " or ".join(getattr(error, "keymint_scopes", []) or [])
            body["error_description"] = (f"This route needs a token with the scope {needed}."
                                         if needed else body.get("error_description", ""))
            challenge = f'Bearer realm="{REALM}", error="insufficient_scope"'
            if needed:
                challenge += f', scope="{" ".join(error.keymint_scopes)}"'
            headers.append(("WWW-Authenticate", challenge))
        else:
            headers.extend(h for h in error.get_headers() if h[0].lower() == "www-authenticate")
        note_error(body.get("error"))
        raise_http_exception(error.status_code, json.dumps(body), headers)

    def validate_request(self, scopes, request, **kwargs):
        try:
            return super().validate_request(scopes, request, **kwargs)
        except InsufficientScopeError as error:
            error.keymint_scopes = list(scopes or [])
            raise


require_token = KeymintResourceProtector()
require_token.register_token_validator(KeymintBearerValidator(realm=REALM))


def current_info() -> token_service.TokenInfo:
    """The token of this request, as looked up by the Bearer check."""
    return current_token._get_current_object()


def _presents_basic() -> bool:
    scheme, _, _ = (request.headers.get("Authorization") or "").partition(" ")
    return scheme.lower() == "basic"


def require_token_or_resource_server(scope: str) -> Callable[[Callable[..., Any]], Any]:
    """A Bearer token holding `scope`, or HTTP Basic client credentials of a key (a resource
    server's introspecting key, say): the view reads the latter with resource_server().

    Basic credentials are checked exactly as at the OAuth endpoints (app.oauth.server): a
    failure is a 401 `invalid_client` with a Basic challenge, counted and audited as
    `client.auth_failed`; such requests are rate limited as introspection is (the key's own
    budget once authenticated, the failure and per-IP limits otherwise). Bearer requests are
    untouched by this.
    """
    def decorate(view: Callable[..., Any]) -> Any:
        bearer_view = require_token(scope)(view)

        @functools.wraps(view)
        def either(*args: Any, **kwargs: Any) -> Any:
            if not _presents_basic():
                return bearer_view(*args, **kwargs)
            try:
                g.keymint_resource_server = authenticate_basic_client()
            except ClientAuthFailed as error:
                raise_http_exception(error.status_code, json.dumps(dict(error.get_body())),
                                     error.get_headers())
            return view(*args, **kwargs)

        return rate_limits.client_credential_limits("KEYMINT_RATELIMIT_INTROSPECT",
                                                    applies=_presents_basic)(either)

    return decorate


def resource_server() -> key_service.KeyCredential | None:
    """The key whose client credentials authenticated this request; None for a Bearer one."""
    return g.get("keymint_resource_server")
