"""OAuth errors with keymint's exact headers (RFC 6749 §5.2 shape, Basic realm)."""

from __future__ import annotations

import re

from authlib.oauth2.rfc6749.errors import InvalidClientError, OAuth2Error

REALM = "keymint"

# RFC 6749 §5.2: error_description is %x20-21 / %x23-5B / %x5D-7E; Authlib raises (a 500)
# on anything else, and echoed client input can hold anything.
_NOT_ALLOWED_IN_DESCRIPTION = re.compile(r'[^\x20\x21\x23-\x5b\x5d-\x7e]')


def safe_description(text: str, limit: int = 200) -> str:
    """A description fit for an OAuth error, whatever client input it quotes."""
    return _NOT_ALLOWED_IN_DESCRIPTION.sub("?", text)[:limit]


class ClientAuthFailed(InvalidClientError):
    """One answer for unknown id, wrong secret, revoked/expired key, disabled owner."""

    status_code = 401

    def __init__(self, description: str = "Client authentication failed.") -> None:
        super().__init__(description=description, status_code=401)

    def get_headers(self):
        headers = [h for h in super().get_headers() if h[0] != "WWW-Authenticate"]
        headers.append(("WWW-Authenticate", f'Basic realm="{REALM}"'))
        return headers


class InsufficientScope(OAuth2Error):
    error = "insufficient_scope"
    status_code = 403


class TemporarilyUnavailable(OAuth2Error):
    """The database cannot be reached; nothing was issued or changed."""

    error = "temporarily_unavailable"
    status_code = 503

    def get_headers(self):
        return [*super().get_headers(), ("Retry-After", "5")]


class InvalidTarget(OAuth2Error):
    """RFC 8707 §2: a `resource` that is malformed, unknown or not allowed for this key."""

    error = "invalid_target"
    status_code = 400
