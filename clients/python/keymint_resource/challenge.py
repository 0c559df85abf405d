"""RFC 6750 answers: bearer-token extraction and the status, headers and body of a refusal."""

from __future__ import annotations

import json
import re

from keymint_resource.errors import InvalidRequest, MissingToken, TokenError

# RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
# What may stand inside a quoted auth-param without escaping (RFC 6750 §3: no '"' or '\').
_UNSAFE = re.compile(r'[^\x20-\x7e]|["\\]')


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer …` header; MissingToken or InvalidRequest else."""
    if authorization is None or not authorization.strip():
        raise MissingToken("Authentication required.")
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise MissingToken("Authentication required (Bearer).")
    value = value.strip()
    if not _B64TOKEN.fullmatch(value):
        raise InvalidRequest("The Authorization header is not a well-formed Bearer token.")
    return value


def _quoted(value: str) -> str:
    return '"' + _UNSAFE.sub("", value) + '"'


def www_authenticate(error: TokenError, realm: str | None = None,
                     resource_metadata: str | None = None) -> str:
    """The WWW-Authenticate value for `error` (RFC 6750 §3, RFC 9728 §5.1 resource_metadata)."""
    params: list[tuple[str, str]] = []
    if realm:
        params.append(("realm", realm))
    if error.error and not isinstance(error, MissingToken):
        params.append(("error", error.error))
        params.append(("error_description", error.description))
    scopes = getattr(error, "scopes", ())
    if scopes:
        params.append(("scope", " ".join(scopes)))
    if resource_metadata:
        params.append(("resource_metadata", resource_metadata))
    if not params:
        return "Bearer"
    return "Bearer " + ", ".join(f"{name}={_quoted(value)}" for name, value in params)


def refusal(error: TokenError, realm: str | None = None,
            resource_metadata: str | None = None) -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, headers, JSON body) answering a request refused with `error`."""
    headers = [("Content-Type", "application/json"), ("Cache-Control", "no-store")]
    if error.status in (400, 401, 403):
        headers.append(("WWW-Authenticate", www_authenticate(error, realm, resource_metadata)))
    else:
        # 503: keymint could not be asked; the client may try again shortly.
        headers.append(("Retry-After", "5"))
    # keymint's own API names a missing token the same way in its body.
    body: dict[str, str] = {"error": error.error or "missing_authorization",
                            "error_description": error.description}
    scopes = getattr(error, "scopes", ())
    if scopes:
        body["scope"] = " ".join(scopes)
    return error.status, headers, json.dumps(body).encode()
