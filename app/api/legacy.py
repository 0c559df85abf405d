"""Legacy API keys over HTTP: X-API-Key acceptance, deprecation headers, listing, the guide."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from datetime import datetime, timedelta
from importlib import resources
from typing import Any, NoReturn

from flask import Blueprint, Flask, Response, abort, current_app, g, jsonify, request
from werkzeug.http import http_date

from app.api import schemas
from app.clock import epoch, isoformat, utcnow
from app.extensions import db
from app.oauth.errors import REALM
from app.oauth.resource import current_info, require_token
from app.runtime import legacy_usage_buffer
from app.serialize import legacy_key_json
from app.services import access
from app.services import legacy as legacy_service
from app.web.context import issuer, request_actor
from app.web.errors import error_response
from app.web.validation import query_args

bp = Blueprint("legacy", __name__)

HEADER = "X-API-Key"
GUIDE_PATH = "/docs/legacy-migration"
INTROSPECT_EXTENSION = "keymint_legacy_introspect"


# --- configuration-derived facts ------------------------------------------------------------


def policy() -> legacy_service.Policy:
    return legacy_service.Policy.from_config(current_app.config)


# Stored brownouts (`keymint legacy brownouts add`) are re-read at most this often per process:
# one added or removed with the CLI takes effect within it, without a restart or a signal.
STORED_BROWNOUTS_REFRESH = timedelta(seconds=10)
_STORED = "keymint_legacy_brownouts"


def _stored_brownouts(now: datetime) -> tuple[tuple[datetime, datetime], ...]:
    cached = current_app.extensions.get(_STORED)
    # utcnow, not a monotonic clock: a clock that moved back (tests) reloads too.
    if cached is None or not cached[0] <= now < cached[0] + STORED_BROWNOUTS_REFRESH:
        cached = (now, legacy_service.stored_windows(db.session, now))
        current_app.extensions[_STORED] = cached  # one tuple swap: safe across threads
    return cached[1]


def deciding_policy(now: datetime) -> legacy_service.Policy:
    """The policy a legacy request is decided by: configured and stored brownouts."""
    rules = policy()
    stored = _stored_brownouts(now)
    if not stored:
        return rules
    return dataclasses.replace(rules, brownouts=tuple(sorted(rules.brownouts + stored)))


def guide_url() -> str:
    """KEYMINT_LEGACY_MIGRATION_URL, else the guide this server publishes itself."""
    return current_app.config.get("KEYMINT_LEGACY_MIGRATION_URL") or issuer() + GUIDE_PATH


def usage_buffer(app: Flask | None = None) -> legacy_usage_buffer.UsageBuffer:
    return legacy_usage_buffer.of(app)


def deprecation_headers(migrated_to: str | None = None) -> list[tuple[str, str]]:
    """RFC 9745 Deprecation, RFC 8594 Sunset and RFC 8288 Links for a legacy response."""
    rules = policy()
    headers = [
        ("Deprecation", f"@{epoch(rules.deprecated_at)}"),
        ("Sunset", http_date(rules.sunset)),
        ("Link", f'<{guide_url()}>; rel="deprecation"'),
    ]
    if migrated_to:
        headers.append(("Link", f'<{issuer()}/api/v1/keys/{migrated_to}>; '
                                f'rel="successor-version"; title="{migrated_to}"'))
    return headers


# --- authentication with X-API-Key ----------------------------------------------------------


def presented_key() -> str | None:
    """The X-API-Key value, unless an Authorization header is present: then that decides."""
    if "Authorization" in request.headers:
        return None
    return request.headers.get(HEADER)


def _reject(status: int, error: str, description: str,
            headers: list[tuple[str, str]] | None = None, **extra: Any) -> NoReturn:
    response = error_response(status, error, description, **extra)
    response.headers["WWW-Authenticate"] = f'Bearer realm="{REALM}"'
    for name, value in headers or []:
        response.headers[name] = value
    abort(response)


def _what_to_do(migrated_to: str | None) -> str:
    text = ("Get an access token from POST /oauth/token with an API key (client_credentials "
            "grant) and send it as 'Authorization: Bearer <token>'; see the migration guide: "
            f"{guide_url()}")
    if migrated_to:
        text += f" This key's replacement is the API key {migrated_to}."
    return text


def authenticate() -> legacy_service.LegacyRow:
    """The legacy key of this request if it may be used now; else abort with a 401.

    Every outcome for a known key is counted (uses or rejections) in the usage buffer.
    """
    g.legacy_headers = deprecation_headers()
    row = legacy_service.lookup(db.session, presented_key())
    if row is None:
        _reject(401, "invalid_token", f"The {HEADER} value is not a valid API key. "
                + _what_to_do(None))
    g.legacy_headers = deprecation_headers(row.migrated_to)
    now = utcnow()
    rules = deciding_policy(now)
    decision = legacy_service.decide(row, now, rules)
    actor = request_actor("legacy_key", str(row.id))
    if decision.accepted:
        usage_buffer().record_use(row, now, actor)
        return row
    usage_buffer().record_rejection(row, now, actor, decision.reason)
    extra: dict[str, Any] = {"sunset_at": isoformat(rules.sunset),
                             "migration_guide": guide_url()}
    if row.migrated_to:
        extra["replacement_client_id"] = row.migrated_to
    if decision.reason == "disabled":
        _reject(401, "legacy_key_disabled", "This legacy API key was disabled by a workspace "
                "administrator. " + _what_to_do(row.migrated_to), **extra)
    if decision.reason == "brownout":
        end = decision.brownout_end
        retry = [("Retry-After", str(max(1, math.ceil((end - now).total_seconds()))))]
        _reject(401, "legacy_key_sunset",
                f"Legacy API keys are switched off during a scheduled brownout until "
                f"{isoformat(end)}, and for good at {isoformat(rules.sunset)}. "
                + _what_to_do(row.migrated_to), headers=retry,
                brownout_ends_at=isoformat(end), **extra)
    _reject(401, "legacy_key_sunset",
            f"Legacy API keys stopped working at {isoformat(rules.sunset)}. "
            + _what_to_do(row.migrated_to), **extra)


def accepts_legacy_key(legacy_view: Callable[..., Response]):
    """Route decorator: a request with X-API-Key (and no Authorization) goes to `legacy_view`.

    Only routes decorated with this accept a legacy key; everywhere else under /api/ a
    legacy key is refused before the view runs.
    """

    def decorate(view: Callable[..., Response]) -> Callable[..., Response]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Response:
            if presented_key() is not None:
                return legacy_view(*args, **kwargs)
            return view(*args, **kwargs)

        wrapper.accepts_legacy_key = True  # type: ignore[attr-defined]
        return wrapper

    return decorate


def me_legacy() -> Response:
    """GET /api/v1/me with a legacy key: the workspace it belongs to, and that it is ending."""
    row = authenticate()
    rules = policy()
    return jsonify({
        "credential": legacy_service.TOKEN_TYPE,
        "workspace": {"id": str(row.workspace_id), "slug": row.workspace_slug,
                      "name": row.workspace_name},
        "legacy_key": {"id": str(row.id), "label": row.label, "migrated_to": row.migrated_to},
        "deprecated": True,
        "sunset_at": isoformat(rules.sunset),
        "migration_guide": guide_url(),
    })


def introspect_legacy(token: str, client: Any) -> dict[str, Any]:
    """RFC 7662 answer for a legacy key; inactive unless it is the caller's workspace's."""
    row = legacy_service.lookup(db.session, token)
    if row is None or row.workspace_id != client.credential.workspace_id:
        return {"active": False}
    g.legacy_headers = deprecation_headers(row.migrated_to)
    now = utcnow()
    rules = deciding_policy(now)
    decision = legacy_service.decide(row, now, rules)
    actor = request_actor("legacy_key", str(row.id))
    if not decision.accepted:
        usage_buffer().record_rejection(row, now, actor, decision.reason)
        return {"active": False}
    usage_buffer().record_use(row, now, actor)
    answer: dict[str, Any] = {
        "active": True,
        "token_type": legacy_service.TOKEN_TYPE,
        "workspace_id": str(row.workspace_id),
        "deprecated": True,
        "sunset_at": isoformat(rules.sunset),
        "exp": epoch(rules.sunset),
        "iss": issuer(),
    }
    if row.migrated_to:
        answer["migrated_to"] = row.migrated_to
    return answer


# --- routes ---------------------------------------------------------------------------------


@bp.get("/api/v1/legacy-keys")
@require_token("keys:read")
def list_legacy_keys() -> Response:
    """Legacy keys of the caller's workspace with usage and migration state (admins, owners)."""
    info = current_info()
    access.check_can_list_legacy_keys(db.session, info.user_id, info.workspace_id)
    args = query_args(schemas.LEGACY_KEY_LIST_QUERY)
    usage_buffer().flush()  # this process's pending counts become visible first
    page = legacy_service.page_keys(db.session, info.workspace_id, cursor=args.get("cursor"),
                                    limit=args.get("limit", 100))
    sunset = policy().sunset
    return jsonify({
        "legacy_keys": [legacy_key_json(row, sunset) for row in page.keys],
        "next_cursor": page.next_cursor,
        "sunset_at": isoformat(sunset),
        "migration_guide": guide_url(),
    })


