"""HTTP Basic client credentials as OAuth clients send them (RFC 6749 §2.3.1)."""

from __future__ import annotations

import base64
import binascii
from urllib.parse import unquote


class MalformedBasic(ValueError):
    """A Basic Authorization header that cannot be read."""


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """(client_id, secret) from a Basic header (form-urlencoded, then base64); None if absent.

    Raises MalformedBasic for a Basic header that cannot be read; the OAuth endpoints answer
    it as a failed client authentication, the rate limiter keys such a request by IP only.
    """
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise MalformedBasic() from None
    user, sep, password = decoded.partition(":")
    if not sep:
        raise MalformedBasic()
    return unquote(user), unquote(password)
