"""HTTP routes of the OAuth endpoints: guard the form, hand over to Authlib."""

from __future__ import annotations

from authlib.oauth2 import OAuth2Error
from flask import Blueprint, Response, current_app, jsonify

from app.clock import utcnow
from app.extensions import db
from app.oauth.client import AUTH_METHODS
from app.oauth.server import authorization, check_form_request
from app.services import signing_keys
from app.services.keys import INTROSPECT_SCOPE, MANAGEMENT_SCOPES
from app.web.context import issuer
from app.web.rate_limits import oauth_limits

bp = Blueprint("oauth", __name__)


def _run(handler) -> Response:
    # Database errors go to the app's handler (a 503); the commit is the request boundary's.
    try:
        check_form_request()
        return handler()
    except OAuth2Error as error:
        return authorization.handle_error_response(None, error)


@bp.post("/oauth/token")
@oauth_limits()
def token() -> Response:
    return _run(authorization.create_token_response)


@bp.post("/oauth/introspect")
@oauth_limits("KEYMINT_RATELIMIT_INTROSPECT", ip_when_authenticated=False)
def introspect() -> Response:
    return _run(lambda: authorization.create_endpoint_response("introspection"))


@bp.post("/oauth/revoke")
@oauth_limits("KEYMINT_RATELIMIT_REVOKE", ip_when_authenticated=False)
def revoke() -> Response:
    return _run(lambda: authorization.create_endpoint_response("revocation"))


@bp.post("/oauth/rotate")
@oauth_limits()
def rotate() -> Response:
    return _run(lambda: authorization.create_endpoint_response("rotation"))


@bp.get("/.well-known/oauth-authorization-server")
def metadata() -> Response:
    base = issuer()
    methods = list(AUTH_METHODS)
    response = jsonify({
        "issuer": base,
        "token_endpoint": f"{base}/oauth/token",
        "introspection_endpoint": f"{base}/oauth/introspect",
        "revocation_endpoint": f"{base}/oauth/revoke",
        "jwks_uri": f"{base}/.well-known/jwks.json",
        # No response_types_supported: there is no authorization endpoint, and RFC 8414 §3.2
        # requires a claim with zero elements to be omitted (docs/decisions.md).
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": methods,
        "introspection_endpoint_auth_methods_supported": methods,
        "revocation_endpoint_auth_methods_supported": methods,
        "scopes_supported": sorted({INTROSPECT_SCOPE, *MANAGEMENT_SCOPES}),
        "service_documentation": f"{base}/openapi.json",
    })
    # Cacheable only when the issuer is configured: one derived from the Host header must not
    # be stored by a shared cache and served to others.
    configured = bool(current_app.config.get("KEYMINT_ISSUER"))
    response.headers["Cache-Control"] = "public, max-age=300" if configured else "no-store"
    return response


@bp.get("/.well-known/jwks.json")
def jwks() -> Response:
    """The public keys of JWT access tokens (RFC 7517): pending, active, and retired ones
    whose tokens may still be live."""
    response = jsonify({"keys": signing_keys.published(db.session, utcnow())})
    # The same for every host, so shared caches may keep it. A new key is published
    # JWKS_MAX_AGE before it signs: no cached copy lacks a key that signs (docs/jwt.md).
    response.headers["Cache-Control"] = f"public, max-age={signing_keys.JWKS_MAX_AGE}"
    return response
