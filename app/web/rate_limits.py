"""Rate limits on the OAuth endpoints and legacy-key requests, and the 429.

What counts where (each a bucket in the limiter storage: memory, or Redis shared by all nodes):
- a request that authenticates as a key spends that key's budget, and only such a request
  does: the key's own `rate_limit` (one budget over all OAuth endpoints) if an admin set one,
  else per endpoint KEYMINT_RATELIMIT_CLIENT (token, rotate), KEYMINT_RATELIMIT_INTROSPECT,
  KEYMINT_RATELIMIT_REVOKE. A public client_id with a wrong secret or a malformed request
  never touches it, so nobody can drain a key's budget without its secret;
- per client IP, per endpoint (KEYMINT_RATELIMIT_IP): every request to token and rotate; on
  introspection and revocation only requests that did not authenticate, so a resource server
  introspecting from one host is limited by its key's budget alone;
- failed authentications (401) per (client_id, client IP) (KEYMINT_RATELIMIT_FAILED_CLIENT_IP)
  and per client IP (KEYMINT_RATELIMIT_FAILED_IP), shared by all endpoints: once over, that
  pair or that address waits, before any secret is compared;
- failed authentications per client_id from anywhere (KEYMINT_RATELIMIT_FAILED_CLIENT) only
  alert (metric keymint_rate_limit_alerts_total, sampled `ratelimit.alert` audit event): they
  never refuse anything, because client_ids are public and a correct secret must not be
  locked out by other parties' guesses;
- per legacy key / per IP on requests carrying X-API-Key: `legacy_limits` (below);
- a resource server reading its route policy with its client credentials
  (GET /api/v1/resources[/{id}] with HTTP Basic): as introspection (`client_credential_limits`).

Counting (storage, Redis fallback, clearing) is app/runtime/limiter.py.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from flask import Flask, Response, after_this_request, current_app, g, request
from limits import RateLimitItem, RateLimitItemPerMinute, parse_many
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
KEY = "key"                      # a key's own `rate_limit`
FAILED_CLIENT_IP = "failed_auth_client_ip"


def _key(kind: str, value: str) -> str:
    return f"{current_app.config['KEYMINT_RATELIMIT_KEY_PREFIX']}:{kind}:{value}"


def prefixed_key(prefix: str, kind: str, value: str) -> str:
    """_key for a given KEYMINT_RATELIMIT_KEY_PREFIX (no app context needed)."""
    return f"{prefix}:{kind}:{value}"


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


def client_ip_key() -> str:
    return _key("pair", f"{presented_client_id() or '-'}|{client_ip() or 'unknown'}")


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


# When a rule counts a request.
BEFORE = "before"                # before the view, every request it applies to
FAILURE = "failure"              # after a 401; checked before the view (refused once over)
UNAUTHENTICATED = "unauthenticated"  # after any answer to a request that did not authenticate
ALERT = "alert"                  # after a 401; never refuses, alerts once over


@dataclass(frozen=True)
class Rule:
    """One limit of a view: its setting, what it is keyed by, and when it counts."""

    scope: str                      # also the `limit` label of the 429 metric
    setting: str                    # config name holding e.g. "120 per minute"
    key: Callable[[], str]
    shared: bool = False            # one bucket for all endpoints (else one per endpoint)
    exempt: Callable[[], bool] | None = None
    counts: str = BEFORE


class RateLimited(Exception):
    """A request over one of its limits; answered by rate_limited_response."""

    def __init__(self, scope: str, item: RateLimitItem, retry_after: int, key: str) -> None:
        super().__init__(scope)
        self.scope, self.item, self.retry_after, self.key = scope, item, retry_after, key


_PER_KEY_SETTINGS = ("KEYMINT_RATELIMIT_CLIENT", "KEYMINT_RATELIMIT_INTROSPECT",
                     "KEYMINT_RATELIMIT_REVOKE")
_SETTINGS = (*_PER_KEY_SETTINGS, "KEYMINT_RATELIMIT_IP", "KEYMINT_RATELIMIT_FAILED_CLIENT",
             "KEYMINT_RATELIMIT_FAILED_CLIENT_IP", "KEYMINT_RATELIMIT_FAILED_IP",
             "KEYMINT_RATELIMIT_LEGACY_KEY")


def _oauth_rules(ip_when_authenticated: bool) -> tuple[Rule, ...]:
    return (
        Rule(FAILED_CLIENT_IP, "KEYMINT_RATELIMIT_FAILED_CLIENT_IP", client_ip_key, shared=True,
             exempt=_no_client_id, counts=FAILURE),
        Rule(FAILED_IP, "KEYMINT_RATELIMIT_FAILED_IP", ip_key, shared=True, counts=FAILURE),
        Rule(FAILED_CLIENT, "KEYMINT_RATELIMIT_FAILED_CLIENT", client_key, shared=True,
             exempt=_no_client_id, counts=ALERT),
        Rule(IP, "KEYMINT_RATELIMIT_IP", ip_key,
             counts=BEFORE if ip_when_authenticated else UNAUTHENTICATED),
    )


_LEGACY_RULES = (
    Rule(FAILED_IP, "KEYMINT_RATELIMIT_FAILED_IP", ip_key, shared=True, exempt=_no_legacy_key,
         counts=FAILURE),
    Rule(LEGACY_IP, "KEYMINT_RATELIMIT_IP", ip_key, exempt=_no_legacy_key),
    Rule(LEGACY_KEY, "KEYMINT_RATELIMIT_LEGACY_KEY", legacy_key, exempt=_no_legacy_key),
)


def enforce(rules: tuple[Rule, ...]) -> None:
    """Check (and count) this request against `rules`; raises RateLimited when over one.

    Rules counted after the answer are only tested here (the counting is _count_after's), and
    failure budgets come first, so a client locked out by failures spends none of its other
    limits.
    """
    counter = limiter.counter()
    if counter is None:
        return
    endpoint = request.endpoint or ""
    after: list[tuple[str, str, RateLimitItem, str, str]] = []
    for rule in rules:
        if rule.exempt is not None and rule.exempt():
            continue
        key = rule.key()
        identifiers = (key, rule.scope if rule.shared else f"{endpoint}:{rule.scope}")
        for item in counter.limits[rule.setting]:
            if rule.counts == BEFORE:
                allowed = counter.hit(item, *identifiers)
            else:
                after.append((rule.counts, rule.scope, item, *identifiers))
                allowed = rule.counts == ALERT or counter.test(item, *identifiers)
            if not allowed:
                raise RateLimited(rule.scope, item,
                                  counter.seconds_until_reset(item, *identifiers), key)
    if after:
        # after_this_request callbacks run before the app's after_request hooks, so before
        # the request boundary (app/web/boundary.py): an alert can still queue its audit write.
        g.keymint_rl_after = after
        after_this_request(_count_after)


def authenticated(client_id: str, rate_limit: str | None) -> None:
    """The request authenticated as key `client_id`: spend that key's budget (and only now).

    Called by client authentication once the secret matched; raises RateLimited when the key
    is over its own `rate_limit` or, without one, over the endpoint's per-key setting.
    """
    g.keymint_rl_authenticated = True
    setting = g.get("keymint_rl_key_setting")
    counter = limiter.counter()
    if setting is None or counter is None:
        return
    key = _key("client", client_id)
    if rate_limit:
        scope, items, bucket = KEY, key_limits(rate_limit), KEY
    else:
        scope, items = CLIENT, counter.limits[setting]
        bucket = f"{request.endpoint or ''}:{CLIENT}"
    for item in items:
        if not counter.hit(item, key, bucket):
            raise RateLimited(scope, item, counter.seconds_until_reset(item, key, bucket), key)


def authenticated_request_allowed(counter: limiter.Counter | None, prefix: str, endpoint: str,
                                  key_setting: str, client_id: str, ip: str | None,
                                  rate_limit: str | None) -> bool:
    """The limits of a request that authenticated as `client_id` on an endpoint whose per-IP
    limit counts only unauthenticated requests (introspection), decided without a Flask
    request or app context (app/oauth/fast_introspection.py; `counter` is the app's
    limiter.counter(), `prefix` its KEYMINT_RATELIMIT_KEY_PREFIX). The failure budgets of the
    (client_id, IP) pair and of the IP, and the IP's limit on this endpoint, are tested as
    `enforce` tests them; then the key's budget is spent as `authenticated` spends it. False
    when one refuses: the caller hands the request to the full path, which answers the 429
    (a refused hit counts nothing, so no budget is spent twice).
    """
    if counter is None:
        return True
    address = ip or "unknown"
    limits = counter.limits
    checks = (("KEYMINT_RATELIMIT_FAILED_CLIENT_IP", "pair", f"{client_id}|{address}",
               FAILED_CLIENT_IP),
              ("KEYMINT_RATELIMIT_FAILED_IP", "ip", address, FAILED_IP),
              ("KEYMINT_RATELIMIT_IP", "ip", address, f"{endpoint}:{IP}"))
    for setting, kind, value, bucket in checks:
        key = prefixed_key(prefix, kind, value)
        for item in limits[setting]:
            if not counter.test(item, key, bucket):
                return False
    key = prefixed_key(prefix, "client", client_id)
    if rate_limit:
        items, bucket = key_limits(rate_limit), KEY
    else:
        items, bucket = limits[key_setting], f"{endpoint}:{CLIENT}"
    return all(counter.hit(item, key, bucket) for item in items)


@functools.lru_cache(maxsize=256)
def key_limits(rate_limit: str) -> tuple[RateLimitItem, ...]:
    """A key's stored `rate_limit` parsed (validated when it was set: see services.keys)."""
    return tuple(parse_many(rate_limit))


def _count_after(response: Response) -> Response:
    after = g.pop("keymint_rl_after", None)
    if not after:
        return response
    counter = limiter.counter()
    if counter is None:
        return response
    failed = response.status_code == 401
    authenticated_now = g.get("keymint_rl_authenticated", False)
    alerted = False  # once per request, even when it crosses several windows at once
    for counts, scope, item, *identifiers in after:
        due = failed if counts in (FAILURE, ALERT) else not authenticated_now
        if due and not counter.hit(item, *identifiers) and counts == ALERT and not alerted:
            alerted = True
            _alert(scope, str(item), identifiers[0])
    return response


def _alert(scope: str, rule: str, key: str) -> None:
    """Over an alert-only threshold: count it, and audit the first time in a minute."""
    metrics.count_rate_limit_alert(scope)
    if not _first_audit_in_window(scope, key):
        return
    client_id = presented_client_id()
    log.warning("failed authentications for one client_id over %s (from any address)", rule)
    details = {"limit": scope, "rule": rule, "endpoint": request.path,
               "sampled": "first per limit and key per minute"}
    _queue_write("ratelimit.alert", client_id, ("key", client_id), details)


def _limited(rules: tuple[Rule, ...], view: F, key_setting: str | None = None) -> F:
    @functools.wraps(view)
    def limited_view(*args: Any, **kwargs: Any) -> Any:
        enforce(rules)
        if key_setting is not None:
            g.keymint_rl_key_setting = key_setting
        return view(*args, **kwargs)

    return limited_view  # type: ignore[return-value]


def oauth_limits(key_setting: str = "KEYMINT_RATELIMIT_CLIENT",
                 ip_when_authenticated: bool = True) -> Callable[[F], F]:
    """The limits of one OAuth endpoint view.

    `key_setting` names the per-key limit of requests that authenticate (spent by
    `authenticated`); `ip_when_authenticated=False` counts only requests that did not
    authenticate against the per-IP limit (introspection, revocation).
    """
    if key_setting not in _PER_KEY_SETTINGS:
        raise ValueError(f"unknown per-key limit setting {key_setting}")
    rules = _oauth_rules(ip_when_authenticated)
    return lambda view: _limited(rules, view, key_setting)


def client_credential_limits(key_setting: str,
                             applies: Callable[[], bool]) -> Callable[[F], F]:
    """The limits of an OAuth endpoint that only authenticates (as introspection and
    revocation do), for a non-OAuth view on the requests where `applies()` is true (those
    presenting client credentials; the others pass untouched)."""
    if key_setting not in _PER_KEY_SETTINGS:
        raise ValueError(f"unknown per-key limit setting {key_setting}")

    def exempt(rule: Rule) -> Callable[[], bool]:
        return lambda: not applies() or (rule.exempt is not None and rule.exempt())

    rules = tuple(replace(rule, exempt=exempt(rule))
                  for rule in _oauth_rules(ip_when_authenticated=False))
    return lambda view: _limited(rules, view, key_setting)


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


def _queue_write(action: str, client_id: str | None, target: tuple[str, str | None],
                 details: dict[str, Any]) -> None:
    """Queue an audit event, written by the request boundary after its rollback
    (app/web/boundary.py); best effort: a 429 stays a 429 with the database down."""
    actor = request_actor("client", None, client_id)

    def write(session: Session) -> None:
        workspace_id = None
        if client_id is not None:
            workspace_id = session.scalar(
                select(ApiKey.workspace_id).where(ApiKey.client_id == client_id))
        audit.record(session, action, actor, workspace_id=workspace_id,
                     target_type=target[0], target_id=target[1], details=details)

    write_after(action, write, best_effort=True)


_BY_CLIENT = (CLIENT, KEY, FAILED_CLIENT, FAILED_CLIENT_IP)


def _queue_audit(scope: str, key: str, rule: str, endpoint: str) -> None:
    """Sample the refusal into the audit trail: the first per limit and key per minute."""
    if not _first_audit_in_window(scope, key):
        return
    by_client = scope in _BY_CLIENT
    client_id = presented_client_id() if by_client else None
    target = ("key", client_id) if by_client else (
        ("legacy_key", None) if scope == LEGACY_KEY else ("ip", client_ip()))
    details = {"limit": scope, "rule": rule, "endpoint": endpoint,
               "sampled": "first per limit and key per minute"}
    _queue_write("ratelimit.exceeded", client_id, target, details)


def rate_limited_response(exc: RateLimited) -> Response:
    from app.web.errors import error_response
    from app.web.telemetry import endpoint_label

    endpoint = endpoint_label()
    metrics.count_rate_limited(exc.scope, endpoint)
    _queue_audit(exc.scope, exc.key, str(exc.item), endpoint)
    response = error_response(429, ERROR_CODE,
                              f"Too many requests; retry after {exc.retry_after} seconds.")
    response.headers["Retry-After"] = str(exc.retry_after)
    return response


# --- lifting a lock-out (`keymint ratelimit clear`) -------------------------------------------


def clear_counters(*, client_id: str | None = None, ip: str | None = None) -> int:
    """Delete the counters of one client_id (its budgets, its failures from every address)
    or of one client IP (its limits, its failures, every client_id's failures from it).

    Counter keys end in "/" after the value (limits joins identifiers with "/"), which keeps
    10.0.0.1 from matching 10.0.0.12. Returns how many counters were deleted. Needs an app
    context; works on the configured storage even where this process does not limit
    (KEYMINT_RATELIMIT_ENABLED=false in the operator's shell, say).
    """
    counter = limiter.counter() or limiter.Counter(
        current_app.config.get("KEYMINT_RATELIMIT_STORAGE_URL") or "memory://", {})
    patterns: list[list[str]] = []
    if client_id is not None:
        patterns += [["", f"/{_key('client', client_id)}/", ""],
                     ["", f"/{_key('pair', client_id)}|", "/", ""]]
    if ip is not None:
        patterns += [["", f"/{_key('ip', ip)}/", ""],
                     ["", f"/{_key('pair', '')}", f"|{ip}/", ""]]
    return counter.clear_matching(patterns)


def init_app(app: Flask) -> None:
    limiter.init_app(app, _SETTINGS)
    app.register_error_handler(RateLimited, rate_limited_response)
