"""Rate limits on the OAuth endpoints and legacy-key requests, and the 429.

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
for the window to pass. Per-IP and per-client limits are per endpoint; the failure budgets
are shared by all endpoints. Counting (storage, Redis fallback) is app/runtime/limiter.py.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Flask, Response, current_app, g, request
from limits import RateLimitItem, RateLimitItemPerMinute
from limits.strategies import FixedWindowRateLimiter
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.exceptions import HTTPException

from app import credentials
from app.models import ApiKey
from app.runtime import limiter, metrics
from app.services import audit
from app.web.basic_auth import MalformedBasic, parse_basic
from app.web.boundary import write_after
from app.web.context import client_ip, request_actor
from app.web.validation import FORM_CONTENT_TYPE

log = logging.getLogger("keymint.ratelimit")

F = TypeVar("F", bound=Callable[..., Any])

ERROR_CODE = "rate_limited"
LEGACY_HEADER = "X-API-Key"
# At most one ratelimit.exceeded audit event per limit and key per minute.
AUDIT_SAMPLE = RateLimitItemPerMinute(1)

# Limit scopes, also the `limit` label of keymint_rate_limited_requests_total.
IP = "ip"
CLIENT = "client"
FAILED_CLIENT = "failed_auth_client"
FAILED_IP = "failed_auth_ip"
LEGACY_KEY = "legacy_key"
LEGACY_IP = "legacy_ip"


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
    client_id = None
    try:
        basic = parse_basic(request.headers.get("Authorization"))
    except MalformedBasic:
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


# --- the limits ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One limit of a view: its setting, what it is keyed by, and when it applies."""

    scope: str                      # also the `limit` label of the 429 metric
    setting: str                    # config name holding e.g. "120 per minute"
    key: Callable[[], str]
    shared: bool = False            # one bucket for all endpoints (else one per endpoint)
    exempt: Callable[[], bool] | None = None
    failures_only: bool = False     # counts only 401 answers; still refuses once exhausted


class RateLimited(Exception):
    """A request over one of its limits; answered by rate_limited_response."""

    def __init__(self, rule: Rule, item: RateLimitItem, retry_after: int) -> None:
        super().__init__(rule.scope)
        self.rule, self.item, self.retry_after = rule, item, retry_after


_OAUTH_SETTINGS = ("KEYMINT_RATELIMIT_CLIENT", "KEYMINT_RATELIMIT_INTROSPECT")
_SETTINGS = (*_OAUTH_SETTINGS, "KEYMINT_RATELIMIT_IP", "KEYMINT_RATELIMIT_FAILED_CLIENT",
             "KEYMINT_RATELIMIT_FAILED_IP", "KEYMINT_RATELIMIT_LEGACY_KEY")


def _oauth_rules(client_setting: str) -> tuple[Rule, ...]:
    return (
        Rule(FAILED_CLIENT, "KEYMINT_RATELIMIT_FAILED_CLIENT", client_key, shared=True,
             exempt=_no_client_id, failures_only=True),
        Rule(FAILED_IP, "KEYMINT_RATELIMIT_FAILED_IP", ip_key, shared=True,
             failures_only=True),
        Rule(IP, "KEYMINT_RATELIMIT_IP", ip_key),
        Rule(CLIENT, client_setting, client_key, exempt=_no_client_id),
    )


_LEGACY_RULES = (
    Rule(FAILED_IP, "KEYMINT_RATELIMIT_FAILED_IP", ip_key, shared=True, exempt=_no_legacy_key,
         failures_only=True),
    Rule(LEGACY_IP, "KEYMINT_RATELIMIT_IP", ip_key, exempt=_no_legacy_key),
    Rule(LEGACY_KEY, "KEYMINT_RATELIMIT_LEGACY_KEY", legacy_key, exempt=_no_legacy_key),
)


