"""Bearer-token protection for keymint's own API, over the same token lookup."""

from __future__ import annotations

import json

from authlib.integrations.flask_oauth2 import ResourceProtector, current_token
from authlib.integrations.flask_oauth2.errors import raise_http_exception
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import MissingAuthorizationError, UnsupportedTokenTypeError
from authlib.oauth2.rfc6750 import BearerTokenValidator, InsufficientScopeError

from app.clock import utcnow
from app.extensions import db
from app.oauth.errors import REALM
from app.services import tokens as token_service


class TokenView:
    """What Authlib's validator asks of a token, answered from a TokenInfo."""

    __slots__ = ("info",)

    def __init__(self, info: token_service.TokenInfo) -> None:
        self.info = info

    def is_expired(self) -> bool:
        now = utcnow()
        return now >= self.info.expires_at or (
            self.info.key_expires_at is not None and now >= self.info.key_expires_at)

    def is_revoked(self) -> bool:
        i = self.info
        return (i.revoked_at is not None or i.key_revoked or not i.secret_live(utcnow())
                or not i.user_active or not i.is_member)

    def get_scope(self) -> str:
        return " ".join(self.info.scopes)


class KeymintBearerValidator(BearerTokenValidator):
    def authenticate_token(self, token_string: str) -> TokenView | None:
        info = token_service.lookup(db.session, token_string, with_workspace=True)
        return TokenView(info) if info is not None else None


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
    return current_token.info
