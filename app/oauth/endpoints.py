"""Introspection (RFC 7662), revocation (RFC 7009) and token rotation endpoints."""

from __future__ import annotations

from datetime import datetime

from authlib.consts import default_json_headers
from authlib.oauth2.rfc6749 import InvalidGrantError, InvalidRequestError, InvalidScopeError
from authlib.oauth2.rfc6749.endpoint import Endpoint
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from flask import current_app

from app import credentials
from app.clock import epoch, utcnow
from app.extensions import db
from app.oauth.client import AUTH_METHODS, KeyClient
from app.oauth.errors import InsufficientScope, safe_description
from app.oauth.grants import requested_scopes, token_response
from app.oauth.server import presented_token
from app.services import resources as resource_service
from app.services import signing_keys
from app.services import tokens as token_service
from app.services.errors import InvalidInput
from app.services.keys import INTROSPECT_SCOPE, KeyCredential
from app.web import boundary
from app.web.context import issuer

INACTIVE = {"active": False}


def is_keymint_format(token: str) -> bool:
    """keymint's own formats are never legacy keys: a garbage `at_…` (a failed checksum) is
    answered inactive with no query at all, as DESIGN.md promises; so is a JWT access token."""
    return token.startswith(credentials.KEYMINT_PREFIXES) or signing_keys.is_access_jwt(token)


def introspection_answer(info: token_service.TokenInfo | None,
                         caller: KeyCredential, now: datetime, iss: str) -> dict:
    """The RFC 7662 answer about a keymint token to `caller`: anything not active *for this
    caller* (unknown, inactive, another workspace's, not for its resource) is exactly
    inactive. The one definition, for the full path and the fast one (fast_introspection)."""
    if info is None or info.workspace_id != caller.workspace_id or not info.is_active(now):
        return dict(INACTIVE)
    bound = caller.introspects_for
    if bound is not None and not info.is_for(bound):
        return dict(INACTIVE)  # RFC 8707 §2: not a token for this resource server
    return {
        "active": True,
        "scope": " ".join(info.scopes),
        "client_id": info.client_id,
        "sub": str(info.user_id),
        "username": info.user_email,
        "token_type": "Bearer",
        "exp": epoch(info.expires_at),
        "iat": epoch(info.issued_at),
        "jti": info.jti,
        "iss": iss,
        "workspace_id": str(info.workspace_id),
        **({"aud": info.audience} if info.audience else {}),
    }


def _route_params(request, client: KeyClient) -> tuple[str, str] | None:
    """The `method` and `path` extension parameters (route decisions), if sent.

    A key bound to no resource has no route policy to apply: the parameters are ignored, as
    RFC 7662 §2.1 lets a server ignore extensions, so a resource-server library can always
    send them and fall back to scopes when no `allowed` comes back.
    """
    method, path = request.form.get("method"), request.form.get("path")
    if (method is None and path is None) or client.credential.introspects_for is None:
        return None
    if method is None or path is None:
        raise InvalidRequestError("'method' and 'path' go together.")
    try:
        return resource_service.route_params(method, path)
    except InvalidInput as exc:
        raise InvalidRequestError(safe_description(exc.message)) from None


def _token_param(request) -> str:
    token = request.form.get("token")
    if not token:
        raise InvalidRequestError("Missing 'token' parameter.")
    return token


class KeyIntrospectionEndpoint(IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = list(AUTH_METHODS)

    def create_endpoint_response(self, request):
        client: KeyClient = self.authenticate_endpoint_client(request)
        if INTROSPECT_SCOPE not in client.credential.scopes:
            raise InsufficientScope(
                f"Introspection needs a key with the '{INTROSPECT_SCOPE}' scope.")
        token = _token_param(request)
        route = _route_params(request, client)
        info = presented_token(request)
        body = self.introspect(token, client, info)
        if route is not None and body["active"] and info is not None:
            body.update(resource_service.route_answer(
                resource_service.catalog(db.session, client.credential.catalog_version),
                issuer(), client.credential.introspects_for, *route, info.scopes))
        return 200, body, default_json_headers

    def introspect(self, token: str, client: KeyClient,
                   info: token_service.TokenInfo | None) -> dict:
        """RFC 7662 answer; anything not active *for this caller* is exactly inactive.

        `info` is the token as read together with the caller's credential (one statement).
        """
        if info is None and not is_keymint_format(token):
            legacy = current_app.extensions.get("keymint_legacy_introspect")
            return legacy(token, client) if legacy else dict(INACTIVE)
        return introspection_answer(info, client.credential, utcnow(), issuer())


class KeyRevocationEndpoint(RevocationEndpoint):
    CLIENT_AUTH_METHODS = list(AUTH_METHODS)

    def check_params(self, request, client) -> None:
        # RFC 7009 §2.1: an unknown or wrong token_type_hint is not an error.
        _token_param(request)

    def authenticate_token(self, request, client: KeyClient):
        self.check_params(request, client)
        info = presented_token(request)
        # A foreign or unknown token answers 200 and changes nothing (no existence oracle).
        if info is None or info.key_id != client.credential.id:
            return None
        return info

    def revoke_token(self, token: token_service.TokenInfo, request) -> None:
        token_service.revoke(db.session, token, self.server.client_actor(request.client))

    def create_endpoint_response(self, request):
        client = self.authenticate_endpoint_client(request)
        token = self.authenticate_token(request, client)
        if token is not None:
            self.revoke_token(token, request)
        return 200, {}, default_json_headers


class TokenRotationEndpoint(Endpoint):
    """POST /oauth/rotate: retire a token and issue its replacement in one transaction."""

    ENDPOINT_NAME = "rotation"

    def create_endpoint_response(self, request):
        client: KeyClient = self.server.authenticate_client(request, list(AUTH_METHODS),
                                                            self.ENDPOINT_NAME)
        request.client = client
        _token_param(request)
        info = presented_token(request)
        if info is None or info.key_id != client.credential.id:
            raise InvalidGrantError("The token is unknown or does not belong to this key.")
        scope = request.form.get("scope")
        scopes = None
        if scope is not None and scope.strip():
            scopes = requested_scopes(scope, info.scopes)
        actor = self.server.client_actor(client)
        try:
            issued = token_service.rotate(db.session, info, client.credential, client.secret,
                                          scopes, self.server.token_ttl(client.credential), actor,
                                          jwt=self.server.jwt_signing(client.credential))
        except token_service.ReusedToken as exc:
            boundary.keep_changes_on_error()  # the lineage revocation and its audit event
            raise InvalidGrantError(safe_description(exc.message)) from None
        except InvalidInput as exc:
            if exc.field == "scope":
                raise InvalidScopeError(safe_description(exc.message)) from None
            raise InvalidGrantError(safe_description(exc.message)) from None
        return 200, token_response(issued), default_json_headers
