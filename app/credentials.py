"""Make, parse, hash and verify keymint's public ids, secrets and tokens."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import zlib

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_BASE62_SET = frozenset(BASE62)

CLIENT_ID_PREFIX = "key_"
CLIENT_ID_BODY = 24
SECRET_PREFIX = "sk_"  # noqa: S105 (a format prefix, not a secret)
TOKEN_PREFIX = "at_"  # noqa: S105
TOKEN_ID_PREFIX = "tok_"  # noqa: S105
# Webhook signing secrets (Standard Webhooks: base64 after the prefix; app/services/webhooks.py)
WEBHOOK_SECRET_PREFIX = "whsec_"  # noqa: S105
INVITATION_ID_PREFIX = "inv_"
# Console credentials (app/services/console_auth.py): a sign-in link's token travels in a URL
# path, a session id in a cookie; prefixed and checksummed like secrets so that the log
# redactor recognises them wherever they end up (a request line's path, say).
LOGIN_LINK_PREFIX = "sil_"
CONSOLE_SESSION_PREFIX = "cs_"
RANDOM_BODY = 40
CHECKSUM_LEN = 6
HINT_LEN = 8  # prefix plus a few characters: enough to recognise, far too few to guess

# Values with these prefixes are keymint credentials, never legacy keys.
KEYMINT_PREFIXES = (CLIENT_ID_PREFIX, SECRET_PREFIX, TOKEN_PREFIX, TOKEN_ID_PREFIX)

CLIENT_ID_LEN = len(CLIENT_ID_PREFIX) + CLIENT_ID_BODY


def _base62_fixed(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, rem = divmod(number, 62)
        digits.append(BASE62[rem])
    return "".join(reversed(digits))


def _random_base62(length: int) -> str:
    # One uniform draw below 62**length from the CSPRNG, written in `length` base62 digits:
    # the same distribution as `length` independent secrets.choice() calls, at a fraction of
    # the cost (each choice is its own randbelow, ~1 µs, and a token needs 64 of them).
    return _base62_fixed(secrets.randbelow(62**length), length)


def checksum(body: str) -> str:
    return _base62_fixed(zlib.crc32(body.encode("ascii")), CHECKSUM_LEN)


def _make_checked(prefix: str) -> str:
    body = _random_base62(RANDOM_BODY)
    return prefix + body + checksum(body)


def _has_valid_shape(value: str, prefix: str) -> bool:
    if len(value) != len(prefix) + RANDOM_BODY + CHECKSUM_LEN or not value.startswith(prefix):
        return False
    rest = value[len(prefix) :]
    if not _BASE62_SET.issuperset(rest):
        return False
    body, check = rest[:RANDOM_BODY], rest[RANDOM_BODY:]
    return hmac.compare_digest(checksum(body), check)


def new_client_id() -> str:
    return CLIENT_ID_PREFIX + _random_base62(CLIENT_ID_BODY)


def new_secret() -> str:
    return _make_checked(SECRET_PREFIX)


def new_access_token() -> str:
    return _make_checked(TOKEN_PREFIX)


def new_login_link_token() -> str:
    return _make_checked(LOGIN_LINK_PREFIX)


def is_login_link_token(value: str | None) -> bool:
    return isinstance(value, str) and _has_valid_shape(value, LOGIN_LINK_PREFIX)


def new_console_session_id() -> str:
    return _make_checked(CONSOLE_SESSION_PREFIX)


def new_token_id() -> str:
    """The public `jti` of a token: safe to list and log, useless as a credential."""
    return TOKEN_ID_PREFIX + _random_base62(CLIENT_ID_BODY)


def new_invitation_id() -> str:
    """The public id of an invitation: random, so ids cannot be walked."""
    return INVITATION_ID_PREFIX + _random_base62(CLIENT_ID_BODY)


def is_client_id(value: str | None) -> bool:
    return (
        isinstance(value, str)
        and len(value) == CLIENT_ID_LEN
        and value.startswith(CLIENT_ID_PREFIX)
        and _BASE62_SET.issuperset(value[len(CLIENT_ID_PREFIX) :])
    )


def is_secret(value: str | None) -> bool:
    return isinstance(value, str) and _has_valid_shape(value, SECRET_PREFIX)


def is_access_token(value: str | None) -> bool:
    return isinstance(value, str) and _has_valid_shape(value, TOKEN_PREFIX)


# A compact JWS whose header and payload are JSON objects ("eyJ" is base64url of '{"'). The
# cap keeps a pasted blob from being hashed and looked up; keymint's tokens are far shorter.
JWT_MAX_LEN = 4096
_JWT_SHAPE = re.compile(r"eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


def looks_like_jwt(value: str | None) -> bool:
    """Shaped like a compact JWS (structure only; nothing is decoded or verified here)."""
    return (isinstance(value, str) and len(value) <= JWT_MAX_LEN
            and _JWT_SHAPE.fullmatch(value) is not None)


def digest(value: str) -> str:
    """SHA-256 hex digest: secrets and tokens are high-entropy, so no slow KDF is needed."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def digests_match(expected_hex: str, presented: str) -> bool:
    return hmac.compare_digest(expected_hex, digest(presented))


def hint(value: str) -> str:
    return value[:HINT_LEN]


# Compared against when a client id is unknown, so that path costs what a wrong secret costs.
DUMMY_SECRET_DIGEST = digest("sk_" + "0" * (RANDOM_BODY + CHECKSUM_LEN))


REDACTED = "[REDACTED]"

# Text that may be a keymint secret or access token, wherever it turns up (log lines, a
# User-Agent): its prefix and at least 8 base62 characters. Any length, checksum or not: a
# truncated or mistyped secret still gives most of itself away. Not after a letter or digit,
# so "task_12345678" is no token; "_" may precede ("last_token_at_..."). A webhook signing
# secret is base64 after its prefix ("+", "/" and "=" padding included).
CREDENTIAL_TEXT = re.compile(
    rf"(?<![0-9A-Za-z])(?:(?:{SECRET_PREFIX}|{TOKEN_PREFIX}|{LOGIN_LINK_PREFIX}"
    rf"|{CONSOLE_SESSION_PREFIX})[0-9A-Za-z]{{8,}}"
    rf"|{WEBHOOK_SECRET_PREFIX}[0-9A-Za-z+/]{{8,}}=*)")


# A JWT (a JWT access token is a bearer credential like `at_…`): two base64url JSON segments
# and whatever of the signature follows.
JWT_TEXT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.?[A-Za-z0-9_-]*")


def redact_credentials(text: str) -> str:
    """`text` with everything shaped like a secret or access token (a JWT included) replaced
    by REDACTED."""
    text = CREDENTIAL_TEXT.sub(REDACTED, text)
    return JWT_TEXT.sub(REDACTED, text) if "eyJ" in text else text
