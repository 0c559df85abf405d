"""Rate limits (Flask-Limiter) on the OAuth endpoints and legacy-key requests, and the 429.

Limits, each its own bucket in the limiter storage (memory, or Redis shared by all nodes):
- per client IP, per endpoint ............ KEYMINT_RATELIMIT_IP
- per client_id, per endpoint ............ KEYMINT_RATELIMIT_CLIENT (introspection:
                                           KEYMINT_RATELIMIT_INTROSPECT)
- failed authentications per client_id .. KEYMINT_RATELIMIT_FAILED_CLIENT (all endpoints
                                           share it: a key id under attack is throttled
                                           whatever IPs the guesses come from)
- failed authentications per client IP ... KEYMINT_RATELIMIT_FAILED_IP (credential stuffing
                                           across many key ids from one address)
- per legacy key / per IP on requests carrying X-API-Key: `legacy_limits` (below).

Failure limits only count responses that failed authentication (401), but are checked
before every request: once a key id is over its failure budget, even a correct secret waits
for the window to pass.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, Response, current_app, g, request
from flask_limiter import RateLimitExceeded
from limits import RateLimitItemPerMinute
from limits.strategies import FixedWindowRateLimiter
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from app import credentials, metrics
from app.api.context import client_ip, request_actor
from app.extensions import db, limiter

log = logging.getLogger("keymint.ratelimit")

F = TypeVar("F", bound=Callable[..., Any])

ERROR_CODE = "rate_limited"
LEGACY_HEADER = "X-API-Key"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
# At most one ratelimit.exceeded audit event per limit and key per minute.
AUDIT_SAMPLE = RateLimitItemPerMinute(1)

# Limit scopes, also the `limit` label of keymint_rate_limited_requests_total.
IP = "ip"
CLIENT = "client"
FAILED_CLIENT = "failed_auth_client"
FAILED_IP = "failed_auth_ip"
LEGACY_KEY = "legacy_key"
LEGACY_IP = "legacy_ip"


def _setting(name: str) -> Callable[[], str]:
    return lambda: current_app.config[name]


def _key(kind: str, value: str) -> str:
    return f"{current_app.config['KEYMINT_RATELIMIT_KEY_PREFIX']}:{kind}:{value}"


# --- what a request is keyed by (never raises: an error here would disable the limiter) ------


def ip_key() -> str:
    return _key("ip", client_ip() or "unknown")


def presented_client_id() -> str | None:
    """The well-formed client_id a request presents (Basic header or form), else None.

    Malformed ids can never authenticate and are not counted per id (the IP limits still
    apply), so a client cannot grow the limiter storage with made-up keys.
    """
    if "keymint_rl_client_id" in g:
        return g.keymint_rl_client_id
    from app.oauth.errors import ClientAuthFailed
    from app.oauth.server import parse_basic

    client_id = None
    try:
        basic = parse_basic(request.headers.get("Authorization"))
    except ClientAuthFailed:
        basic = None
    if basic is not None:
        client_id = basic[0]
    elif request.mimetype == FORM_CONTENT_TYPE:
        try:
            client_id = request.form.get("client_id")
        except HTTPException:  # e.g. 413: the view reports it
            client_id = None
    g.keymint_rl_client_id = client_id if credentials.is_client_id(client_id) else None
    return g.keymint_rl_client_id


def client_key() -> str:
    return _key("client", presented_client_id() or "-")


def _no_client_id() -> bool:
    return presented_client_id() is None


def legacy_key() -> str:
    """A short fingerprint of the presented legacy key: the storage never holds the key."""
    presented = request.headers.get(LEGACY_HEADER, "")
    fingerprint = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return _key("legacy", fingerprint)


def _no_legacy_key() -> bool:
    return LEGACY_HEADER not in request.headers


def authentication_failed(response: Response) -> bool:
    return response.status_code == 401


# --- decorators --------------------------------------------------------------------------------


def oauth_limits(client_setting: str = "KEYMINT_RATELIMIT_CLIENT") -> Callable[[F], F]:
    """The limits of one OAuth endpoint view; `client_setting` names its per-client limit."""

    def decorate(view: F) -> F:
        for rule in (
            limiter.limit(_setting("KEYMINT_RATELIMIT_IP"), key_func=ip_key, scope=IP),
            limiter.limit(_setting(client_setting), key_func=client_key, scope=CLIENT,
                          exempt_when=_no_client_id),
            limiter.shared_limit(_setting("KEYMINT_RATELIMIT_FAILED_CLIENT"), FAILED_CLIENT,
                                 key_func=client_key, exempt_when=_no_client_id,
                                 deduct_when=authentication_failed),
            limiter.shared_limit(_setting("KEYMINT_RATELIMIT_FAILED_IP"), FAILED_IP,
                                 key_func=ip_key, deduct_when=authentication_failed),
        ):
            view = rule(view)
        return view

    return decorate


def legacy_limits(view: F) -> F:
    """Rate-limit requests that present a legacy key in X-API-Key; others pass untouched.

    Apply it under the route decorator of any view that accepts a legacy key::

        @bp.get("/me")
        @legacy_limits
        def me(): ...

    Per legacy key (KEYMINT_RATELIMIT_LEGACY_KEY), per client IP (KEYMINT_RATELIMIT_IP), and
    a 401 answer counts as a failed authentication of that IP (KEYMINT_RATELIMIT_FAILED_IP,
    shared with the OAuth endpoints).
    """
    for rule in (
        limiter.limit(_setting("KEYMINT_RATELIMIT_IP"), key_func=ip_key, scope=LEGACY_IP,
                      exempt_when=_no_legacy_key),
        limiter.limit(_setting("KEYMINT_RATELIMIT_LEGACY_KEY"), key_func=legacy_key,
                      scope=LEGACY_KEY, exempt_when=_no_legacy_key),
        limiter.shared_limit(_setting("KEYMINT_RATELIMIT_FAILED_IP"), FAILED_IP, key_func=ip_key,
                             exempt_when=_no_legacy_key, deduct_when=authentication_failed),
    ):
        view = rule(view)
    return view


# --- the 429 -------------------------------------------------------------------------------------


def _retry_after(exc: RateLimitExceeded) -> int:
    try:
        current = limiter.current_limit
        reset_at = current.reset_at if current is not None else None
    except Exception:  # storage trouble: fall back to the window length
        reset_at = None
    if reset_at is None:
        return max(1, int(exc.limit.limit.get_expiry()))
    return max(1, int(reset_at - time.time()))


def _first_audit_in_window(scope: str, key: str) -> bool:
    try:
        return FixedWindowRateLimiter(limiter.storage).hit(AUDIT_SAMPLE, "audit-sample", scope,
                                                            key)
    except Exception:
        log.warning("rate-limit storage unavailable; ratelimit.exceeded not audited")
        return False


def _audit(scope: str, rule: str, endpoint: str) -> None:
    from app.models import ApiKey
    from app.services import audit

    by_client = scope in (CLIENT, FAILED_CLIENT)
    key = client_key() if by_client else legacy_key() if scope == LEGACY_KEY else ip_key()
    if not _first_audit_in_window(scope, key):
        return
    client_id = presented_client_id() if by_client else None
    try:
        db.session.rollback()
        workspace_id = None
        if client_id is not None:
            workspace_id = db.session.scalar(
                select(ApiKey.workspace_id).where(ApiKey.client_id == client_id))
        target = ("key", client_id) if by_client else (
            ("legacy_key", None) if scope == LEGACY_KEY else ("ip", client_ip()))
        audit.record(db.session, "ratelimit.exceeded", request_actor("client", None, client_id),
                     workspace_id=workspace_id, target_type=target[0], target_id=target[1],
                     details={"limit": scope, "rule": rule, "endpoint": endpoint,
                              "sampled": "first per limit and key per minute"})
        db.session.commit()
    except SQLAlchemyError:
        db.session.rollback()
        log.warning("database unavailable; ratelimit.exceeded not audited")


def rate_limited_response(exc: RateLimitExceeded) -> Response:
    from app.api.errors import error_response
    from app.api.telemetry import endpoint_label

    scope = exc.limit.scope if isinstance(exc.limit.scope, str) else "limit"
    endpoint = endpoint_label()
    retry_after = _retry_after(exc)
    metrics.count_rate_limited(scope, endpoint)
    _audit(scope, str(exc.limit.limit), endpoint)
    response = error_response(429, ERROR_CODE,
                              f"Too many requests; retry after {retry_after} seconds.")
    response.headers["Retry-After"] = str(retry_after)
    return response


def init_app(app: Flask) -> None:
    # Flask-Limiter logs every breach at info; keymint's request line and metric already say
    # so. Keep its warnings (storage trouble).
    logging.getLogger("flask-limiter").setLevel(logging.WARNING)
    limiter.init_app(app)
    app.register_error_handler(RateLimitExceeded, rate_limited_response)