@bp.get(GUIDE_PATH)
def migration_guide() -> Response:
    """The integrator's guide the Deprecation Link points to by default (Markdown), with this
    server's sunset, issuer and brownout schedule filled in."""
    now = utcnow()
    rules = deciding_policy(now)
    upcoming = [(start, end) for start, end in rules.brownouts
                if end > now and start < rules.sunset]
    brownouts = ("; ".join(f"{isoformat(start)} until {isoformat(end)}" for start, end in upcoming)
                 if upcoming else "none scheduled now")
    facts = {"sunset": isoformat(rules.sunset) or "", "sunset_http": http_date(rules.sunset),
             "sunset_epoch": str(epoch(rules.sunset)),
             "deprecated_at": isoformat(rules.deprecated_at) or "",
             "deprecated_epoch": str(epoch(rules.deprecated_at)),
             "issuer": issuer(), "guide_url": guide_url(), "brownouts": brownouts}
    text = resources.files("app").joinpath("docs/legacy-migration.md").read_text("utf-8")
    for name, value in facts.items():
        text = text.replace("{{" + name + "}}", value)
    response = Response(text, mimetype="text/markdown")
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


# --- wiring ---------------------------------------------------------------------------------


def _refuse_legacy_elsewhere() -> Response | None:
    """A legacy key reaches only routes that accept it (GET); never a write route."""
    if not request.path.startswith("/api/") or presented_key() is None:
        return None
    view = current_app.view_functions.get(request.endpoint) if request.endpoint else None
    if getattr(view, "accepts_legacy_key", False) and request.method in ("GET", "HEAD"):
        return None
    g.legacy_headers = deprecation_headers()
    response = error_response(
        401, "legacy_key_not_accepted",
        "Legacy API keys are accepted only by GET /api/v1/me. " + _what_to_do(None))
    response.headers["WWW-Authenticate"] = f'Bearer realm="{REALM}"'
    return response


def _add_deprecation_headers(response: Response) -> Response:
    for name, value in g.pop("legacy_headers", None) or []:
        if name == "Link":
            response.headers.add(name, value)
        else:
            response.headers[name] = value
    return response


def init_app(app: Flask) -> None:
    """Needs the usage buffer (app/runtime/legacy_usage_buffer.py) initialised first."""
    app.extensions[INTROSPECT_EXTENSION] = introspect_legacy
    app.before_request(_refuse_legacy_elsewhere)
    app.after_request(_add_deprecation_headers)
    app.register_blueprint(bp)
