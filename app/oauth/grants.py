"""The client_credentials grant: scope rules and token issuance through the services."""

from __future__ import annotations

from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import InvalidScopeError
from flask import current_app

from app.extensions import db
from app.oauth.errors import InvalidTarget, safe_description
from app.services import keys as key_service
from app.services import resources as resource_service
from app.services import tokens as token_service
from app.services.errors import InvalidInput
from app.web.context import issuer


def token_response(issued: token_service.IssuedToken) -> dict[str, object]:
    """The RFC 6749 §5.1 body; expires_in counts from the issuing instant."""
    return {
        "access_token": issued.access_token,
        "token_type": "Bearer",
        "expires_in": max(0, int((issued.expires_at - issued.issued_at).total_seconds())),
        "scope": " ".join(issued.scopes),
    }


def requested_scopes(scope: str | None, held: list[str]) -> list[str]:
    """The scopes a request asks for (default: all the key holds); must be a subset."""
    if scope is None or scope.strip() == "":
        return list(held)
    try:
        wanted = key_service.parse_scopes(scope)
    except InvalidInput as exc:
        raise InvalidScopeError(safe_description(exc.message)) from None
    missing = [s for s in wanted if s not in held]
    if missing:
        raise InvalidScopeError(
            safe_description(f"Scope not allowed for this key: {' '.join(missing)}"))
    return wanted


class KeyClientCredentialsGrant(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def validate_requested_scope(self) -> None:
        cred = self.request.client.credential
        scopes = requested_scopes(self.request.payload.scope, cred.scopes)
        named = [v for v in self.request.payload.datalist.get("resource", []) if v is not None]
        # Resources and their scopes come from this process's copy of the catalog at the
        # version the credential's own statement read: no extra round trip.
        cat = resource_service.catalog(db.session, cred.catalog_version)
        try:
            audience = resource_service.token_audience(cat, issuer(), cred.resources, named)
            if named:
                explicit = self.request.payload.scope
                scopes = resource_service.scopes_for_audience(
                    cat, issuer(), audience,
                    scopes if explicit is not None and explicit.strip() else None, cred.scopes)
        except InvalidInput as exc:
            error = InvalidTarget if exc.field == "resource" else InvalidScopeError
            raise error(description=safe_description(exc.message)) from None
        self.request.keymint_scopes = scopes
        self.request.keymint_audience = audience

    def create_token_response(self):
        client = self.request.client
        cred = client.credential
        ttl = self.server.token_ttl(cred)
        issued = token_service.issue(db.session, cred, client.secret,
                                     self.request.keymint_scopes, ttl,
                                     self.server.client_actor(client),
                                     audience=self.request.keymint_audience,
                                     durable=not current_app.config[
                                         "KEYMINT_ASYNC_ISSUANCE_COMMIT"],
                                     jwt=self.server.jwt_signing(cred))
        return 200, token_response(issued), self.TOKEN_RESPONSE_HEADER
