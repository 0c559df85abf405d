"""The three ways a token check can fail, each carrying its RFC 6750 answer."""

from __future__ import annotations


class TokenError(Exception):
    """A request that must not reach the protected code; `status` and `error` say how to answer."""

    status = 401
    error = "invalid_token"

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class InvalidRequest(TokenError):
    """The request carries credentials in a form RFC 6750 does not allow (400)."""

    status = 400
    error = "invalid_request"


class MissingToken(TokenError):
    """No bearer token at all: a 401 whose challenge names no error (RFC 6750 §3.1)."""

    error = ""


class InvalidToken(TokenError):
    """Expired, revoked, malformed, not for this resource, badly signed (401 invalid_token)."""


class InsufficientScope(TokenError):
    """A valid token without what this request needs (403 insufficient_scope, with `scope=`)."""

    status = 403
    error = "insufficient_scope"

    def __init__(self, description: str, scopes: tuple[str, ...] = ()) -> None:
        super().__init__(description)
        self.scopes = scopes


class VerifierUnavailable(TokenError):
    """keymint (metadata, JWKS or introspection) could not be asked: fail closed with a 503."""

    status = 503
    error = "temporarily_unavailable"