def enforce(rules: tuple[Rule, ...]) -> None:
    """Check (and count) this request against `rules`; raises RateLimited when over one.

    Failure budgets are only tested here (they are spent after a 401, in _spend_failures),
    and are tested first, so a client locked out by failures spends none of its other limits.
    """
    counter = limiter.counter()
    if counter is None:
        return
    endpoint = request.endpoint or ""
    on_failure: list[tuple[RateLimitItem, str, str]] = []
    for rule in rules:
        if rule.exempt is not None and rule.exempt():
            continue
        identifiers = (rule.key(), rule.scope if rule.shared else f"{endpoint}:{rule.scope}")
        for item in counter.limits[rule.setting]:
            if rule.failures_only:
                on_failure.append((item, *identifiers))
                allowed = counter.test(item, *identifiers)
            else:
                allowed = counter.hit(item, *identifiers)
            if not allowed:
                raise RateLimited(rule, item, counter.seconds_until_reset(item, *identifiers))
    if on_failure:
        g.keymint_rl_on_failure = on_failure


def _spend_failures(response: Response) -> Response:
    on_failure = g.pop("keymint_rl_on_failure", None)
    if on_failure and response.status_code == 401:
        counter = limiter.counter()
        if counter is not None:
            for item, *identifiers in on_failure:
                counter.hit(item, *identifiers)
    return response


def _limited(rules: tuple[Rule, ...], view: F) -> F:
    @functools.wraps(view)
    def limited_view(*args: Any, **kwargs: Any) -> Any:
        enforce(rules)
        return view(*args, **kwargs)

    return limited_view  # type: ignore[return-value]


def oauth_limits(client_setting: str = "KEYMINT_RATELIMIT_CLIENT") -> Callable[[F], F]:
    """The limits of one OAuth endpoint view; `client_setting` names its per-client limit."""
    if client_setting not in _OAUTH_SETTINGS:
        raise ValueError(f"unknown per-client limit setting {client_setting}")
    rules = _oauth_rules(client_setting)
    return lambda view: _limited(rules, view)


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
    return _limited(_LEGACY_RULES, view)


# --- the 429 -------------------------------------------------------------------------------------


def _first_audit_in_window(scope: str, key: str) -> bool:
    counter = limiter.counter()
    try:
        return counter is not None and FixedWindowRateLimiter(counter.storage).hit(
            AUDIT_SAMPLE, "audit-sample", scope, key)
    except Exception:
        log.warning("rate-limit storage unavailable; ratelimit.exceeded not audited")
        return False


def _queue_audit(scope: str, rule: str, endpoint: str) -> None:
    """Sample the refusal into the audit trail, written by the request boundary after its
    rollback (app/web/boundary.py); best effort: a 429 stays a 429 with the database down."""
    by_client = scope in (CLIENT, FAILED_CLIENT)
    key = client_key() if by_client else legacy_key() if scope == LEGACY_KEY else ip_key()
    if not _first_audit_in_window(scope, key):
        return
    client_id = presented_client_id() if by_client else None
    target = ("key", client_id) if by_client else (
        ("legacy_key", None) if scope == LEGACY_KEY else ("ip", client_ip()))
    actor = request_actor("client", None, client_id)
    details = {"limit": scope, "rule": rule, "endpoint": endpoint,
               "sampled": "first per limit and key per minute"}

    def write(session: Session) -> None:
        workspace_id = None
        if client_id is not None:
            workspace_id = session.scalar(
                select(ApiKey.workspace_id).where(ApiKey.client_id == client_id))
        audit.record(session, "ratelimit.exceeded", actor, workspace_id=workspace_id,
                     target_type=target[0], target_id=target[1], details=details)

    write_after("ratelimit.exceeded", write, best_effort=True)


def rate_limited_response(exc: RateLimited) -> Response:
    from app.web.errors import error_response
    from app.web.telemetry import endpoint_label

    scope = exc.rule.scope
    endpoint = endpoint_label()
    metrics.count_rate_limited(scope, endpoint)
    _queue_audit(scope, str(exc.item), endpoint)
    response = error_response(429, ERROR_CODE,
                              f"Too many requests; retry after {exc.retry_after} seconds.")
    response.headers["Retry-After"] = str(exc.retry_after)
    return response


def init_app(app: Flask) -> None:
    limiter.init_app(app, _SETTINGS)
    app.after_request(_spend_failures)
    app.register_error_handler(RateLimited, rate_limited_response)
