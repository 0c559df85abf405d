"""OAuth errors with keymint's exact headers (RFC 6749 §5.2 shape, Basic realm)."""

from __future__ import annotations

import re

from authlib.oauth2.rfc6749.errors import InvalidClientError, OAuth2Error

REALM = "keymint"

# RFC 6749 §5.2: error_description is %x20-21 / %x23-5B / %x5D-7E. Authlib raises ValueError
# (a 500) for anything else, so text that echoes the client's input is cleaned first.
_NOT_DESCRIPTION_SAFE = re.compile(r'[^\x20\x21\x23-\x5b\x5d-\x7e]')
_MAX_ECHO = 64


def describe(text: str) -> str:
    """An error_description safe to send: disallowed characters become '?'."""
    return _NOT_DESCRIPTION_SAFE.sub("?", text[:500])


def echo(value: str) -> str:
    """A client-supplied value quoted inside a description (shortened, made safe)."""
    value = value if len(value) <= _MAX_ECHO else value[:_MAX_ECHO] + "..."
    return describe(value)


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
