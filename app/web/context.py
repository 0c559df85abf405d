"""Per-request facts shared by every view: request id, client IP, the acting credential."""

from __future__ import annotations

import re
import secrets
from typing import Any

from flask import Flask, Response, g, has_request_context, request

from app.runtime import logs
from app.services.audit import Actor

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def request_id_from(given: str | None) -> str:
    """The client's X-Request-ID if it is a sane one, else a fresh id."""
    return given if given and _REQUEST_ID.match(given) else secrets.token_hex(12)


def request_id() -> str:
    rid = g.get("request_id")
    if rid is None:
        rid = g.request_id = request_id_from(request.headers.get("X-Request-ID"))
    return rid


def client_ip() -> str | None:
    return request.remote_addr


def request_actor(actor_type: str, actor_id: str | None = None,
                  key: str | None = None) -> Actor:
    return Actor(type=actor_type, id=actor_id, key=key, ip=client_ip(),
                 user_agent=request.headers.get("User-Agent"), request_id=request_id())


# Paths whose answers never carry credentials and may be cached by intermediaries.
CACHEABLE_PATHS = frozenset({"/.well-known/oauth-authorization-server", "/.well-known/jwks.json",
                             "/openapi.json"})

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Cross-Origin-Resource-Policy": "same-origin",
}
HSTS = "max-age=31536000; includeSubDomains"
_SECURITY_HEADERS = tuple((name, name.lower(), value) for name, value in SECURITY_HEADERS.items())
# Names the service, not the software: the server (Granian) adds `server: granian` only to
# responses that name no server themselves.
SERVER_HEADER = "keymint"


def must_not_cache() -> bool:
    """True unless the answer is a public document fetched without any credential."""
    # The path first: it settles every API route without two header lookups.
    return (request.path not in CACHEABLE_PATHS or "Authorization" in request.headers
            or "X-API-Key" in request.headers)


def log_field(field: str) -> Any:
    """request_id, client_ip, method and path of the request being served, for any log line."""
    if field not in _LOG_FIELDS or not has_request_context():
        return None
    if field == "request_id":
        return request_id()
    if field == "client_ip":
        return client_ip()
    if field == "method":
        return request.method
    return request.path


_LOG_FIELDS = frozenset({"request_id", "client_ip", "method", "path"})


def init_app(app: Flask) -> None:
    logs.provide_request_fields(log_field)

    @app.before_request
    def _assign_request_id() -> None:
        request_id()

    @app.after_request
    def _common_headers(response: Response) -> Response:
        headers = response.headers
        # The names already set, read once: Werkzeug answers each absent-name lookup
        # (setdefault, `in`, get, pop) by raising and catching an exception.
        present = {name.lower() for name, _ in headers}
        headers["X-Request-ID"] = request_id()
        for name, lowered, value in _SECURITY_HEADERS:
            if lowered not in present:  # a view may set its own (e.g. a stricter CSP)
                headers.add(name, value)
        # HSTS only over HTTPS, where it is meaningful (and honoured).
        if request.is_secure and "strict-transport-security" not in present:
            headers.add("Strict-Transport-Security", HSTS)
        # Credentials and everything answered to them are never stored by a cache; only
        # public, credential-free documents may choose their own caching.
        if must_not_cache() or "cache-control" not in present:
            headers["Cache-Control"] = "no-store"
            no_store = True
        else:
            no_store = headers.get("Cache-Control") == "no-store"
        if no_store:
            headers["Pragma"] = "no-cache"
        headers["Server"] = SERVER_HEADER
        return response


# Issuers derived from requests, by (scheme, host, root path): building the URL through
# Werkzeug (url_root) costs more than the rest of an introspection's response. Bounded, as
# the Host header is the client's to choose.
_derived_issuers: dict[tuple[str, str, str], str] = {}
_DERIVED_ISSUERS_MAX = 64


def no_store_headers(secure: bool) -> tuple[tuple[str, str], ...]:
    """The headers `_common_headers` gives a credential-bearing answer that set no security
    header of its own, built once (app/oauth/fast_introspection.py answers outside Flask)."""
    return _NO_STORE_HEADERS[secure]


def _build_no_store_headers(secure: bool) -> tuple[tuple[str, str], ...]:
    headers = [(name, value) for name, value in SECURITY_HEADERS.items()]
    if secure:
        headers.append(("Strict-Transport-Security", HSTS))
    headers += [("Cache-Control", "no-store"), ("Pragma", "no-cache"), ("Server", SERVER_HEADER)]
    return tuple(headers)


_NO_STORE_HEADERS = {secure: _build_no_store_headers(secure) for secure in (False, True)}


def derived_issuer(scheme: str, host: str, root_path: str) -> str | None:
    """The issuer already derived for requests to (scheme, host, root path), if any."""
    return _derived_issuers.get((scheme, host, root_path))


def issuer() -> str:
    """KEYMINT_ISSUER, else the URL this request reached (scheme from a trusted proxy)."""
    from flask import current_app

    configured = current_app.config.get("KEYMINT_ISSUER")
    if configured:
        return configured
    where = (request.scheme, request.host, request.root_path)
    found = _derived_issuers.get(where)
    if found is None:
        if len(_derived_issuers) >= _DERIVED_ISSUERS_MAX:
            _derived_issuers.clear()
        found = _derived_issuers[where] = request.url_root.rstrip("/")
    return found
